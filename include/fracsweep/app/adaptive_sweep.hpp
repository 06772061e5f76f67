#pragma once
// The searches of an adaptive job ([sweep] adaptive; grid/adaptive.hpp): which trials they need
// next, given the rows so far, and what they found. One search per (model, strategy, seed,
// criterion); a deterministic strategy has one seed. The first seed of the job searches cold;
// once it is settled, the other seeds all start from its bracket (a warm start), so they usually
// settle in a few trials, in parallel. Everything here is a pure function of the rows: a
// resumed run replays the journal to the same decisions.
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/adaptive.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/trial_columns.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// Completed rows by trial id (pointers into the caller's rows).
using RowsById = std::unordered_map<int64_t, const TrialRow*>;
RowsById index_rows(const std::vector<TrialResult>& results);

class AdaptiveSearches {
 public:
  // `job.adaptive` must be set. Throws InputError naming the job file and key when a criterion
  // names no metric column of this job (`reference`: some model has reference=NAME;
  // `probe_kinds`: the [eval] probes kinds).
  AdaptiveSearches(const JobConfig& job, const Grid& grid, bool reference,
                   const std::vector<std::string>& probe_kinds);

  // The trials model `model`'s searches need next, ascending; empty once all are settled.
  std::vector<int64_t> next_trials(int32_t model, const RowsById& rows) const;
  // Every search, in (model, strategy, seed, criterion) order.
  std::vector<SearchResult> results(const RowsById& rows) const;
  // Most trials one model's searches can take (for progress: a bound, not an estimate).
  int64_t trial_bound(int32_t model) const;

 private:
  // Walks the searches of one (model, strategy, criterion): calls `visit(seed, state)` for the
  // first seed, then, once it is settled, for every other seed.
  template <typename Visit>
  void walk_seeds(int32_t model, int32_t strategy, int32_t criterion, const RowsById& rows,
                  Visit&& visit) const;
  int32_t seeds_for(int32_t strategy) const;

  const JobConfig& job_;
  const Grid& grid_;
  const AdaptiveSearch& search_;
  std::vector<JobTrialColumn> metric_columns_;  // (criteria) the column each criterion reads
};

}  // namespace fracsweep
