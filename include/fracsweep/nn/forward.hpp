#pragma once
// The interface every language-model forward pass offers the evaluators: one batched run over
// stacked token sequences into logits, and its FLOP count.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"
#include "fracsweep/nn/kv_cache.hpp"

namespace fracsweep {

// The std::vector size of a buffer of `count` floats (a 64-bit element count, never negative).
inline size_t floats(int64_t count) {
  return static_cast<size_t>(count);
}

// One language-model architecture's batched forward pass with its own reusable buffers, and its
// incremental (KV-cached) form for decoding one sequence token by token.
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
  // Incremental decoding of one sequence: logits (n, vocab) of tokens[0 .. n) at positions
  // start .. start + n - 1, attending to the keys and values of positions 0 .. start - 1 that
  // earlier calls with this model left in the KV cache (start = 0 begins a sequence; a start
  // below the last call's end rewinds it). The rows are those run() computes for the same
  // positions, up to the GEMM's rounding for a different row count. Needs n <= max_tokens and
  // start + n <= max_seq_len; the cache (n_layers, max_seq_len, kv_dim) is allocated on the
  // first call and reused.
  virtual void decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                      float* logits) = 0;
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

// An architecture's incremental decoding step (llama_decode, gpt2_decode): the contract of
// LanguageModelForward::decode, with the workspace's row buffers and `cache`.
template <class Workspace>
using DecodeFunction = void (*)(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                                Workspace& ws, KvCache& cache, float* logits);

// A LanguageModelForward over an architecture's free forward function (which fills a `Workspace`
// built from (config, max_tokens, max_seq_len)), its FLOP count, its gradient pass and its
// decoding step.
template <class Workspace,
          void (*run_forward)(const Model& model, const TokenBatch& batch, Workspace& ws,
                              float* logits),
          double (*count_flops)(const LlamaConfig& config, const TokenBatch& batch),
          GradientFunction run_gradient, DecodeFunction<Workspace> run_decode>
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
  void decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
              float* logits) override {
    if (!cache_) cache_.emplace(config_.n_layers, workspace_.max_seq_len, config_.kv_dim());
    run_decode(model, tokens, n, start, workspace_, *cache_, logits);
  }

 private:
  LlamaConfig config_;
  Workspace workspace_;
  std::vector<float> gradient_arena_;  // the gradient pass's buffers, grown on first use
  std::optional<KvCache> cache_;       // decode()'s keys and values, allocated on first use
};

}  // namespace fracsweep
