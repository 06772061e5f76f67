#pragma once
// Log-sum-exp of a row of logits (softmax normaliser): the fast kernel and its plain twin.
#include <cstdint>

namespace fracsweep {

// Largest value of a row (NaN-free rows: vectorised lanes; a NaN may or may not be returned).
float row_max(const float* logits, int64_t vocab);
// log(sum_i exp(logits_i)) of a finite row: float exponentials (vectorised, relative error
// < 2e-7 each) summed in double; the result is within ~3e-7 of log_sum_exp_ref.
double log_sum_exp(const float* logits, int64_t vocab);
// The plain twin: std::exp in double throughout.
double log_sum_exp_ref(const float* logits, int64_t vocab);
// The vectorisable exp behind log_sum_exp, for x <= 0 (exposed for its accuracy test).
float exp_nonpositive_for_test(float x);
}  // namespace fracsweep
