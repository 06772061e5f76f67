#include "input_norms.hpp"

#include <algorithm>
#include <cmath>

#include "fracsweep/nn/ops_backward.hpp"

namespace fracsweep {

std::vector<double>& InputNormSums::sums_of(const float* weights, int64_t cols) {
  for (Entry& entry : entries_) {
    if (entry.weights == weights) return entry.sums;
  }
  entries_.push_back({weights, std::vector<double>(static_cast<size_t>(cols), 0.0)});
  return entries_.back().sums;
}

int64_t InputNormSums::tensor_count(const float* weights) const {
  const int64_t offset = weights - model_.values.data();
  for (const TensorInfo& info : model_.tensors) {
    if (info.offset == offset) return info.count;
  }
  return 0;
}

void InputNormSums::add_columns(const float* weights, const float* x, int64_t rows, int64_t cols) {
  add_column_squares(x, rows, cols, cols, sums_of(weights, cols).data());
}

void InputNormSums::add_normalised_columns(const float* gain, const float* x, int64_t rows,
                                           int64_t d, float eps, bool centered) {
  std::vector<double>& sums = sums_of(gain, d);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    double mean = 0.0;
    if (centered) {
      for (int64_t i = 0; i < d; ++i) mean += row[i];
      mean /= static_cast<double>(d);
    }
    double squares = 0.0;
    for (int64_t i = 0; i < d; ++i) squares += (row[i] - mean) * (row[i] - mean);
    const double inverse = 1.0 / (squares / static_cast<double>(d) + eps);  // 1 / (rms^2 or var)
    for (int64_t i = 0; i < d; ++i)
      sums[static_cast<size_t>(i)] += (row[i] - mean) * (row[i] - mean) * inverse;
  }
}

void InputNormSums::write(float* input_norm, const float* embedding, int64_t dim,
                          const std::vector<double>& lookups) const {
  std::fill_n(input_norm, model_.values.size(), 0.0f);
  const float* base = model_.values.data();
  bool embedding_summed = false;
  for (const Entry& entry : entries_) {
    const int64_t cols = static_cast<int64_t>(entry.sums.size());
    const bool is_embedding = entry.weights == embedding;
    embedding_summed = embedding_summed || is_embedding;
    const int64_t rows_out = tensor_count(entry.weights) / cols;
    float* out = input_norm + (entry.weights - base);
    for (int64_t o = 0; o < rows_out; ++o) {
      const double extra = is_embedding ? lookups[static_cast<size_t>(o)] : 0.0;
      for (int64_t i = 0; i < cols; ++i) {
        out[o * cols + i] =
            static_cast<float>(std::sqrt(entry.sums[static_cast<size_t>(i)] + extra));
      }
    }
  }
  if (!embedding_summed) write_lookup_rows(input_norm, embedding, dim, lookups);
}

void InputNormSums::write_lookup_rows(float* input_norm, const float* table, int64_t dim,
                                      const std::vector<double>& lookups) const {
  float* out = input_norm + (table - model_.values.data());
  for (size_t r = 0; r < lookups.size(); ++r) {
    std::fill_n(out + static_cast<int64_t>(r) * dim, dim,
                static_cast<float>(std::sqrt(lookups[r])));
  }
}

void InputNormSums::write_constant(float* input_norm, const float* weights, int64_t count,
                                   float value) const {
  std::fill_n(input_norm + (weights - model_.values.data()), count, value);
}

}  // namespace fracsweep
