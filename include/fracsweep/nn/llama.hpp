#pragma once
// Batched Llama forward pass over stacked sequences: every projection is one GEMM over all
// tokens of the batch (M = n_tokens); attention runs per sequence.
#include <cstdint>
#include <memory>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/ops.hpp"

namespace fracsweep {

class LanguageModelForward;  // forward.hpp
class KvCache;               // kv_cache.hpp

// Buffers sized once (for up to `max_tokens` stacked tokens, sequences up to `max_seq_len`)
// and reused by every trial.
struct LlamaWorkspace {
  LlamaWorkspace(const LlamaConfig& config, int64_t max_tokens, int64_t max_seq_len);
  std::vector<float> x;        // (n_tok, dim)        residual stream
  std::vector<float> xn;       // (n_tok, dim)        normalised input of a block
  std::vector<float> q;        // (n_tok, dim)        queries after RoPE
  std::vector<float> k;        // (n_tok, kv_dim)     keys after RoPE
  std::vector<float> v;        // (n_tok, kv_dim)     values
  std::vector<float> att;      // (n_tok, dim)        attention output before wo
  std::vector<float> gate;     // (n_tok, hidden_dim) w1 x, then silu(w1 x) * w3 x
  std::vector<float> up;       // (n_tok, hidden_dim) w3 x
  std::vector<float> rope;     // (seq_len, head_dim) rotary cos/sin per position (rope_table)
  std::vector<float> scratch;  // attention scratch, one slot per thread (attention_causal_spans)
  std::vector<AttentionSpan> spans;  // (n_seqs) the batch's sequences for attention
  int64_t max_tokens = 0;
  int64_t max_seq_len = 0;
};

// logits (n_tok, vocab) of every position of every sequence in `batch`.
void llama_forward(const Model& model, const TokenBatch& batch, LlamaWorkspace& ws, float* logits);

// Incremental decoding (LanguageModelForward::decode): logits (n, vocab) of tokens[0 .. n) at
// positions start .. start + n - 1, their keys and values written to `cache`, whose rows
// 0 .. start - 1 must hold this model's earlier ones. The workspace's first n rows are reused.
void llama_decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                  LlamaWorkspace& ws, KvCache& cache, float* logits);

// The same computation with ref:: kernels only (for tests; slow).
void llama_forward_ref(const Model& model, const TokenBatch& batch, std::vector<float>& logits);

// FLOPs of one llama_forward over `batch` (GEMMs + attention), for benchmarks and plans.
double llama_forward_flops(const LlamaConfig& config, const TokenBatch& batch);

// llama_forward + llama_forward_flops for LanguageModelEvaluator, with a workspace for up to
// `max_tokens` stacked tokens in sequences of up to `max_seq_len` (a ForwardFactory).
std::unique_ptr<LanguageModelForward> make_llama_forward(const LlamaConfig& config,
                                                         int64_t max_tokens, int64_t max_seq_len);

}  // namespace fracsweep
