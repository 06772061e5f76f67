#pragma once
// Runs a Llama model on the evaluation inputs and scores it against its unperturbed self.
// The unperturbed outputs (log-probabilities, argmax, greedy continuation) are computed once
// at construction and reused by every trial of the model.
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/eval_data.hpp"
#include "fracsweep/llama.hpp"
#include "fracsweep/metrics.hpp"
#include "fracsweep/model.hpp"

namespace fracsweep {

struct EvalInputs {
  std::vector<std::vector<int32_t>> sequences;  // teacher-forced sequences (BOS + tokens)
  std::vector<int32_t> greedy_prompt;           // prompt of the greedy continuation (>= BOS)
  int64_t greedy_tokens = 256;                  // continuation length (stops early at BOS)
};

// The unperturbed model's own behaviour on the evaluation inputs.
struct Baseline {
  TrialMetrics metrics;              // mean_nll, perplexity, accuracy (agreement/KL trivial)
  std::vector<int32_t> greedy_ids;   // greedy continuation after the prompt
};

class LlamaEvaluator {
 public:
  // Computes the baseline of `model` as it is now (unperturbed).
  LlamaEvaluator(const Model& model, EvalInputs inputs);

  const Baseline& baseline() const { return baseline_; }
  const TokenBatch& batch() const { return batch_; }
  // Metrics of `model` (perturbed in place) against the baseline.
  TrialMetrics evaluate(const Model& model);
  // Logits of the last evaluate() / baseline run: (n_tokens, vocab).
  const std::vector<float>& logits() const { return logits_; }

 private:
  EvalInputs inputs_;
  TokenBatch batch_;               // eval sequences then prompt + greedy continuation, stacked
  int64_t vocab_ = 0;
  std::vector<int64_t> pred_rows_; // (n_pred) batch rows that predict a next eval token
  std::vector<int32_t> targets_;   // (n_pred) the token each of those rows predicts
  int64_t greedy_first_row_ = 0;   // batch row predicting the first continuation token
  LlamaWorkspace workspace_;
  std::vector<float> logits_;      // (n_tokens, vocab)
  std::vector<float> ref_logprobs_;  // (n_pred, vocab) unperturbed log-probabilities
  std::vector<int32_t> ref_argmax_;  // (n_pred) unperturbed argmax
  Baseline baseline_;
};

// Greedy argmax decoding from `prompt` for up to `max_new` tokens, stopping at BOS (not
// included). Uses the batched forward on the growing prefix.
std::vector<int32_t> greedy_continuation(const Model& model, const std::vector<int32_t>& prompt,
                                         int64_t max_new, int32_t bos_id = 1);

}  // namespace fracsweep
