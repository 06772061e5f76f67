#pragma once
// A whole sweep as named phases: check inputs and open the journal (resuming it when present) ->
// per-model sessions (load, baseline) -> distributed trials -> results file and summary.
// Called by `fracsweep run` on every rank.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/journal.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/par/node_weights.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/trial/session.hpp"

namespace fracsweep {

struct RunOptions {
  std::string out;          // results file; its journal is "<out>.journal"
  bool force = false;       // overwrite an existing results file, discard a foreign journal
  bool resume = false;      // --resume: continue "<out>.journal" (also automatic when present)
  CommitPolicy commit;      // when completed trials become durable in the journal
  int64_t shard_index = 0;  // run only shard `shard_index` of `shard_count` of the grid
  int64_t shard_count = 1;
  ScheduleOptions schedule;
  double progress_interval_s = 2.0;
  GemmSetup gemm;
  ShareWeights share_weights = ShareWeights::automatic;  // one copy of the weights per node
  std::string command_line;                              // for provenance
};

// Runs the sweep on every rank of `comm`: rank 0 journals completed trials and writes the
// results file. Resumes "<out>.journal" when it exists. Returns the exit code: exit_ok, or
// exit_incomplete (error.hpp) after a stop signal, with a partial results file and the journal
// kept for a resume.
int run_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options);

}  // namespace fracsweep
