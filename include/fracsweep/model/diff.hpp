#pragma once
// How two checkpoints of one architecture differ (`fracsweep diff A B`): per tensor and overall,
// how many values changed (bit patterns differ), the quantiles of |B - A| over the changed
// values, and the relative change ||B - A|| / ||A|| (L2 over all values, in double).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/model/model.hpp"

namespace fracsweep {

// Quantile levels reported for |delta|; the last is the maximum.
constexpr std::array<double, 5> diff_quantile_levels = {0.5, 0.9, 0.99, 0.999, 1.0};

struct DiffSummary {
  std::string name;     // tensor name, or "all" for the whole model
  int64_t count = 0;    // values compared
  int64_t changed = 0;  // values whose bit patterns differ
  // Quantiles of |delta| over the changed values (linear interpolation between order
  // statistics, as numpy's default); NaN when nothing changed or a delta is NaN.
  std::array<double, diff_quantile_levels.size()> abs_quantiles{};
  double delta_norm = 0;   // ||B - A||_2
  double weight_norm = 0;  // ||A||_2
  double fraction_changed() const {
    return count ? static_cast<double>(changed) / static_cast<double>(count) : 0.0;
  }
  double relative_change() const { return delta_norm / weight_norm; }
};

struct ModelDiff {
  std::vector<DiffSummary> tensors;  // (n_tensors) in model order
  DiffSummary overall;
};

// Throws InputError (check_same_tensors) unless B has A's tensors.
ModelDiff diff_models(const Model& a, const Model& b);

// The q-quantile of ascending `sorted` (linear interpolation); NaN when empty.
double quantile_of_sorted(const std::vector<float>& sorted, double q);

}  // namespace fracsweep
