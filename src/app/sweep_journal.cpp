#include "fracsweep/app/sweep_journal.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "fracsweep/io/results.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

std::string journal_path(const std::string& out) {
  return out + ".journal";
}

// The batch job this run belongs to, for provenance: Slurm's job id (with the array task).
std::string batch_job_id() {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job == nullptr) return "";
  const char* array_job = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* array_task = std::getenv("SLURM_ARRAY_TASK_ID");
  if (array_job != nullptr && array_task != nullptr) {
    return std::string(array_job) + "_" + array_task;
  }
  return job;
}

std::string session_line(const JournalSession& session) {
  return session.started_utc + " job=" + (session.job_id.empty() ? "-" : session.job_id) +
         " host=" + session.host + " trials_before=" + std::to_string(session.trials_before);
}

namespace {

// Removes "<out>.tmp-<pid>" files that an earlier, killed run of this output left behind.
void remove_stale_temporaries(const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path target(out);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp-";
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
      fs::remove(entry.path(), error);
    }
  }
}

}  // namespace

// Rank 0: opens or creates the journal of `options.out`. An existing journal is resumed when it
// belongs to this job and shard; otherwise it is refused unless --force starts over.
ResumeState open_journal(const JournalIdentity& identity, const RunOptions& options,
                         const JournalSession& session) {
  namespace fs = std::filesystem;
  const std::string path = journal_path(options.out);
  ResumeState state;
  std::error_code error;
  if (fs::exists(path, error) && !options.force) {
    JournalContents contents = read_journal(path);
    const JournalIdentity& found = contents.identity;
    check_input(
        found.job_sha256 == identity.job_sha256,
        in_file(path, "belongs to a different job (job_sha256 " + found.job_sha256 + ", this job " +
                          identity.job_sha256 + "); use --force to discard it and start over"));
    check_input(
        found.n_trials == identity.n_trials && found.shard_index == identity.shard_index &&
            found.shard_count == identity.shard_count,
        in_file(path, "holds shard " + std::to_string(found.shard_index) + "/" +
                          std::to_string(found.shard_count) + " of " +
                          std::to_string(found.n_trials) + " trials, but this run is shard " +
                          std::to_string(identity.shard_index) + "/" +
                          std::to_string(identity.shard_count) + " of " +
                          std::to_string(identity.n_trials) +
                          "; use --force to discard it and start over"));
    check_input(
        found.site_recipe == identity.site_recipe,
        in_file(path, "drew its sites by recipe " + found.site_recipe + ", this build by " +
                          identity.site_recipe + "; use --force to discard it and start over"));
    if (contents.discarded_bytes > 0) {
      std::fprintf(stderr, "[fracsweep] %s: discarded a torn tail of %lld bytes\n", path.c_str(),
                   static_cast<long long>(contents.discarded_bytes));
    }
    state.resuming = true;
    remove_stale_temporaries(options.out);
    state.committed = std::move(contents.results);
    state.earlier_sessions = std::move(contents.sessions);
    state.journal = std::make_unique<JournalWriter>(path, contents.valid_bytes, options.commit);
  } else {
    check_input(!options.resume || !fs::exists(options.out, error) || options.force,
                in_file(options.out, "--resume: there is no journal " + path +
                                         " to resume from (the run finished, or use --force to "
                                         "start over)"));
    check_output_path(options.out, options.force);
    state.journal = std::make_unique<JournalWriter>(path, identity, options.commit);
  }
  JournalSession this_session = session;
  this_session.trials_before = static_cast<int64_t>(state.committed.size());
  state.journal->append_session(this_session);
  state.journal->commit();
  return state;
}

// The trial ids of `range` not in `committed` (ascending ids), ascending.
std::vector<int64_t> missing_trials(TrialRange range, const std::vector<TrialResult>& committed) {
  std::vector<int64_t> missing;  // (n_missing)
  auto done = committed.begin();
  for (int64_t id = range.first; id < range.last; ++id) {
    while (done != committed.end() && done->row.trial < id) ++done;
    if (done == committed.end() || done->row.trial != id) missing.push_back(id);
  }
  return missing;
}

}  // namespace fracsweep
