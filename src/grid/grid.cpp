#include "fracsweep/grid/grid.hpp"

#include <algorithm>
#include <limits>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

Grid::Grid(const GridAxes& axes) {
  const auto fits_index = [](int64_t n) {
    return n >= 0 && n <= std::numeric_limits<int32_t>::max();
  };
  check_invariant(fits_index(axes.n_models) &&
                      fits_index(static_cast<int64_t>(axes.deterministic.size())) &&
                      fits_index(axes.n_amounts) && fits_index(axes.n_seeds),
                  "grid axes must fit int32 indices");
  const auto n_models = static_cast<int32_t>(axes.n_models);
  const auto n_strategies = static_cast<int32_t>(axes.deterministic.size());
  const auto n_amounts = static_cast<int32_t>(axes.n_amounts);
  const auto n_seeds = static_cast<int32_t>(axes.n_seeds);

  model_begin_.reserve(static_cast<size_t>(n_models) + 1);
  for (int32_t m = 0; m < n_models; ++m) {
    model_begin_.push_back(size());
    for (int32_t s = 0; s < n_strategies; ++s) {
      // A deterministic strategy gives the same trial for every seed: run it at the first.
      const int32_t seeds_for_strategy =
          axes.deterministic[static_cast<size_t>(s)] ? std::min(1, n_seeds) : n_seeds;
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
