#include "fracsweep/eval/objective.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace fracsweep {
namespace {

// log sum_j exp(row[j]) in double, shifted by the row's largest finite-or-not value.
double log_sum_exp_row(const float* row, int64_t classes) {
  const double largest = *std::max_element(row, row + classes);
  double sum = 0.0;
  for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(row[j]) - largest);
  return largest + std::log(sum);
}

}  // namespace

double cross_entropy_value(const std::vector<CrossEntropyTerm>& terms, const float* logits,
                           int64_t classes) {
  double value = 0.0;
  for (const CrossEntropyTerm& term : terms) {
    const float* row = logits + term.row * classes;
    value += term.weight * (log_sum_exp_row(row, classes) - row[term.target]);
  }
  return value;
}

LogitObjective cross_entropy_objective(std::vector<CrossEntropyTerm> terms) {
  return [terms = std::move(terms)](const float* logits, int64_t rows, int64_t classes,
                                    float* dlogits) {
    std::fill_n(dlogits, rows * classes, 0.0f);
    double value = 0.0;
    for (const CrossEntropyTerm& term : terms) {
      const float* row = logits + term.row * classes;
      float* drow = dlogits + term.row * classes;
      const double lse = log_sum_exp_row(row, classes);
      value += term.weight * (lse - row[term.target]);
      // d/d logit_j of -log softmax_target = softmax_j - [j = target].
      for (int64_t j = 0; j < classes; ++j) {
        drow[j] += static_cast<float>(term.weight * std::exp(static_cast<double>(row[j]) - lse));
      }
      drow[term.target] -= static_cast<float>(term.weight);
    }
    return value;
  };
}

}  // namespace fracsweep
