#pragma once
// MPI work distribution. Every rank, rank 0 included, computes trials. Dynamic mode hands out
// chunks of consecutive entries of the list of trials to run through an atomic counter in an
// MPI window (no coordinator rank); static mode gives each rank one contiguous block. A stop
// flag in the same window lets any rank stop them all. Rows flow to rank 0, the single writer.
// Trial ids are model-major, so each rank meets each model in one run of chunks.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fracsweep/par/progress.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

struct ScheduleOptions {
  bool dynamic = true;
  int64_t chunk = 0;  // trials per grab in dynamic mode; 0 = automatic
};

// Runs the trials `trial_ids` (ascending) across `comm`. `run_trial` computes one trial on the
// calling rank; on rank 0, `collect` receives every result, in arrival order, and `progress` is
// updated (the caller prints its final line). `stop_requested`
// is polled on every rank between trials: once it is true on any rank, no rank starts another
// trial, trials in flight finish and are collected, and every rank returns. Returns, on every
// rank, whether every trial ran. An exception in `run_trial` or `collect` on any rank stops
// every rank the same way, and then every rank throws PhaseFailure (see run_collective_phase)
// carrying the failing rank's message: no rank is left waiting.
bool run_distributed(MPI_Comm comm, const std::vector<int64_t>& trial_ids,
                     const ScheduleOptions& options,
                     const std::function<TrialResult(int64_t)>& run_trial,
                     const std::function<void(TrialResult)>& collect,
                     const std::function<bool()>& stop_requested, Progress& progress);

// Runs `phase` on every rank of `comm` and agrees on the outcome, so a failure on one rank never
// leaves the others waiting in a later collective call. When any rank failed, every rank throws
// PhaseFailure with the lowest failing rank's exit code; that rank's carries the message to
// print (`reported_here`), the others stay silent.
void run_collective_phase(MPI_Comm comm, const std::function<void()>& phase);

class PhaseFailure : public std::runtime_error {
 public:
  PhaseFailure(const std::string& message, int exit_code, bool reported_here)
      : std::runtime_error(message), exit_code_(exit_code), reported_here_(reported_here) {}
  int exit_code() const { return exit_code_; }
  bool reported_here() const { return reported_here_; }

 private:
  int exit_code_;
  bool reported_here_;
};

// The automatic chunk size: small enough to balance, large enough to amortise the counter.
int64_t automatic_chunk(int64_t n_trials, int n_ranks);

}  // namespace fracsweep
