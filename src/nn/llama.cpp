// Batched Llama forward pass (llama2.c's `forward`, over every position of stacked sequences at
// once): projections are one GEMM each over all tokens, attention runs per sequence.
#include "fracsweep/nn/llama.hpp"

#include <algorithm>
#include <initializer_list>
#include <string>

#include "fracsweep/nn/forward.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_ref.hpp"
#include "fracsweep/util/error.hpp"
#include "llama_weights.hpp"

namespace fracsweep {

using llama_detail::check_batch;
using llama_detail::check_decode;
using llama_detail::embed_tokens;
using llama_detail::LayerWeights;
using llama_detail::llama_weights;
using llama_detail::LlamaWeights;

LlamaWorkspace::LlamaWorkspace(const LlamaConfig& config, int64_t max_tokens_, int64_t max_seq_len_)
    : x(floats(max_tokens_ * config.dim)),
      xn(floats(max_tokens_ * config.dim)),
      q(floats(max_tokens_ * config.dim)),
      k(floats(max_tokens_ * config.kv_dim())),
      v(floats(max_tokens_ * config.kv_dim())),
      att(floats(max_tokens_ * config.dim)),
      gate(floats(max_tokens_ * config.hidden_dim)),
      up(floats(max_tokens_ * config.hidden_dim)),
      rope(floats(config.seq_len * config.head_dim())),
      max_tokens(max_tokens_),
      max_seq_len(max_seq_len_) {
  rope_table(config.seq_len, config.head_dim(), config.rope_theta, rope.data());
}

namespace {

// The projections' C = A W^T: matmul_nt in the batched pass, matmul_nt_decoding when decoding.
using MatmulNt = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                          const float* w, int64_t ldw, float* c, int64_t ldc, float beta);

// The rest of a layer once attention has filled ws.att (n rows): x += att wo^T, then the
// feed-forward block x += (silu(xn w1^T) * (xn w3^T)) w2^T.
void output_and_feed_forward(const LlamaConfig& c, const LayerWeights& layer, LlamaWorkspace& ws,
                             int64_t n, MatmulNt project) {
  const int64_t dim = c.dim;
  const int64_t hidden = c.hidden_dim;
  project(n, dim, dim, ws.att.data(), dim, layer.wo, dim, ws.x.data(), dim, 1.0f);
  rmsnorm_rows(ws.x.data(), layer.ffn_norm, ws.xn.data(), n, dim, c.norm_eps);
  project(n, hidden, dim, ws.xn.data(), dim, layer.w1, dim, ws.gate.data(), hidden, 0.0f);
  project(n, hidden, dim, ws.xn.data(), dim, layer.w3, dim, ws.up.data(), hidden, 0.0f);
  swiglu(ws.gate.data(), ws.up.data(), n * hidden);
  project(n, dim, hidden, ws.gate.data(), hidden, layer.w2, hidden, ws.x.data(), dim, 1.0f);
}

// logits (n, vocab) of the n rows of the residual stream ws.x after the last layer.
void classify(const LlamaConfig& c, const LlamaWeights& w, LlamaWorkspace& ws, int64_t n,
              float* logits, MatmulNt project) {
  rmsnorm_rows(ws.x.data(), w.norm_final, ws.xn.data(), n, c.dim, c.norm_eps);
  project(n, c.vocab_size, c.dim, ws.xn.data(), c.dim, w.classifier, c.dim, logits, c.vocab_size,
          0.0f);
}

}  // namespace

