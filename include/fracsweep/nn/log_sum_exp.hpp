#pragma once
// Log-sum-exp of a row of logits (softmax normaliser): the fast kernel and its plain twin.
#include <cstdint>

namespace fracsweep {

// Largest value of a row (NaN-free rows: vectorised lanes; a NaN may or may not be returned).
float row_max(const float* logits, int64_t vocab);
// log(sum_i exp(logits_i)) of a finite row: fast_exp.hpp's float exponentials (vectorised,
// relative error < 1.5e-7 each) summed in double; the result is within ~3e-7 of log_sum_exp_ref.
double log_sum_exp(const float* logits, int64_t vocab);
// The plain twin: std::exp in double throughout.
double log_sum_exp_ref(const float* logits, int64_t vocab);
}  // namespace fracsweep
