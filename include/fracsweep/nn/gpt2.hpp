#pragma once
// GPT-2 (Hugging Face GPT2LMHeadModel): learned position embeddings, pre-LayerNorm blocks with
// causal multi-head attention and a tanh-GELU MLP, final LayerNorm, head tied to the token
// embeddings. Batched like the Llama pass: every projection is one GEMM over all tokens
// (gemm.hpp's matmul_nt), attention runs per sequence.
//
// A GPT-2 Model uses LlamaConfig's fields as: dim = n_embd, hidden_dim = n_inner (4 n_embd by
// default), n_layers = n_layer, n_heads = n_kv_heads = n_head, vocab_size, seq_len =
// n_positions, norm_eps = layer_norm_epsilon, shared_classifier = true; Model::architecture is
// "gpt2". Tensors (HF Conv1D weights are stored input-major (in, out); fracsweep holds them
// transposed, (out, in), so that y = x W^T + b like every other projection):
//   wte (vocab, dim), wpe (seq_len, dim), per layer L: layers.L.ln_1.{weight,bias} (dim),
//   layers.L.attn.c_attn.weight (3 dim, dim) + .bias (3 dim), layers.L.attn.c_proj.weight
//   (dim, dim) + .bias, layers.L.ln_2.{weight,bias}, layers.L.mlp.c_fc.weight (hidden, dim) +
//   .bias (hidden), layers.L.mlp.c_proj.weight (dim, hidden) + .bias (dim); ln_f.{weight,bias}.
#include <cstdint>
#include <memory>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/forward.hpp"
#include "fracsweep/nn/ops.hpp"

namespace fracsweep {

// Parameter table in the order above (offsets into Model::values).
std::vector<TensorInfo> gpt2_tensor_table(const LlamaConfig& config);

struct Gpt2Workspace {
  Gpt2Workspace(const LlamaConfig& config, int64_t max_tokens, int64_t max_seq_len);
  std::vector<float> x;        // (n_tok, dim)        residual stream
  std::vector<float> xn;       // (n_tok, dim)        LayerNorm output
  std::vector<float> qkv;      // (n_tok, 3 dim)      queries | keys | values
  std::vector<float> att;      // (n_tok, dim)        attention output before c_proj
  std::vector<float> hidden;   // (n_tok, hidden_dim) MLP activations
  std::vector<float> scratch;  // attention scratch, one slot per thread (attention_causal_spans)
  std::vector<AttentionSpan> spans;  // (n_seqs) the batch's sequences for attention
  int64_t max_tokens = 0;
  int64_t max_seq_len = 0;
};

// logits (n_tok, vocab) of every position of every sequence in `batch`.
void gpt2_forward(const Model& model, const TokenBatch& batch, Gpt2Workspace& ws, float* logits);

// Incremental decoding (LanguageModelForward::decode): logits (n, vocab) of tokens[0 .. n) at
// positions start .. start + n - 1, their keys and values written to `cache`, whose rows
// 0 .. start - 1 must hold this model's earlier ones. The workspace's first n rows are reused.
void gpt2_decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                 Gpt2Workspace& ws, KvCache& cache, float* logits);

// FLOPs of one gpt2_forward over `batch` (GEMMs + attention, 2 per multiply-add; LayerNorm,
// GELU and softmax are not counted).
double gpt2_forward_flops(const LlamaConfig& config, const TokenBatch& batch);

// gpt2_forward + gpt2_forward_flops for LanguageModelEvaluator, with a workspace for up to
// `max_tokens` stacked tokens in sequences of up to `max_seq_len` (a ForwardFactory).
std::unique_ptr<LanguageModelForward> make_gpt2_forward(const LlamaConfig& config,
                                                        int64_t max_tokens, int64_t max_seq_len);

}  // namespace fracsweep
