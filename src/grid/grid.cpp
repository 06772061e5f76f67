#include "fracsweep/grid/grid.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

Grid::Grid(const GridAxes& axes) : deterministic_(axes.deterministic) {
  const auto fits_index = [](int64_t n) {
    return n >= 0 && n <= std::numeric_limits<int32_t>::max();
  };
  check_invariant(fits_index(axes.n_models) &&
                      fits_index(static_cast<int64_t>(axes.deterministic.size())) &&
                      fits_index(axes.n_amounts) && fits_index(axes.n_seeds),
                  "grid axes must fit int32 indices");
  n_strategies_ = static_cast<int32_t>(axes.deterministic.size());
  n_amounts_ = static_cast<int32_t>(axes.n_amounts);
  n_seeds_ = static_cast<int32_t>(axes.n_seeds);
  block_begin_.reserve(static_cast<size_t>(axes.n_models * n_strategies_) + 1);
  int64_t next = 0;
  for (int64_t m = 0; m < axes.n_models; ++m) {
    for (int32_t s = 0; s < n_strategies_; ++s) {
      block_begin_.push_back(next);
      // A deterministic strategy gives the same trial for every seed: run it at the first.
      const int64_t seeds_for_strategy =
          deterministic_[static_cast<size_t>(s)] ? std::min<int64_t>(1, n_seeds_) : n_seeds_;
      int64_t block_size = 0;
      check_invariant(!__builtin_mul_overflow(axes.n_amounts, seeds_for_strategy, &block_size) &&
                          !__builtin_add_overflow(next, block_size, &next),
                      "the grid's trial count overflows int64");
    }
  }
  block_begin_.push_back(next);
}

TrialSpec Grid::trial(int64_t id) const {
  if (id < 0 || id >= size()) {
    throw std::out_of_range("trial id " + std::to_string(id) + " outside the grid of " +
                            std::to_string(size()));
  }
  // The last block starting at or before `id` (empty blocks share their start with the next).
  const auto after = std::upper_bound(block_begin_.begin(), block_begin_.end(), id);
  const auto block_index = static_cast<int64_t>(after - block_begin_.begin()) - 1;
  const int64_t offset = id - *(after - 1);
  const auto strategy = static_cast<int32_t>(block_index % n_strategies_);
  const int64_t seeds_for_strategy =
      deterministic_[static_cast<size_t>(strategy)] ? std::min<int32_t>(1, n_seeds_) : n_seeds_;
  return TrialSpec{.id = id,
                   .model_idx = static_cast<int32_t>(block_index / n_strategies_),
                   .strategy_idx = strategy,
                   .amount_idx = static_cast<int32_t>(offset / seeds_for_strategy),
                   .seed_idx = static_cast<int32_t>(offset % seeds_for_strategy)};
}

int64_t Grid::id_of(int32_t model, int32_t strategy, int32_t amount, int32_t seed) const {
  const int32_t n_models = static_cast<int32_t>((block_begin_.size() - 1) /
                                                static_cast<size_t>(std::max(1, n_strategies_)));
  const bool deterministic =
      strategy >= 0 && strategy < n_strategies_ && deterministic_[static_cast<size_t>(strategy)];
  const int32_t seeds_for_strategy = deterministic ? std::min<int32_t>(1, n_seeds_) : n_seeds_;
  if (model < 0 || model >= n_models || strategy < 0 || strategy >= n_strategies_ || amount < 0 ||
      amount >= n_amounts_ || seed < 0 || seed >= seeds_for_strategy) {
    throw std::out_of_range("grid indices (model " + std::to_string(model) + ", strategy " +
                            std::to_string(strategy) + ", amount " + std::to_string(amount) +
                            ", seed " + std::to_string(seed) + ") outside the grid");
  }
  return block(model, strategy) + int64_t{amount} * seeds_for_strategy + seed;
}

TrialRange shard_range(int64_t n_trials, int64_t index, int64_t count) {
  check_invariant(count >= 1 && index >= 0 && index < count, "shard index outside 0..count-1");
  return {n_trials * index / count, n_trials * (index + 1) / count};
}

}  // namespace fracsweep
