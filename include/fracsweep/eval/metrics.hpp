#pragma once
// Behaviour-change metrics: pure functions of (perturbed logits, unperturbed reference, targets).
// Definitions (as in the shared reference fixtures):
//   mean_nll        token-weighted mean of -log softmax(logits)[next token]
//   top1_agreement  fraction of positions whose argmax equals the unperturbed argmax
//   mean_kl/max_kl  mean / max over positions of KL(p_unperturbed || p_perturbed), natural log
//   accuracy        fraction of positions whose argmax is the next token (or the label)
//   sdc_rate        silent data corruption: fraction of positions the unperturbed model got
//                   right (argmax = target) and the perturbed model gets wrong
//   nonfinite       positions whose logits contain NaN or Inf: they count as disagreeing and
//                   wrong; their NLL and KL are NaN, so mean_nll/mean_kl/max_kl become NaN
//                   (mean_nll_finite / mean_kl_finite average the finite positions only).
// Softmax and sums are computed in double.
#include <array>
#include <cstdint>
#include <limits>

#include "fracsweep/formats/probes.hpp"

namespace fracsweep {

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

// One value per probe kind (formats/probes.hpp); kinds a job does not have stay NaN.
using PerProbeKind = std::array<double, max_probe_kinds>;
constexpr PerProbeKind no_probe_values() {
  PerProbeKind values{};
  for (double& v : values) v = not_a_number;
  return values;
}

struct TrialMetrics {
  int64_t positions = 0;  // predicted positions evaluated
  int64_t nonfinite_positions = 0;
  double mean_nll = not_a_number;
  double perplexity = not_a_number;  // exp(mean_nll)
  double mean_nll_finite = not_a_number;
  double accuracy = not_a_number;
  double sdc_rate = not_a_number;
  double top1_agreement = not_a_number;
  double mean_kl = not_a_number;
  double max_kl = not_a_number;
  double mean_kl_finite = not_a_number;
  int64_t greedy_match = 0;   // leading continuation tokens equal to the unperturbed
  int64_t greedy_length = 0;  // length of the unperturbed continuation
  // Against a second checkpoint's outputs on the same inputs ([models] reference=NAME): top-1
  // agreement and mean KL(p_reference || p_perturbed); NaN without a reference.
  double top1_agreement_ref = not_a_number;
  double mean_kl_ref = not_a_number;
  // Behaviour probes, per kind: the fraction of prompts whose greedy continuation begins with
  // the target, and the mean over prompts of log p(target | prompt) (nats; teacher-forced).
  PerProbeKind probe_rate = no_probe_values();
  PerProbeKind probe_logprob = no_probe_values();
};

// The unperturbed model at one position, in the form KL needs:
//   KL(p_ref || p) = sum_i p_ref,i log p_ref,i - sum_i p_ref,i logit_i + lse(logits) sum_i p_ref,i
// so a trial costs one log-sum-exp and one dot product per position.
struct ReferenceRow {
  const float* probs = nullptr;  // (vocab) softmax of the unperturbed logits
  double sum_p_log_p = 0;        // sum_i probs_i * (logit_i - lse): log p in double
  double mass = 0;               // sum_i probs_i (1 up to rounding)
  int32_t argmax = 0;            // unperturbed argmax
};

// Fills probs_out (vocab) and the row constants from finite unperturbed logits.
ReferenceRow make_reference_row(const float* logits, int64_t vocab, float* probs_out);
// First index of the largest logit; -1 when the row has a NaN or Inf.
int32_t argmax_row(const float* logits, int64_t vocab);
bool row_is_finite(const float* logits, int64_t vocab);

// What one predicted position adds to a trial's metrics: its vocabulary-wide work (argmax,
// log-sum-exp, dot products), so that positions can be scored on several threads and then
// added up in position order, bitwise the same at any thread count.
struct PositionScore {
  int32_t argmax = -1;   // first largest logit; -1 when the row has a NaN or Inf
  double nll = 0;        // -log softmax(logits)[target] (finite rows)
  double kl = 0;         // KL(p_ref || softmax(logits)) (finite rows)
  double kl_second = 0;  // the same against the second reference row, when there is one
};
PositionScore score_position(const float* logits, int64_t vocab, const ReferenceRow& ref,
                             int32_t target, const ReferenceRow* second = nullptr);

// Accumulates positions of one trial.
class MetricAccumulator {
 public:
  // One predicted position: perturbed logits (vocab), the unperturbed reference there, the true
  // next token, and optionally a second checkpoint's reference row at the same position.
  void add(const float* logits, int64_t vocab, const ReferenceRow& ref, int32_t target,
           const ReferenceRow* second = nullptr);
  // The same position, scored already (score_position with the same arguments).
  void add(const PositionScore& score, const ReferenceRow& ref, int32_t target,
           const ReferenceRow* second = nullptr);
  TrialMetrics finish() const;

 private:
  int64_t positions_ = 0, nonfinite_ = 0, agree_ = 0, correct_ = 0, corrupted_ = 0;
  double nll_sum_ = 0, nll_finite_sum_ = 0, kl_sum_ = 0, kl_finite_sum_ = 0, kl_max_ = 0;
  bool has_second_ = false;
  int64_t agree_second_ = 0;
  double kl_second_sum_ = 0;
};

// log softmax(logits)[token] of one row, NaN when the row has a NaN or Inf.
double token_logprob(const float* logits, int64_t vocab, int32_t token);

// Number of leading positions whose perturbed argmax equals the reference continuation:
// `logits` (n, vocab) are the rows that predict continuation tokens `expected` (n).
int64_t leading_matches(const float* logits, int64_t vocab, const int32_t* expected, int64_t n);

}  // namespace fracsweep
