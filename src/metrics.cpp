#include "fracsweep/metrics.hpp"

#include <bit>
#include <cmath>
#include <cstdint>

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

// sum_i a_i * b_i, in double.
double dot(const float* a, const float* b, int64_t n) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(a[i + j]) * b[i + j];
  }
  double sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  for (; i < n; ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

}  // namespace

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

bool row_is_finite(const float* logits, int64_t vocab) {
  constexpr uint32_t exponent_bits = 0x7f800000;  // all ones: Inf or NaN
  uint32_t nonfinite = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    nonfinite |= (std::bit_cast<uint32_t>(logits[i]) & exponent_bits) == exponent_bits;
  }
  return nonfinite == 0;
}

ReferenceRow make_reference_row(const float* logits, int64_t vocab, float* probs_out) {
  const double lse = log_sum_exp(logits, vocab);
  ReferenceRow row;
  row.probs = probs_out;
  row.argmax = argmax_row(logits, vocab);
  for (int64_t i = 0; i < vocab; ++i) {
    const double log_p = static_cast<double>(logits[i]) - lse;
    probs_out[i] = static_cast<float>(std::exp(log_p));
    // Weights are the stored floats; an unchanged row gives KL = 0 up to the rounding of two
    // differently ordered double sums (< 1e-12 at vocab 32000).
    row.mass += probs_out[i];
    row.sum_p_log_p += probs_out[i] * log_p;
  }
  return row;
}

int32_t argmax_row(const float* logits, int64_t vocab) {
  if (!row_is_finite(logits, vocab)) return -1;
  const float max = row_max(logits, vocab);
  int64_t first = 0;
  while (logits[first] != max) ++first;
  return static_cast<int32_t>(first);
}

void MetricAccumulator::add(const float* logits, int64_t vocab, const ReferenceRow& ref,
                            int32_t target) {
  ++positions_;
  const int32_t argmax = argmax_row(logits, vocab);
  corrupted_ += ref.argmax == target && argmax != target;
  if (argmax < 0) {  // NaN/Inf logits: disagreeing, wrong, NLL and KL undefined
    ++nonfinite_;
    nll_sum_ = not_a_number;
    kl_sum_ = not_a_number;
    kl_max_ = not_a_number;
    return;
  }
  agree_ += argmax == ref.argmax;
  correct_ += argmax == target;
  const double lse = log_sum_exp(logits, vocab);
  const double nll = lse - static_cast<double>(logits[target]);
  const double p_dot_logits = dot(ref.probs, logits, vocab);
  // Clamp the rounding residue of an unchanged row (KL >= 0 mathematically).
  const double kl = std::max(0.0, ref.sum_p_log_p - p_dot_logits + lse * ref.mass);
  nll_sum_ += nll;
  nll_finite_sum_ += nll;
  kl_sum_ += kl;
  kl_finite_sum_ += kl;
  if (!std::isnan(kl_max_)) kl_max_ = std::max(kl_max_, kl);
}

TrialMetrics MetricAccumulator::finish() const {
  TrialMetrics m;
  m.positions = positions_;
  m.nonfinite_positions = nonfinite_;
  if (positions_ == 0) return m;
  const auto n = static_cast<double>(positions_);
  const auto n_finite = static_cast<double>(positions_ - nonfinite_);
  m.mean_nll = nll_sum_ / n;
  m.perplexity = std::exp(m.mean_nll);
  m.accuracy = static_cast<double>(correct_) / n;
  m.sdc_rate = static_cast<double>(corrupted_) / n;
  m.top1_agreement = static_cast<double>(agree_) / n;
  m.mean_kl = kl_sum_ / n;
  m.max_kl = kl_max_;
  if (n_finite > 0) {
    m.mean_nll_finite = nll_finite_sum_ / n_finite;
    m.mean_kl_finite = kl_finite_sum_ / n_finite;
  }
  return m;
}

int64_t leading_matches(const float* logits, int64_t vocab, const int32_t* expected, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (argmax_row(logits + i * vocab, vocab) != expected[i]) return i;
  }
  return n;
}

}  // namespace fracsweep
