#include "fracsweep/grid.hpp"

#include <algorithm>
#include <limits>

#include "fracsweep/error.hpp"

namespace fracsweep {

Grid::Grid(const JobConfig& job) {
  const auto fits_index = [](size_t n) {
    return n <= static_cast<size_t>(std::numeric_limits<int32_t>::max());
  };
  check_invariant(fits_index(job.models.size()) && fits_index(job.strategies.size()) &&
                      fits_index(job.amounts.size()) && fits_index(job.seeds.size()),
                  "grid axes must fit int32 indices");
  const auto n_models = static_cast<int32_t>(job.models.size());
  const auto n_strategies = static_cast<int32_t>(job.strategies.size());
  const auto n_amounts = static_cast<int32_t>(job.amounts.size());
  const auto n_seeds = static_cast<int32_t>(job.seeds.size());

  model_begin_.reserve(job.models.size() + 1);
  for (int32_t m = 0; m < n_models; ++m) {
    model_begin_.push_back(size());
    for (int32_t s = 0; s < n_strategies; ++s) {
      // A deterministic strategy gives the same trial for every seed: run it at the first.
      const int32_t seeds_for_strategy =
          job.strategies[static_cast<size_t>(s)].deterministic() ? std::min(1, n_seeds) : n_seeds;
      for (int32_t a = 0; a < n_amounts; ++a) {
        for (int32_t r = 0; r < seeds_for_strategy; ++r) {
          trials_.push_back(TrialSpec{
              .id = size(), .model_idx = m, .strategy_idx = s, .amount_idx = a, .seed_idx = r});
        }
      }
    }
  }
  model_begin_.push_back(size());
}

TrialRange shard_range(int64_t n_trials, int64_t index, int64_t count) {
  check_invariant(count >= 1 && index >= 0 && index < count, "shard index outside 0..count-1");
  return {n_trials * index / count, n_trials * (index + 1) / count};
}

}  // namespace fracsweep
