#include "fracsweep/io/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fracsweep/util/crc32c.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr uint32_t kind_identity = 'H';
constexpr uint32_t kind_session = 'S';
constexpr uint32_t kind_trial = 'T';
constexpr size_t record_overhead = 3 * sizeof(uint32_t);  // kind, length, checksum
// No record is larger: a sanity bound so a corrupt length cannot ask for gigabytes.
constexpr uint32_t max_payload_bytes = 1u << 30;

// Appends plain values and length-prefixed strings to a byte buffer.
class PayloadWriter {
 public:
  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* bytes = reinterpret_cast<const char*>(&value);
    bytes_.insert(bytes_.end(), bytes, bytes + sizeof(T));
  }
  void put_text(const std::string& text) {
    put(static_cast<uint32_t>(text.size()));
    bytes_.insert(bytes_.end(), text.begin(), text.end());
  }
  std::vector<char> take() { return std::move(bytes_); }

 private:
  std::vector<char> bytes_;  // (bytes) the payload so far
};

// Reads what PayloadWriter wrote; false once a read would run past the end.
class PayloadReader {
 public:
  PayloadReader(const char* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  bool get(T& value) {
    if (size_ - position_ < sizeof(T)) return false;
    std::memcpy(&value, data_ + position_, sizeof(T));
    position_ += sizeof(T);
    return true;
  }
  bool get_text(std::string& text) {
    uint32_t length = 0;
    if (!get(length) || size_ - position_ < length) return false;
    text.assign(data_ + position_, length);
    position_ += length;
    return true;
  }
  bool at_end() const { return position_ == size_; }

 private:
  const char* data_;
  size_t size_;
  size_t position_ = 0;
};

std::vector<char> identity_payload(const JournalIdentity& identity) {
  PayloadWriter out;
  out.put_text(journal_format);
  out.put_text(identity.job_sha256);
  out.put(identity.n_trials);
  out.put(identity.shard_index);
  out.put(identity.shard_count);
  out.put_text(identity.site_recipe);
  out.put(static_cast<uint32_t>(sizeof(TrialRow)));
  out.put(static_cast<uint32_t>(sizeof(SiteRecord)));
  return out.take();
}

std::vector<char> session_payload(const JournalSession& session) {
  PayloadWriter out;
  out.put_text(session.started_utc);
  out.put_text(session.job_id);
  out.put_text(session.host);
  out.put(session.trials_before);
  return out.take();
}

std::string system_message(const std::string& path, const std::string& what) {
  return "journal " + path + ": " + what + ": " + std::strerror(errno);
}

// Flushes a directory entry (a created or renamed file) to disk.
void sync_directory_of(const std::string& path) {
  const std::filesystem::path file(path);
  const std::string directory = file.has_parent_path() ? file.parent_path().string() : ".";
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) throw RunError(system_message(path, "cannot open its directory"));
  const int status = ::fsync(fd);
  ::close(fd);
  if (status != 0) throw RunError(system_message(path, "fsync of its directory failed"));
}

}  // namespace

namespace {

// Where the parts of an encoded result start (encode_result's layout).
constexpr size_t path_count_at = sizeof(TrialRow);
constexpr size_t path_at = path_count_at + sizeof(uint32_t);

}  // namespace

std::vector<char> encode_result(const TrialResult& result) {
  const auto n_path = static_cast<uint32_t>(result.path.size());
  const size_t sites_at = path_at + n_path * sizeof(PathStep);
  std::vector<char> bytes(sites_at + result.sites.size() * sizeof(SiteRecord));  // (layout above)
  std::memcpy(bytes.data(), &result.row, sizeof(TrialRow));
  std::memcpy(bytes.data() + path_count_at, &n_path, sizeof n_path);
  if (n_path > 0)
    std::memcpy(bytes.data() + path_at, result.path.data(), n_path * sizeof(PathStep));
  if (!result.sites.empty()) {
    std::memcpy(bytes.data() + sites_at, result.sites.data(),
                result.sites.size() * sizeof(SiteRecord));
  }
  return bytes;
}

