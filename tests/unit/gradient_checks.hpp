#pragma once
// Shared by the backward-pass tests: random inputs, the error measure they report, and the
// mean next-token NLL of a batch as a LogitObjective.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/nn/gradient.hpp"

namespace fracsweep::test {

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float half_width = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-half_width, half_width);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& value : values) value = distribution(generator);
  return values;
}

// max |a - b| / max |b| over two equally long sequences.
template <class A, class B>
double relative_error(const A& a, const B& b) {
  double worst = 0.0, largest = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    largest = std::max(largest, std::abs(static_cast<double>(b[i])));
  }
  return worst / largest;
}

// Mean NLL of next-token prediction over every sequence of a batch (rows t < len - 1 predict
// token t + 1), as a LogitObjective: d/d logits = (softmax - one_hot) / predicted rows.
inline LogitObjective mean_nll_objective(const TokenBatch& batch) {
  return [&batch](const float* logits, int64_t rows, int64_t vocab, float* dlogits) {
    std::fill_n(dlogits, rows * vocab, 0.0f);
    int64_t predicted = 0;
    for (int64_t s = 0; s < batch.n_seqs(); ++s)
      predicted += batch.seq_start[s + 1] - batch.seq_start[s] - 1;
    double total = 0.0;
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      for (int64_t r = batch.seq_start[s]; r + 1 < batch.seq_start[s + 1]; ++r) {
        const float* row = logits + r * vocab;
        const double largest = *std::max_element(row, row + vocab);
        double sum = 0.0;
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - largest);
        const int32_t target = batch.tokens[static_cast<size_t>(r + 1)];
        total += largest + std::log(sum) - row[target];
        for (int64_t j = 0; j < vocab; ++j) {
          const double p = std::exp(row[j] - largest) / sum;
          dlogits[r * vocab + j] =
              static_cast<float>((p - (j == target ? 1.0 : 0.0)) / static_cast<double>(predicted));
        }
      }
    }
    return total / static_cast<double>(predicted);
  };
}

}  // namespace fracsweep::test
