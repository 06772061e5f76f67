#pragma once
// Rank 0's durable progress for `fracsweep run`: the journal "<out>.journal" of an output, opened
// fresh or resumed, and the provenance lines of each start of the run.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/app/sweep.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/journal.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// What rank 0 found and opened before the sweep: the journal writer and what it already holds.
struct ResumeState {
  std::vector<TrialResult> committed;  // trials from the journal, ascending id
  std::vector<JournalSession> earlier_sessions;
  bool resuming = false;
  std::unique_ptr<JournalWriter> journal;
};

std::string journal_path(const std::string& out);

// The batch job this run belongs to, for provenance: Slurm's job id (with the array task).
std::string batch_job_id();

// "STARTED_UTC job=JOB_ID host=HOST trials_before=N" (Provenance::sessions).
std::string session_line(const JournalSession& session);

// Opens or creates the journal of `options.out` and appends `session` to it. An existing
// journal is resumed when it belongs to this job and shard; otherwise it is refused (InputError
// naming the journal) unless --force starts over.
ResumeState open_journal(const JournalIdentity& identity, const RunOptions& options,
                         const JournalSession& session);

// The trial ids of `range` not in `committed` (ascending ids), ascending.
std::vector<int64_t> missing_trials(TrialRange range, const std::vector<TrialResult>& committed);

}  // namespace fracsweep