bool well_formed_result(const char* bytes, size_t size) {
  if (size < path_at) return false;
  uint32_t n_path = 0;
  std::memcpy(&n_path, bytes + path_count_at, sizeof n_path);
  const size_t path_bytes = size_t{n_path} * sizeof(PathStep);
  return path_bytes <= size - path_at && (size - path_at - path_bytes) % sizeof(SiteRecord) == 0;
}

TrialResult decode_result(const char* bytes, size_t size) {
  check_invariant(well_formed_result(bytes, size),
                  "malformed trial result of " + std::to_string(size) + " bytes");
  TrialResult result;
  std::memcpy(&result.row, bytes, sizeof(TrialRow));
  uint32_t n_path = 0;
  std::memcpy(&n_path, bytes + path_count_at, sizeof n_path);
  result.path.resize(n_path);
  if (n_path > 0) std::memcpy(result.path.data(), bytes + path_at, n_path * sizeof(PathStep));
  const size_t sites_at = path_at + n_path * sizeof(PathStep);
  result.sites.resize((size - sites_at) / sizeof(SiteRecord));
  if (!result.sites.empty()) {
    std::memcpy(result.sites.data(), bytes + sites_at, result.sites.size() * sizeof(SiteRecord));
  }
  return result;
}

JournalContents read_journal(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check_input(in.good(), in_file(path, "cannot open the journal for reading"));
  const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());  // (file bytes)
  check_input(!in.bad(), in_file(path, "read error"));

  JournalContents contents;
  bool have_identity = false;
  size_t position = 0;
  for (;;) {
    uint32_t kind = 0, length = 0, stored_crc = 0;
    if (file.size() - position < record_overhead) break;
    std::memcpy(&kind, file.data() + position, sizeof kind);
    std::memcpy(&length, file.data() + position + 4, sizeof length);
    if (length > max_payload_bytes || file.size() - position - record_overhead < length) break;
    const char* payload = file.data() + position + 8;
    std::memcpy(&stored_crc, payload + length, sizeof stored_crc);
    if (crc32c(file.data() + position, 8 + size_t{length}) != stored_crc) break;

    PayloadReader reader(payload, length);
    if (!have_identity) {
      std::string format;
      uint32_t row_bytes = 0, site_bytes = 0;
      JournalIdentity& identity = contents.identity;
      const bool is_identity = kind == kind_identity && reader.get_text(format);
      // A journal of another release's format: its rows and sites may not be this build's.
      check_input(
          !is_identity || format == journal_format || !format.starts_with("fracsweep-journal/"),
          in_file(path, "was written by another fracsweep release (" + format +
                            "; this build writes " + journal_format +
                            ", with sites drawn by a different recipe); use --force to "
                            "discard it and start over"));
      const bool parsed = is_identity && reader.get_text(identity.job_sha256) &&
                          reader.get(identity.n_trials) && reader.get(identity.shard_index) &&
                          reader.get(identity.shard_count) &&
                          reader.get_text(identity.site_recipe) && reader.get(row_bytes) &&
                          reader.get(site_bytes) && reader.at_end();
      check_input(parsed && format == journal_format,
                  in_file(path, "does not start with a " + std::string(journal_format) +
                                    " identity record; not a fracsweep journal"));
      check_input(row_bytes == sizeof(TrialRow) && site_bytes == sizeof(SiteRecord),
                  in_file(path, "was written by a fracsweep build with a different row layout (" +
                                    std::to_string(row_bytes) + "-byte rows, expected " +
                                    std::to_string(sizeof(TrialRow)) + ")"));
      have_identity = true;
    } else if (kind == kind_session) {
      JournalSession session;
      check_input(reader.get_text(session.started_utc) && reader.get_text(session.job_id) &&
                      reader.get_text(session.host) && reader.get(session.trials_before) &&
                      reader.at_end(),
                  in_file(path, "malformed session record at byte " + std::to_string(position)));
      contents.sessions.push_back(std::move(session));
    } else if (kind == kind_trial) {
      check_input(well_formed_result(payload, length),
                  in_file(path, "malformed trial record at byte " + std::to_string(position)));
      TrialResult result = decode_result(payload, length);
      check_input(
          result.row.trial >= 0 && result.row.trial < contents.identity.n_trials,
          in_file(path, "trial id " + std::to_string(result.row.trial) + " outside the grid of " +
                            std::to_string(contents.identity.n_trials)));
      contents.results.push_back(std::move(result));
    } else {
      check_input(false, in_file(path, "unknown record kind " + std::to_string(kind) + " at byte " +
                                           std::to_string(position)));
    }
    position += record_overhead + length;
  }
  check_input(have_identity, in_file(path,
                                     "has no intact identity record; not a fracsweep "
                                     "journal, or it was killed while being created"));
  contents.valid_bytes = static_cast<int64_t>(position);
  contents.discarded_bytes = static_cast<int64_t>(file.size() - position);

  // Ascending ids; a trial committed twice (identical by determinism) is kept once.
  std::stable_sort(
      contents.results.begin(), contents.results.end(),
      [](const TrialResult& a, const TrialResult& b) { return a.row.trial < b.row.trial; });
  const auto duplicate = std::unique(
      contents.results.begin(), contents.results.end(),
      [](const TrialResult& a, const TrialResult& b) { return a.row.trial == b.row.trial; });
  contents.results.erase(duplicate, contents.results.end());
  return contents;
}

