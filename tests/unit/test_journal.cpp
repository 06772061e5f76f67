#define BOOST_TEST_MODULE journal
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/journal.hpp"
#include "fracsweep/util/crc32c.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using fracsweep::CommitPolicy;
using fracsweep::crc32c;
using fracsweep::JournalIdentity;
using fracsweep::JournalSession;
using fracsweep::JournalWriter;
using fracsweep::read_journal;
using fracsweep::TrialResult;

namespace {

using fracsweep::test::TempDir;

JournalIdentity identity() {
  return {std::string(64, 'c'), 100, 1, 3, "feistel-v1"};
}

// A result whose every field derives from `trial`; `n_sites` recorded sites.
TrialResult result(int64_t trial, size_t n_sites = 0) {
  TrialResult made;
  made.row.trial = trial;
  made.row.seed = trial * 3;
  made.row.k = trial + 1;
  made.row.metrics.mean_nll = 1.0 / static_cast<double>(trial + 1);
  made.row.metrics.max_kl = -0.0;
  for (size_t s = 0; s < n_sites; ++s) {
    made.sites.push_back({static_cast<int64_t>(s) * 7 + trial, static_cast<float>(s), -1.5f});
  }
  return made;
}

std::vector<char> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool same_bytes(const TrialResult& a, const TrialResult& b) {
  return fracsweep::encode_result(a) == fracsweep::encode_result(b);
}

}  // namespace

BOOST_AUTO_TEST_CASE(crc32c_known_vectors) {
  // RFC 3720 (iSCSI) B.4 and the common check value of CRC-32C.
  BOOST_TEST(crc32c("123456789", 9) == 0xE3069283u);
  const std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xFF);  // (32)
  BOOST_TEST(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  BOOST_TEST(crc32c(ones.data(), ones.size()) == 0x62A8AB43u);
  std::vector<unsigned char> ascending(32);  // (32) 0, 1, ..., 31
  for (size_t i = 0; i < ascending.size(); ++i) ascending[i] = static_cast<unsigned char>(i);
  BOOST_TEST(crc32c(ascending.data(), ascending.size()) == 0x46DD794Eu);
  // Continuation equals the checksum of the concatenation.
  BOOST_TEST(crc32c("56789", 5, crc32c("1234", 4)) == 0xE3069283u);
}

BOOST_AUTO_TEST_CASE(round_trip_sorted_and_deduplicated) {
  TempDir dir;
  const fs::path path = dir.path() / "a.journal";
  {
    JournalWriter writer(path, identity(), CommitPolicy{.every_trials = 2, .every_seconds = 1e9});
    writer.append_session({"2026-11-26T05:00:00Z", "77_3", "node1", 0});
    writer.append(result(5, 3));
    writer.append(result(2));  // commits here (2 trials)
    BOOST_TEST(writer.committed_trials() == 2);
    writer.append(result(9));
    writer.append(result(5, 3));  // a repeat of a committed trial is kept once
    writer.commit();
  }
  const auto contents = read_journal(path);
  BOOST_TEST(contents.identity.job_sha256 == identity().job_sha256);
  BOOST_TEST(contents.identity.n_trials == 100);
  BOOST_TEST(contents.identity.shard_index == 1);
  BOOST_TEST(contents.identity.shard_count == 3);
  BOOST_TEST(contents.identity.site_recipe == "feistel-v1");
  BOOST_TEST_REQUIRE(contents.sessions.size() == 1u);
  BOOST_TEST(contents.sessions[0].job_id == "77_3");
  BOOST_TEST(contents.sessions[0].host == "node1");
  BOOST_TEST_REQUIRE(contents.results.size() == 3u);
  BOOST_TEST(contents.results[0].row.trial == 2);
  BOOST_TEST(contents.results[1].row.trial == 5);
  BOOST_TEST(contents.results[2].row.trial == 9);
  BOOST_TEST(same_bytes(contents.results[1], result(5, 3)));
  BOOST_TEST(contents.discarded_bytes == 0);
  BOOST_TEST(contents.valid_bytes == static_cast<int64_t>(fs::file_size(path)));
}

BOOST_AUTO_TEST_CASE(uncommitted_records_are_not_in_the_file) {
  TempDir dir;
  const fs::path path = dir.path() / "b.journal";
  {
    JournalWriter writer(path, identity(), CommitPolicy{.every_trials = 10, .every_seconds = 1e9});
    writer.append(result(1));
    writer.append(result(2));
  }  // destroyed without commit: a killed writer
  BOOST_TEST(read_journal(path).results.empty());
}

