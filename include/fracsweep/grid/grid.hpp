#pragma once
// The trial grid: model x strategy x amount x seed, with stable trial ids. Ids run model-major
// (then strategy, amount, seed) so one model's trials are contiguous; deterministic strategies
// have one trial per amount (at the first seed).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fracsweep {

struct TrialSpec {
  int64_t id = 0;
  int32_t model_idx = 0;
  int32_t strategy_idx = 0;
  int32_t amount_idx = 0;
  int32_t seed_idx = 0;
};

// The axes' lengths, and which strategies are deterministic (one trial per amount).
struct GridAxes {
  int64_t n_models = 0;
  std::vector<bool> deterministic;  // (n_strategies)
  int64_t n_amounts = 0;
  int64_t n_seeds = 0;
};

// The grid is computed, not stored: trial(id) is arithmetic on the per-(model, strategy) block
// starts, so a grid costs O(models x strategies) memory whatever its number of trials.
class Grid {
 public:
  explicit Grid(const GridAxes& axes);
  int64_t size() const { return block_begin_.back(); }
  // The trial with this id; std::out_of_range outside [0, size()).
  TrialSpec trial(int64_t id) const;
  // The id of the trial at these indices (the inverse of trial(); a deterministic strategy's
  // trials are at seed index 0); std::out_of_range outside the axes.
  int64_t id_of(int32_t model, int32_t strategy, int32_t amount, int32_t seed) const;
  // [first, last) trial ids of model m.
  int64_t model_begin(int32_t m) const { return block(m, 0); }
  int64_t model_end(int32_t m) const { return block(m + 1, 0); }

 private:
  int64_t block(int32_t model, int32_t strategy) const {
    return block_begin_.at(static_cast<size_t>(model) * static_cast<size_t>(n_strategies_) +
                           static_cast<size_t>(strategy));
  }
  int32_t n_strategies_ = 0;
  int32_t n_amounts_ = 0;
  int32_t n_seeds_ = 0;
  std::vector<bool> deterministic_;   // (n_strategies)
  std::vector<int64_t> block_begin_;  // (n_models * n_strategies + 1) first id of each block
};

// Trial ids [first, last) of shard `index` (0-based) of `count`: consecutive, disjoint, and
// together the whole grid; sizes differ by at most one.
struct TrialRange {
  int64_t first = 0;
  int64_t last = 0;
};
TrialRange shard_range(int64_t n_trials, int64_t index, int64_t count);

}  // namespace fracsweep
