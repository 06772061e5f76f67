#pragma once
// The objectives gradient-guided strategies raise (config/strategy.hpp's Objective), built as
// functions of a forward pass's logits: each is a weighted sum of cross-entropies
//   J = sum over terms of weight * (-log softmax(logits[row])[target]),
// which covers every objective fracsweep names:
//   nll           rows predicting evaluation targets, weight 1 / their count;
//   agreement     the same rows, target = the unperturbed model's top-1, weight 1 / count;
//   remove:KIND   rows predicting the target tokens of KIND's probes, weight 1 / probes of KIND
//                 (J = minus the mean target log-probability);
//   implant:KIND  the same rows with weight -1 / probes of KIND (J = the mean log-probability).
// Rows not named contribute nothing.
#include <cstdint>
#include <vector>

#include "fracsweep/nn/gradient.hpp"

namespace fracsweep {

struct CrossEntropyTerm {
  int64_t row = 0;     // logits row
  int32_t target = 0;  // class / token id
  double weight = 0;
};

// J and dJ/dlogits for `terms` (a LogitObjective); the terms are copied. Sums run in term
// order in double, so the value is the same on every rank and thread count.
LogitObjective cross_entropy_objective(std::vector<CrossEntropyTerm> terms);

// J alone for the logits (rows, classes) (no derivative): for the candidates of a search.
double cross_entropy_value(const std::vector<CrossEntropyTerm>& terms, const float* logits,
                           int64_t classes);

}  // namespace fracsweep
