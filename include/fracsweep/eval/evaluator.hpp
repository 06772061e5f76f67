#pragma once
// Evaluators run a model on the job's evaluation inputs and score it against its unperturbed
// self. The unperturbed outputs are computed once, at construction, and reused by every trial.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/eval/metrics.hpp"
#include "fracsweep/eval/objective.hpp"
#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/probes.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/forward.hpp"

namespace fracsweep {

struct EvalInputs {
  std::vector<std::vector<int32_t>> sequences;  // teacher-forced sequences (BOS + tokens)
  std::vector<int32_t> greedy_prompt;           // prompt of the greedy continuation (>= BOS)
  int64_t greedy_tokens = 256;                  // continuation length (stops early at the stop id)
  // The continuation ends when this token is predicted (not included): BOS for llama2.c and
  // the Llama family, eos_token_id for GPT-2. -1 never ends it early.
  int32_t greedy_stop_id = -1;
  // Behaviour probes (formats/probes.hpp), teacher-forced in the same batch: prompt + target.
  std::vector<ProbeTokens> probes;
  std::vector<std::string> probe_kinds;  // (n_kinds) names; ProbeTokens::kind indexes them
};

// The unperturbed model's own behaviour on the evaluation inputs.
struct Baseline {
  TrialMetrics metrics;             // mean_nll, perplexity, accuracy (agreement/KL trivial)
  std::vector<int32_t> greedy_ids;  // greedy continuation after the prompt (language models)
};

// One architecture's trial path: forward pass on the evaluation inputs + metrics.
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual const Baseline& baseline() const = 0;
  // Metrics of `model` (perturbed in place) against the baseline.
  virtual TrialMetrics evaluate(const Model& model) = 0;
  // Also scores every trial against `reference`, a second checkpoint of the same architecture
  // and shapes, on the same inputs (TrialMetrics::top1_agreement_ref, mean_kl_ref); its outputs
  // are computed now and cached. Throws InputError when the architectures differ.
  virtual void set_reference(const Model& reference) = 0;
  // FLOPs of one forward pass over the evaluation inputs (plans and benchmarks).
  virtual double forward_flops() const = 0;

  // The cross-entropy terms of `objective` over this evaluator's rows (objective.hpp).
  // InputError when this model cannot provide it (probes on a classifier, a kind without
  // probes).
  virtual std::vector<CrossEntropyTerm> objective_terms(const Objective& objective) const = 0;
  // Gradient of the objective `terms` at `model` as it is now, and/or the input norms
  // (GradientOutputs); returns the objective.
  virtual double gradient(const Model& model, const std::vector<CrossEntropyTerm>& terms,
                          const GradientOutputs& out) = 0;
  // The objective `terms` at `model` (one forward pass).
  virtual double objective_value(const Model& model,
                                 const std::vector<CrossEntropyTerm>& terms) = 0;
};

// Language models on teacher-forced sequences plus a greedy continuation, whatever the
// architecture: `make_forward` supplies its forward pass.
class LanguageModelEvaluator : public Evaluator {
 public:
  // Computes the baseline of `model` as it is now (unperturbed). Throws InputError when a
  // sequence is longer than the model's seq_len or holds a token outside its vocabulary.
  // `greedy_done`, when set, is called once the greedy continuation is computed (before the
  // baseline's forward pass), so loaders can report it as a phase of its own.
  LanguageModelEvaluator(const Model& model, const EvalInputs& inputs, ForwardFactory make_forward,
                         const std::function<void()>& greedy_done = {});

  const Baseline& baseline() const override { return baseline_; }
  TrialMetrics evaluate(const Model& model) override;
  void set_reference(const Model& reference) override;
  double forward_flops() const override;
  std::vector<CrossEntropyTerm> objective_terms(const Objective& objective) const override;
  double gradient(const Model& model, const std::vector<CrossEntropyTerm>& terms,
                  const GradientOutputs& out) override;
  double objective_value(const Model& model, const std::vector<CrossEntropyTerm>& terms) override;
  // Every probe's outcome on the logits of the last evaluate() / baseline run (probe order).
  struct ProbeOutcome {
    double logprob = 0;               // log p(target | prompt), teacher-forced; NaN: non-finite
    bool begins_with_target = false;  // the greedy continuation begins with the target
  };
  std::vector<ProbeOutcome> probe_outcomes() const;
  // Greedy argmax decoding of `model` from `prompt` for up to `max_new` tokens, stopping at
  // `stop_id` (not included) or a non-finite row: exactly the tokens decoding on the growing
  // prefix gives, found by KV-cached decoding (one row's forward pass per token) checked by a
  // teacher-forced pass over prompt + continuation. The prompt plus max_new - 1 tokens must fit
  // the capacity this evaluator was built for.
  std::vector<int32_t> greedy_continuation(const Model& model, const std::vector<int32_t>& prompt,
                                           int64_t max_new, int32_t stop_id);
  const TokenBatch& batch() const { return batch_; }
  // Logits of the last evaluate() / baseline run: (n_tokens, vocab).
  const std::vector<float>& logits() const { return logits_; }

 private:
  // Where one probe sits in the batch: rows first_row .. first_row + targets.size() - 1 predict
  // the target's tokens.
  struct ProbeRows {
    int32_t kind = 0;
    int64_t first_row = 0;
    std::vector<int32_t> targets;  // (n_target) target token ids
  };
  // Appends greedy tokens to `sequence` (n_prompt prompt tokens, then the continuation) until
  // the continuation has max_new tokens or a stop is predicted, decoding with the KV cache from
  // position `from` (whose earlier positions the cache holds for these tokens).
  void decode_greedily(const Model& model, std::vector<int32_t>& sequence, int64_t n_prompt,
                       int64_t from, int64_t max_new, int32_t stop_id);
  TrialMetrics score();  // metrics of logits_ against the reference
  void score_probes(TrialMetrics& metrics) const;
  // Reference rows (n_pred) and their probabilities (n_pred, vocab) of the logits in logits_.
  void cache_reference(const std::string& path, std::vector<float>& probs,
                       std::vector<ReferenceRow>& rows) const;

  int64_t vocab_ = 0;
  LlamaConfig config_;  // the architecture the forward pass was built for
  std::unique_ptr<LanguageModelForward> forward_;
  TokenBatch batch_;                       // eval sequences, then prompt + greedy continuation
  std::vector<int64_t> pred_rows_;         // (n_pred) batch rows that predict a next eval token
  std::vector<int32_t> targets_;           // (n_pred) the token each of those rows predicts
  int64_t greedy_first_row_ = 0;           // batch row predicting the first continuation token
  std::vector<float> logits_;              // (n_tokens, vocab)
  std::vector<float> ref_probs_;           // (n_pred, vocab) unperturbed probabilities
  std::vector<ReferenceRow> ref_rows_;     // (n_pred) views into ref_probs_ with row constants
  std::vector<PositionScore> scores_;      // (n_pred) score()'s per-position work
  std::vector<float> second_probs_;        // (n_pred, vocab) a second checkpoint's probabilities
  std::vector<ReferenceRow> second_rows_;  // (n_pred) views into second_probs_; empty: none
  std::vector<ProbeRows> probe_rows_;      // (n_probes) batch rows of each probe's target
  std::vector<std::string> probe_kinds_;   // (n_kinds) names
  int64_t n_probe_kinds_ = 0;
  Baseline baseline_;
};

}  // namespace fracsweep
