#pragma once
// The interface every language-model forward pass offers the evaluators: one batched run over
// stacked token sequences into logits, and its FLOP count.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"

namespace fracsweep {

// The std::vector size of a buffer of `count` floats (a 64-bit element count, never negative).
inline size_t floats(int64_t count) {
  return static_cast<size_t>(count);
}

// One language-model architecture's batched forward pass with its own reusable buffers.
class LanguageModelForward {
 public:
  virtual ~LanguageModelForward() = default;
  // logits (n_tok, vocab) of every position of every sequence in `batch`.
  virtual void run(const Model& model, const TokenBatch& batch, float* logits) = 0;
  // FLOPs of one run() over `batch`.
  virtual double flops(const TokenBatch& batch) const = 0;
  // The architecture's gradient pass (gradient.hpp) over `batch`; returns the objective.
  virtual double gradient(const Model& model, const TokenBatch& batch,
                          const LogitObjective& objective, const GradientOutputs& out) = 0;
};

// An architecture's gradient pass (llama_gradient, gpt2_gradient), its buffers carved from
// `arena` (reused by every call).
using GradientFunction = double (*)(const Model& model, const TokenBatch& batch,
                                    const LogitObjective& objective, const GradientOutputs& out,
                                    std::vector<float>& arena);

// Creates the forward pass of a model with `config`, with buffers for up to `max_tokens` stacked
// tokens in sequences of up to `max_seq_len` (make_llama_forward, make_gpt2_forward).
using ForwardFactory = std::unique_ptr<LanguageModelForward> (*)(const LlamaConfig& config,
                                                                 int64_t max_tokens,
                                                                 int64_t max_seq_len);

// A LanguageModelForward over an architecture's free forward function (which fills a `Workspace`
// built from (config, max_tokens, max_seq_len)), its FLOP count and its gradient pass.
template <class Workspace,
          void (*run_forward)(const Model& model, const TokenBatch& batch, Workspace& ws,
                              float* logits),
          double (*count_flops)(const LlamaConfig& config, const TokenBatch& batch),
          GradientFunction run_gradient>
class WorkspaceForward final : public LanguageModelForward {
 public:
  WorkspaceForward(const LlamaConfig& config, int64_t max_tokens, int64_t max_seq_len)
      : config_(config), workspace_(config, max_tokens, max_seq_len) {}
  void run(const Model& model, const TokenBatch& batch, float* logits) override {
    run_forward(model, batch, workspace_, logits);
  }
  double flops(const TokenBatch& batch) const override { return count_flops(config_, batch); }
  double gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                  const GradientOutputs& out) override {
    return run_gradient(model, batch, objective, out, gradient_arena_);
  }

 private:
  LlamaConfig config_;
  Workspace workspace_;
  std::vector<float> gradient_arena_;  // the gradient pass's buffers, grown on first use
};

}  // namespace fracsweep
