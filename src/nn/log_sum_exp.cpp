#include "fracsweep/nn/log_sum_exp.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace fracsweep {

namespace {

// exp(x) for x <= 0 in float, written so the compiler vectorises loops that call it (no libm
// call): Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 minimax polynomial
// for exp(r) (Cephes expf coefficients), and 2^n built in the exponent bits. Relative error
// below 2e-7 (tested against std::exp); arguments below -87 give exp(-87) ~ 1.6e-38, which no
// sum of a softmax row can notice.
inline float exp_nonpositive(float x) {
  x = x > -87.0f ? x : -87.0f;
  // Round to nearest by adding and removing 1.5 * 2^23 (valid for |value| < 2^22).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * r * r + r + 1.0f;
  const auto scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return exp_r * scale;
}

// Reductions keep kLanes independent partial results so the compiler can vectorise them
// without reassociating floating-point sums (no -ffast-math); the tail runs scalar.
constexpr int64_t kLanes = 8;


// sum_i exp(logits_i - shift), in double.
double sum_exp_shifted(const float* logits, int64_t vocab, float shift) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += exp_nonpositive(logits[i + j] - shift);
  }
  double sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  for (; i < vocab; ++i) sum += exp_nonpositive(logits[i] - shift);
  return sum;
}

}  // namespace

float row_max(const float* logits, int64_t vocab) {
  float lanes[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lanes[j] = logits[0];
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = logits[i + j] > lanes[j] ? logits[i + j] : lanes[j];
  }
  float max = lanes[0];
  for (int64_t j = 1; j < kLanes; ++j) max = lanes[j] > max ? lanes[j] : max;
  for (; i < vocab; ++i) max = logits[i] > max ? logits[i] : max;
  return max;
}

float exp_nonpositive_for_test(float x) { return exp_nonpositive(x); }

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
