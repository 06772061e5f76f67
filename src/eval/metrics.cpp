#include "fracsweep/eval/metrics.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "fracsweep/nn/log_sum_exp.hpp"
#include "fracsweep/nn/threads.hpp"

namespace fracsweep {

namespace {

// Reductions keep kLanes independent partial results so the compiler can vectorise them
// without reassociating floating-point sums (no -ffast-math); the tail runs scalar.
constexpr int64_t kLanes = 8;

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

namespace {

// KL(p_ref || softmax(logits)) of a finite row with log-sum-exp `lse`, clamping the rounding
// residue of an unchanged row (KL >= 0 mathematically).
double kl_from(const ReferenceRow& ref, const float* logits, int64_t vocab, double lse) {
  return std::max(0.0, ref.sum_p_log_p - dot(ref.probs, logits, vocab) + lse * ref.mass);
}

}  // namespace

PositionScore score_position(const float* logits, int64_t vocab, const ReferenceRow& ref,
                             int32_t target, const ReferenceRow* second) {
  PositionScore score;
  score.argmax = argmax_row(logits, vocab);
  if (score.argmax < 0) return score;
  const double lse = log_sum_exp(logits, vocab);
  score.nll = lse - static_cast<double>(logits[target]);
  score.kl = kl_from(ref, logits, vocab, lse);
  if (second) score.kl_second = kl_from(*second, logits, vocab, lse);
  return score;
}

void MetricAccumulator::add(const float* logits, int64_t vocab, const ReferenceRow& ref,
                            int32_t target, const ReferenceRow* second) {
  add(score_position(logits, vocab, ref, target, second), ref, target, second);
}

void MetricAccumulator::add(const PositionScore& score, const ReferenceRow& ref, int32_t target,
                            const ReferenceRow* second) {
  ++positions_;
  has_second_ = second != nullptr;
  const int32_t argmax = score.argmax;
  corrupted_ += ref.argmax == target && argmax != target;
  if (argmax < 0) {  // NaN/Inf logits: disagreeing, wrong, NLL and KL undefined
    ++nonfinite_;
    nll_sum_ = not_a_number;
    kl_sum_ = not_a_number;
    kl_max_ = not_a_number;
    kl_second_sum_ = not_a_number;
    return;
  }
  agree_ += argmax == ref.argmax;
  correct_ += argmax == target;
  if (second) {
    agree_second_ += argmax == second->argmax;
    kl_second_sum_ += score.kl_second;
  }
  nll_sum_ += score.nll;
  nll_finite_sum_ += score.nll;
  kl_sum_ += score.kl;
  kl_finite_sum_ += score.kl;
  if (!std::isnan(kl_max_)) kl_max_ = std::max(kl_max_, score.kl);
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
  if (has_second_) {
    m.top1_agreement_ref = static_cast<double>(agree_second_) / n;
    m.mean_kl_ref = kl_second_sum_ / n;
  }
  return m;
}

double token_logprob(const float* logits, int64_t vocab, int32_t token) {
  if (!row_is_finite(logits, vocab)) return not_a_number;
  return static_cast<double>(logits[token]) - log_sum_exp(logits, vocab);
}

// Rows go in chunks: their argmaxes on the rank's threads, then a scan that stops at the first
// mismatch, so a continuation that diverges early costs at most one chunk.
int64_t leading_matches(const float* logits, int64_t vocab, const int32_t* expected, int64_t n) {
  constexpr int64_t chunk = 32;
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t rows = std::min(chunk, n - first);
    int32_t argmax[chunk];  // (rows) of rows first .. first + rows - 1
#pragma omp parallel for schedule(static) if (worth_threads(rows * vocab))
    for (int64_t r = 0; r < rows; ++r) argmax[r] = argmax_row(logits + (first + r) * vocab, vocab);
    for (int64_t r = 0; r < rows; ++r) {
      if (argmax[r] != expected[first + r]) return first + r;
    }
  }
  return n;
}

}  // namespace fracsweep