JournalWriter::JournalWriter(const std::string& path, const JournalIdentity& identity,
                             CommitPolicy policy)
    : path_(path), policy_(policy), last_commit_(Clock::now()) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunError(system_message(path, "cannot create"));
  append_record(kind_identity, identity_payload(identity));
  commit();
  sync_directory_of(path);
}

JournalWriter::JournalWriter(const std::string& path, int64_t valid_bytes, CommitPolicy policy)
    : path_(path), policy_(policy), last_commit_(Clock::now()) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) throw RunError(system_message(path, "cannot open for appending"));
  if (::ftruncate(fd_, static_cast<off_t>(valid_bytes)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(valid_bytes), SEEK_SET) < 0 || ::fsync(fd_) != 0) {
    const std::string message = system_message(path, "cannot discard its torn tail");
    ::close(fd_);
    throw RunError(message);
  }
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void JournalWriter::append_record(uint32_t kind, const std::vector<char>& payload) {
  check_invariant(payload.size() <= max_payload_bytes, "journal record too large");
  const auto length = static_cast<uint32_t>(payload.size());
  const size_t start = pending_.size();
  pending_.resize(start + record_overhead + payload.size());
  char* record = pending_.data() + start;
  std::memcpy(record, &kind, 4);
  std::memcpy(record + 4, &length, 4);
  if (!payload.empty()) std::memcpy(record + 8, payload.data(), payload.size());
  const uint32_t checksum = crc32c(record, 8 + payload.size());
  std::memcpy(record + 8 + payload.size(), &checksum, 4);
}

void JournalWriter::append_session(const JournalSession& session) {
  append_record(kind_session, session_payload(session));
}

void JournalWriter::append(const TrialResult& result) {
  append_record(kind_trial, encode_result(result));
  ++pending_trials_;
  const double since_commit = std::chrono::duration<double>(Clock::now() - last_commit_).count();
  if (pending_trials_ >= policy_.every_trials || since_commit >= policy_.every_seconds) commit();
}

void JournalWriter::commit() {
  size_t written = 0;
  while (written < pending_.size()) {
    const ssize_t n = ::write(fd_, pending_.data() + written, pending_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw RunError(system_message(path_, "write failed"));
    written += static_cast<size_t>(n);
  }
  while (::fsync(fd_) != 0) {
    if (errno != EINTR) throw RunError(system_message(path_, "fsync failed"));
  }
  pending_.clear();
  committed_trials_ += pending_trials_;
  pending_trials_ = 0;
  last_commit_ = Clock::now();
}

}  // namespace fracsweep