void llama_forward(const Model& model, const TokenBatch& batch, LlamaWorkspace& ws, float* logits) {
  const LlamaConfig& c = model.config;
  const LlamaWeights w = llama_weights(model);
  const int64_t longest = check_batch(c, batch);
  const int64_t n = batch.n_tokens();
  const int64_t dim = c.dim;
  const int64_t kv_dim = c.kv_dim();
  const int64_t hidden = c.hidden_dim;
  const bool workspace_fits = n <= ws.max_tokens && longest <= ws.max_seq_len &&
                              ws.x.size() >= floats(n * dim) && ws.k.size() >= floats(n * kv_dim) &&
                              ws.gate.size() >= floats(n * hidden) &&
                              ws.rope.size() == floats(c.seq_len * c.head_dim());
  if (!workspace_fits) {
    throw RunError("internal error: workspace for " + std::to_string(ws.max_tokens) +
                   " tokens / sequences of " + std::to_string(ws.max_seq_len) +
                   " is too small for a batch of " + std::to_string(n) +
                   " tokens / longest sequence " + std::to_string(longest) +
                   " (or was built for another model)");
  }

  embed_tokens(w.tok_embeddings, batch, dim, ws.x.data());
  ws.spans.clear();
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[s];
    ws.spans.push_back({first, first, 0, batch.seq_start[s + 1] - first});
  }
  for (const LayerWeights& layer : w.layers) {
    // Attention block: x += attention(rope(xn wq^T), rope(xn wk^T), xn wv^T) wo^T.
    rmsnorm_rows(ws.x.data(), layer.attn_norm, ws.xn.data(), n, dim, c.norm_eps);
    matmul_nt(n, dim, dim, ws.xn.data(), dim, layer.wq, dim, ws.q.data(), dim);
    matmul_nt(n, kv_dim, dim, ws.xn.data(), dim, layer.wk, dim, ws.k.data(), kv_dim);
    matmul_nt(n, kv_dim, dim, ws.xn.data(), dim, layer.wv, dim, ws.v.data(), kv_dim);
    rope_rows(ws.q.data(), batch.positions.data(), ws.rope.data(), n, c.n_heads, c.head_dim());
    rope_rows(ws.k.data(), batch.positions.data(), ws.rope.data(), n, c.n_kv_heads, c.head_dim());
    attention_causal_spans(ws.q.data(), dim, ws.k.data(), ws.v.data(), kv_dim, ws.att.data(), dim,
                           ws.spans, c.n_heads, c.n_kv_heads, c.head_dim(), ws.scratch);
    output_and_feed_forward(c, layer, ws, n, matmul_nt);
  }
  classify(c, w, ws, n, logits, matmul_nt);
}

void llama_decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                  LlamaWorkspace& ws, KvCache& cache, float* logits) {
  const LlamaConfig& c = model.config;
  const LlamaWeights w = llama_weights(model);
  check_decode(c, tokens, n, start, ws.max_tokens, cache);
  const int64_t dim = c.dim;
  const int64_t kv_dim = c.kv_dim();
  const int64_t len = start + n;  // positions the new rows attend to
  check_invariant(len <= ws.max_seq_len, "Llama workspace too small for the decoded sequence");
  const int32_t* positions = cache.positions() + start;  // (n) start .. start + n - 1
  ws.spans.assign(1, AttentionSpan{0, 0, start, len});

  for (int64_t r = 0; r < n; ++r) {
    std::copy_n(w.tok_embeddings + tokens[r] * dim, dim, ws.x.data() + r * dim);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& layer = w.layers[floats(l)];
    float* keys = cache.keys(l) + start * kv_dim;      // (n, kv_dim) the new rows' keys
    float* values = cache.values(l) + start * kv_dim;  // (n, kv_dim) the new rows' values
    rmsnorm_rows(ws.x.data(), layer.attn_norm, ws.xn.data(), n, dim, c.norm_eps);
    matmul_nt_decoding(n, dim, dim, ws.xn.data(), dim, layer.wq, dim, ws.q.data(), dim);
    matmul_nt_decoding(n, kv_dim, dim, ws.xn.data(), dim, layer.wk, dim, keys, kv_dim);
    matmul_nt_decoding(n, kv_dim, dim, ws.xn.data(), dim, layer.wv, dim, values, kv_dim);
    rope_rows(ws.q.data(), positions, ws.rope.data(), n, c.n_heads, c.head_dim());
    rope_rows(keys, positions, ws.rope.data(), n, c.n_kv_heads, c.head_dim());
    attention_causal_spans(ws.q.data(), dim, cache.keys(l), cache.values(l), kv_dim, ws.att.data(),
                           dim, ws.spans, c.n_heads, c.n_kv_heads, c.head_dim(), ws.scratch);
    output_and_feed_forward(c, layer, ws, n, matmul_nt_decoding);
  }
  classify(c, w, ws, n, logits, matmul_nt_decoding);
}