// Every truncation point (a writer killed mid-write) keeps exactly the complete records.
BOOST_AUTO_TEST_CASE(torn_tail_at_every_length) {
  TempDir dir;
  const fs::path path = dir.path() / "c.journal";
  std::vector<size_t> record_ends;  // file size after each committed record
  {
    JournalWriter writer(path, identity(), CommitPolicy{.every_trials = 1, .every_seconds = 0});
    record_ends.push_back(fs::file_size(path));
    for (int64_t t = 0; t < 4; ++t) {
      writer.append(result(t, static_cast<size_t>(t)));
      record_ends.push_back(fs::file_size(path));
    }
  }
  const std::vector<char> whole = file_bytes(path);
  for (size_t length = record_ends.front(); length <= whole.size(); ++length) {
    write_bytes(path, std::vector<char>(whole.begin(), whole.begin() + static_cast<long>(length)));
    const auto contents = read_journal(path);
    size_t complete = 0;
    while (complete + 1 < record_ends.size() && record_ends[complete + 1] <= length) ++complete;
    BOOST_TEST_REQUIRE(contents.results.size() == complete, "length " << length);
    BOOST_TEST(contents.valid_bytes == static_cast<int64_t>(record_ends[complete]));
    BOOST_TEST(contents.discarded_bytes == static_cast<int64_t>(length - record_ends[complete]));
  }
  // Shorter than the identity record: not a journal.
  write_bytes(path, std::vector<char>(whole.begin(), whole.begin() + 10));
  BOOST_CHECK_THROW(read_journal(path), fracsweep::InputError);
}

BOOST_AUTO_TEST_CASE(corrupt_record_ends_the_valid_part_and_append_truncates) {
  TempDir dir;
  const fs::path path = dir.path() / "d.journal";
  std::vector<size_t> record_ends;
  {
    JournalWriter writer(path, identity(), CommitPolicy{.every_trials = 1, .every_seconds = 0});
    for (int64_t t = 0; t < 3; ++t) {
      writer.append(result(t));
      record_ends.push_back(fs::file_size(path));
    }
  }
  std::vector<char> bytes = file_bytes(path);
  bytes[record_ends[0] + 20] ^= 0x01;  // one flipped bit inside trial 1's row
  write_bytes(path, bytes);
  const auto contents = read_journal(path);
  BOOST_TEST_REQUIRE(contents.results.size() == 1u);
  BOOST_TEST(contents.results[0].row.trial == 0);
  BOOST_TEST(contents.valid_bytes == static_cast<int64_t>(record_ends[0]));
  {
    JournalWriter writer(path, contents.valid_bytes, CommitPolicy{});
    writer.append(result(7));
    writer.commit();
  }
  const auto reopened = read_journal(path);
  BOOST_TEST(reopened.discarded_bytes == 0);
  BOOST_TEST_REQUIRE(reopened.results.size() == 2u);
  BOOST_TEST(reopened.results[1].row.trial == 7);
  BOOST_TEST(same_bytes(reopened.results[1], result(7)));
}

BOOST_AUTO_TEST_CASE(foreign_files_are_refused) {
  TempDir dir;
  const fs::path path = dir.path() / "e.journal";
  write_bytes(path, std::vector<char>(200, 'x'));
  BOOST_CHECK_THROW(read_journal(path), fracsweep::InputError);
  BOOST_CHECK_THROW(read_journal(dir.path() / "missing.journal"), fracsweep::InputError);
  {
    JournalWriter writer(path, {std::string(64, 'c'), 10, 0, 1, "feistel-v1"}, CommitPolicy{});
    writer.append(result(12));  // outside a grid of 10 trials
    writer.commit();
  }
  try {
    read_journal(path);
    BOOST_FAIL("a trial outside the grid was accepted");
  } catch (const fracsweep::InputError& e) {
    BOOST_TEST(std::string(e.what()).find("trial id 12 outside the grid of 10") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(journal_of_another_release_is_named_as_such) {
  TempDir dir;
  const fs::path path = dir.path() / "old.journal";
  { JournalWriter writer(path, identity(), CommitPolicy{}); }
  // The identity record as the previous release wrote it: format "fracsweep-journal/2" (its
  // rows were drawn by another site recipe), the record's checksum made valid again.
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string format = fracsweep::journal_format;
  const auto at = std::search(bytes.begin(), bytes.end(), format.begin(), format.end());
  BOOST_TEST_REQUIRE((at != bytes.end()));
  *(at + static_cast<std::ptrdiff_t>(format.size()) - 1) = '2';
  uint32_t length = 0;
  std::memcpy(&length, bytes.data() + 4, sizeof length);
  const uint32_t crc = fracsweep::crc32c(bytes.data(), 8 + size_t{length});
  std::memcpy(bytes.data() + 8 + length, &crc, sizeof crc);
  write_bytes(path, bytes);
  try {
    read_journal(path);
    BOOST_FAIL("a journal of another release was accepted");
  } catch (const fracsweep::InputError& e) {
    BOOST_TEST(std::string(e.what()).find("was written by another fracsweep release "
                                          "(fracsweep-journal/2") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("--force") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(shards_partition_the_grid) {
  for (int64_t n_trials : {0, 1, 7, 65, 1000}) {
    for (int64_t count : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int64_t index = 0; index < count; ++index) {
        const auto range = fracsweep::shard_range(n_trials, index, count);
        BOOST_TEST(range.first == next);
        BOOST_TEST(range.last - range.first >= n_trials / count);
        BOOST_TEST(range.last - range.first <= n_trials / count + 1);
        next = range.last;
      }
      BOOST_TEST(next == n_trials);
    }
  }
}
