#include "fracsweep/model/diff.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace fracsweep {

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

// Fills the changed count, norms and |delta| of the changed values of [begin, end).
void accumulate(const Model& a, const Model& b, int64_t begin, int64_t end, DiffSummary& summary,
                std::vector<float>& abs_deltas) {
  for (int64_t i = begin; i < end; ++i) {
    const float wa = a.values[static_cast<size_t>(i)], wb = b.values[static_cast<size_t>(i)];
    const double delta = static_cast<double>(wb) - static_cast<double>(wa);
    summary.delta_norm += delta * delta;
    summary.weight_norm += static_cast<double>(wa) * wa;
    if (std::bit_cast<uint32_t>(wa) != std::bit_cast<uint32_t>(wb)) {
      ++summary.changed;
      abs_deltas.push_back(static_cast<float>(std::fabs(delta)));
    }
  }
  summary.count += end - begin;
}

void finish(DiffSummary& summary, std::vector<float>& abs_deltas) {
  summary.delta_norm = std::sqrt(summary.delta_norm);
  summary.weight_norm = std::sqrt(summary.weight_norm);
  const bool has_nan =
      std::any_of(abs_deltas.begin(), abs_deltas.end(), [](float d) { return std::isnan(d); });
  if (!has_nan) std::sort(abs_deltas.begin(), abs_deltas.end());
  for (size_t q = 0; q < diff_quantile_levels.size(); ++q) {
    summary.abs_quantiles[q] =
        has_nan ? nan_value : quantile_of_sorted(abs_deltas, diff_quantile_levels[q]);
  }
}

}  // namespace

double quantile_of_sorted(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return nan_value;
  const double position = q * static_cast<double>(sorted.size() - 1);
  const auto low = static_cast<size_t>(std::floor(position));
  const size_t high = std::min(low + 1, sorted.size() - 1);
  const double weight = position - static_cast<double>(low);
  return static_cast<double>(sorted[low]) +
         weight * (static_cast<double>(sorted[high]) - static_cast<double>(sorted[low]));
}

ModelDiff diff_models(const Model& a, const Model& b) {
  check_same_tensors(a, b, "diff");
  ModelDiff diff;
  diff.overall.name = "all";
  std::vector<float> all_deltas;     // (changed values of the model) |delta|
  std::vector<float> tensor_deltas;  // (changed values of one tensor) |delta|
  for (const TensorInfo& t : a.tensors) {
    DiffSummary summary;
    summary.name = t.name;
    tensor_deltas.clear();
    accumulate(a, b, t.offset, t.offset + t.count, summary, tensor_deltas);
    all_deltas.insert(all_deltas.end(), tensor_deltas.begin(), tensor_deltas.end());
    diff.overall.count += summary.count;
    diff.overall.changed += summary.changed;
    diff.overall.delta_norm += summary.delta_norm;  // sums of squares until finish()
    diff.overall.weight_norm += summary.weight_norm;
    finish(summary, tensor_deltas);
    diff.tensors.push_back(summary);
  }
  finish(diff.overall, all_deltas);
  return diff;
}

}  // namespace fracsweep