void llama_forward_ref(const Model& model, const TokenBatch& batch, std::vector<float>& logits) {
  const LlamaConfig& c = model.config;
  const LlamaWeights w = llama_weights(model);
  check_batch(c, batch);
  const int64_t n = batch.n_tokens();
  const int64_t dim = c.dim;
  const int64_t kv_dim = c.kv_dim();
  const int64_t hidden = c.hidden_dim;
  std::vector<float> x(floats(n * dim));        // (n, dim)    residual stream
  std::vector<float> xn(floats(n * dim));       // (n, dim)    normalised block input
  std::vector<float> q(floats(n * dim));        // (n, dim)    queries
  std::vector<float> k(floats(n * kv_dim));     // (n, kv_dim) keys
  std::vector<float> v(floats(n * kv_dim));     // (n, kv_dim) values
  std::vector<float> att(floats(n * dim));      // (n, dim)    attention output
  std::vector<float> proj(floats(n * dim));     // (n, dim)    wo / w2 output
  std::vector<float> gate(floats(n * hidden));  // (n, hidden) w1 x, then swiglu
  std::vector<float> up(floats(n * hidden));    // (n, hidden) w3 x
  logits.assign(floats(n * c.vocab_size), 0.0f);

  embed_tokens(w.tok_embeddings, batch, dim, x.data());
  for (const LayerWeights& layer : w.layers) {
    ref::rmsnorm_rows(x.data(), layer.attn_norm, xn.data(), n, dim, c.norm_eps);
    ref::matmul_nt(n, dim, dim, xn.data(), dim, layer.wq, dim, q.data(), dim);
    ref::matmul_nt(n, kv_dim, dim, xn.data(), dim, layer.wk, dim, k.data(), kv_dim);
    ref::matmul_nt(n, kv_dim, dim, xn.data(), dim, layer.wv, dim, v.data(), kv_dim);
    ref::rope_rows(q.data(), batch.positions.data(), n, c.n_heads, c.head_dim(), c.rope_theta);
    ref::rope_rows(k.data(), batch.positions.data(), n, c.n_kv_heads, c.head_dim(), c.rope_theta);
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t first = batch.seq_start[s];
      ref::attention_causal(q.data() + first * dim, dim, k.data() + first * kv_dim,
                            v.data() + first * kv_dim, kv_dim, att.data() + first * dim, dim,
                            batch.seq_start[s + 1] - first, c.n_heads, c.n_kv_heads, c.head_dim());
    }
    ref::matmul_nt(n, dim, dim, att.data(), dim, layer.wo, dim, proj.data(), dim);
    ref::add_inplace(x.data(), proj.data(), n * dim);

    ref::rmsnorm_rows(x.data(), layer.ffn_norm, xn.data(), n, dim, c.norm_eps);
    ref::matmul_nt(n, hidden, dim, xn.data(), dim, layer.w1, dim, gate.data(), hidden);
    ref::matmul_nt(n, hidden, dim, xn.data(), dim, layer.w3, dim, up.data(), hidden);
    ref::swiglu(gate.data(), up.data(), n * hidden);
    ref::matmul_nt(n, dim, hidden, gate.data(), hidden, layer.w2, hidden, proj.data(), dim);
    ref::add_inplace(x.data(), proj.data(), n * dim);
  }
  ref::rmsnorm_rows(x.data(), w.norm_final, xn.data(), n, dim, c.norm_eps);
  ref::matmul_nt(n, c.vocab_size, dim, xn.data(), dim, w.classifier, dim, logits.data(),
                 c.vocab_size);
}

// FLOPs counted as 2 per multiply-add:
//   GEMMs per layer: 2 n (dim*dim [wq] + 2 kv_dim*dim [wk, wv] + dim*dim [wo] + 3 hidden*dim
//   [w1, w3, w2]); classifier 2 n vocab*dim.
//   Attention per layer, head and sequence of length L: q k^T over the causal triangle is
//   L(L+1)/2 dot products of head_dim (2 head_dim L(L+1)/2 FLOPs), and the weighted sum of v
//   the same again: 2 head_dim L(L+1) in all. Norms, RoPE, softmax and SwiGLU are not counted.
double llama_forward_flops(const LlamaConfig& config, const TokenBatch& batch) {
  const double n = static_cast<double>(batch.n_tokens());
  const double dim = static_cast<double>(config.dim);
  const double kv_dim = static_cast<double>(config.kv_dim());
  const double hidden = static_cast<double>(config.hidden_dim);
  const double layers = static_cast<double>(config.n_layers);
  const double gemm_per_layer =
      2.0 * n * (2.0 * dim * dim + 2.0 * kv_dim * dim + 3.0 * hidden * dim);
  const double classifier = 2.0 * n * static_cast<double>(config.vocab_size) * dim;
  double causal_pairs = 0.0;  // sum over sequences of L(L+1)
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const double len = static_cast<double>(batch.seq_start[s + 1] - batch.seq_start[s]);
    causal_pairs += len * (len + 1.0);
  }
  const double attention_per_layer = 2.0 * static_cast<double>(config.head_dim()) * causal_pairs *
                                     static_cast<double>(config.n_heads);
  return layers * (gemm_per_layer + attention_per_layer) + classifier;
}

std::unique_ptr<LanguageModelForward> make_llama_forward(const LlamaConfig& config,
                                                         int64_t max_tokens, int64_t max_seq_len) {
  using Forward = WorkspaceForward<LlamaWorkspace, llama_forward, llama_forward_flops,
                                   llama_gradient, llama_decode>;
  return std::make_unique<Forward>(config, max_tokens, max_seq_len);
}

}  // namespace fracsweep
