#include "fracsweep/nn/log_sum_exp.hpp"

#include <algorithm>
#include <cmath>

#include "fracsweep/nn/fast_exp.hpp"

namespace fracsweep {

namespace {

// Reductions keep kLanes independent partial results so the compiler can vectorise them
// without reassociating floating-point sums (no -ffast-math); the tail runs scalar.
constexpr int64_t kLanes = 8;

// sum_i exp(logits_i - shift), in double.
double sum_exp_shifted(const float* logits, int64_t vocab, float shift) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += fast_exp(logits[i + j] - shift);
  }
  double sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  for (; i < vocab; ++i) sum += fast_exp(logits[i] - shift);
  return sum;
}

}  // namespace

float row_max(const float* logits, int64_t vocab) {
  float lanes[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lanes[j] = logits[0];
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j)
      lanes[j] = logits[i + j] > lanes[j] ? logits[i + j] : lanes[j];
  }
  float max = lanes[0];
  for (int64_t j = 1; j < kLanes; ++j) max = lanes[j] > max ? lanes[j] : max;
  for (; i < vocab; ++i) max = logits[i] > max ? logits[i] : max;
  return max;
}

double log_sum_exp(const float* logits, int64_t vocab) {
  const float max = row_max(logits, vocab);
  return static_cast<double>(max) + std::log(sum_exp_shifted(logits, vocab, max));
}

double log_sum_exp_ref(const float* logits, int64_t vocab) {
  double max = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return max + std::log(sum);
}

}  // namespace fracsweep
