#pragma once
// The progress journal "<results file>.journal": completed trials made durable in small batches
// by the single writer (rank 0), so a killed sweep resumes without losing or repeating a trial.
//
// The file is a sequence of records, each
//   uint32 kind ('H' identity, 'S' session, 'T' trial)   uint32 payload bytes   payload
//   uint32 CRC-32C of kind, length and payload
// in native byte order (x86-64: little-endian). The first record is the identity (format, job
// SHA-256, grid size, shard, row layout); a session record marks each start of `fracsweep run`;
// a trial record is a TrialRow followed by the trial's SiteRecords, as bytes. Records are
// appended, then written and fsync'ed together (a commit). A record that is incomplete or fails
// its checksum ends the valid part: it and everything after it (the torn tail of a killed
// writer) is discarded when the journal is reopened.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

constexpr const char* journal_format = "fracsweep-journal/3";

struct JournalIdentity {
  std::string job_sha256;  // 64 hex digits of the job text
  int64_t n_trials = 0;    // grid size
  int64_t shard_index = 0;
  int64_t shard_count = 1;
  std::string site_recipe;  // how sites were drawn (results attribute site_recipe): a resumed
                            // run must draw them the same way
};

// One start of `fracsweep run` on a journal (provenance of resumes).
struct JournalSession {
  std::string started_utc;    // ISO 8601
  std::string job_id;         // batch job id (SLURM_JOB_ID, with the array task), or empty
  std::string host;           // host of rank 0
  int64_t trials_before = 0;  // trials already in the journal at the start
};

struct JournalContents {
  JournalIdentity identity;
  std::vector<JournalSession> sessions;  // in start order
  std::vector<TrialResult> results;      // ascending trial id, each id once
  int64_t valid_bytes = 0;               // length of the intact prefix
  int64_t discarded_bytes = 0;           // torn or corrupt tail after it
};

// Reads a journal. Throws InputError when the file cannot be read, does not start with an
// intact identity record of this format and row layout, or holds a trial outside the grid.
JournalContents read_journal(const std::string& path);

// When appended trials are committed: after `every_trials` trials or once `every_seconds` have
// passed since the last commit (checked as trials arrive), whichever comes first.
struct CommitPolicy {
  int64_t every_trials = 16;
  double every_seconds = 5.0;
};

// Appends records to a journal; the single writer of one.
class JournalWriter {
 public:
  // Creates `path` (replacing any file there) holding only `identity`; durable on return, file
  // and directory entry.
  JournalWriter(const std::string& path, const JournalIdentity& identity, CommitPolicy policy);
  // Reopens an existing journal, discarding everything after its first `valid_bytes`.
  JournalWriter(const std::string& path, int64_t valid_bytes, CommitPolicy policy);
  ~JournalWriter();  // closes the file; records not yet committed are lost
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  void append_session(const JournalSession& session);  // committed with the next commit
  void append(const TrialResult& result);              // commits when the policy says so
  void commit();                                       // writes pending records and fsyncs
  int64_t committed_trials() const { return committed_trials_; }

 private:
  using Clock = std::chrono::steady_clock;
  void append_record(uint32_t kind, const std::vector<char>& payload);

  std::string path_;
  int fd_ = -1;
  CommitPolicy policy_;
  std::vector<char> pending_;  // (bytes) records appended since the last commit
  int64_t pending_trials_ = 0;
  int64_t committed_trials_ = 0;  // trial records committed by this writer
  Clock::time_point last_commit_;
};

// A TrialResult as bytes and back; used by the journal and to ship results between ranks:
//   TrialRow | uint32 n_path | n_path PathSteps | SiteRecords to the end.
// well_formed_result says whether `size` bytes starting at `bytes` have that layout;
// decode_result throws RunError when they do not.
std::vector<char> encode_result(const TrialResult& result);
bool well_formed_result(const char* bytes, size_t size);
TrialResult decode_result(const char* bytes, size_t size);

}  // namespace fracsweep
