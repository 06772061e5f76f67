#include "fracsweep/nn/gpt2.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"
#include "gpt2_weights.hpp"

namespace fracsweep {

using gpt2_detail::add_bias_rows;
using gpt2_detail::embed;
using gpt2_detail::gelu_tanh;
using gpt2_detail::gpt2_weights;
using gpt2_detail::Gpt2Weights;
using gpt2_detail::layernorm_rows;
using gpt2_detail::LayerWeights;

namespace gpt2_detail {

void embed(const Gpt2Weights& w, const TokenBatch& batch, int64_t dim, float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(3 * batch.n_tokens() * dim))
  for (int64_t r = 0; r < batch.n_tokens(); ++r) {
    const float* token = w.wte + batch.tokens[floats(r)] * dim;
    const float* position = w.wpe + batch.positions[floats(r)] * dim;
    for (int64_t i = 0; i < dim; ++i) x[r * dim + i] = token[i] + position[i];
  }
}

void layernorm_rows(const float* x, const float* weight, const float* bias, float* out,
                    int64_t rows, int64_t d, float eps) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * rows * d))
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    const RowScale scale = layernorm_row_scale(row, d, eps);
    float* o = out + r * d;
    for (int64_t i = 0; i < d; ++i) o[i] = (row[i] - scale.mean) * scale.inv * weight[i] + bias[i];
  }
}

void add_bias_rows(float* x, const float* bias, int64_t rows, int64_t d) {
  // Rows on threads; add_inplace on one row of d floats stays on one (below min_parallel_floats
  // at every GPT-2 width).
#pragma omp parallel for schedule(static) if (worth_threads(2 * rows * d))
  for (int64_t r = 0; r < rows; ++r) add_inplace(x + r * d, bias, d);
}

void gelu_tanh(float* x, int64_t n) {
  constexpr float sqrt_2_over_pi = 0.7978845608028654f;
#pragma omp parallel for schedule(static) if (worth_threads(2 * n))
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(sqrt_2_over_pi * (v + 0.044715f * v * v * v)));
  }
}

}  // namespace gpt2_detail

std::vector<TensorInfo> gpt2_tensor_table(const LlamaConfig& c) {
  std::vector<TensorInfo> tensors;
  const int64_t d = c.dim, h = c.hidden_dim;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    append_tensor(tensors, name, std::move(shape));
  };
  add("wte", {c.vocab_size, d});
  add("wpe", {c.seq_len, d});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string layer = "layers." + std::to_string(l) + ".";
    add(layer + "ln_1.weight", {d});
    add(layer + "ln_1.bias", {d});
    add(layer + "attn.c_attn.weight", {3 * d, d});
    add(layer + "attn.c_attn.bias", {3 * d});
    add(layer + "attn.c_proj.weight", {d, d});
    add(layer + "attn.c_proj.bias", {d});
    add(layer + "ln_2.weight", {d});
    add(layer + "ln_2.bias", {d});
    add(layer + "mlp.c_fc.weight", {h, d});
    add(layer + "mlp.c_fc.bias", {h});
    add(layer + "mlp.c_proj.weight", {d, h});
    add(layer + "mlp.c_proj.bias", {d});
  }
  add("ln_f.weight", {d});
  add("ln_f.bias", {d});
  return tensors;
}

namespace {

// The projections' C = A W^T: matmul_nt in the batched pass, matmul_nt_decoding when decoding.
using MatmulNt = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                          const float* w, int64_t ldw, float* c, int64_t ldc, float beta);

// The rest of a layer once attention has filled ws.att (n rows): x += c_proj(att), then
// x += mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))).
void output_and_mlp(const LlamaConfig& c, const LayerWeights& layer, Gpt2Workspace& ws, int64_t n,
                    MatmulNt project) {
  const int64_t d = c.dim, h = c.hidden_dim;
  project(n, d, d, ws.att.data(), d, layer.attn_proj_weight, d, ws.x.data(), d, 1.0f);
  add_bias_rows(ws.x.data(), layer.attn_proj_bias, n, d);
  layernorm_rows(ws.x.data(), layer.ln_2_weight, layer.ln_2_bias, ws.xn.data(), n, d, c.norm_eps);
  project(n, h, d, ws.xn.data(), d, layer.c_fc_weight, d, ws.hidden.data(), h, 0.0f);
  add_bias_rows(ws.hidden.data(), layer.c_fc_bias, n, h);
  gelu_tanh(ws.hidden.data(), n * h);
  project(n, d, h, ws.hidden.data(), h, layer.mlp_proj_weight, h, ws.x.data(), d, 1.0f);
  add_bias_rows(ws.x.data(), layer.mlp_proj_bias, n, d);
}

// logits (n, vocab) of the n rows of the residual stream ws.x after the last layer (the head
// is tied to wte).
void classify(const LlamaConfig& c, const Gpt2Weights& w, Gpt2Workspace& ws, int64_t n,
              float* logits, MatmulNt project) {
  layernorm_rows(ws.x.data(), w.ln_f_weight, w.ln_f_bias, ws.xn.data(), n, c.dim, c.norm_eps);
  project(n, c.vocab_size, c.dim, ws.xn.data(), c.dim, w.wte, c.dim, logits, c.vocab_size, 0.0f);
}

}  // namespace

Gpt2Workspace::Gpt2Workspace(const LlamaConfig& c, int64_t tokens, int64_t seq_len)
    : x(floats(tokens * c.dim)),
      xn(floats(tokens * c.dim)),
      qkv(floats(tokens * 3 * c.dim)),
      att(floats(tokens * c.dim)),
      hidden(floats(tokens * c.hidden_dim)),
      max_tokens(tokens),
      max_seq_len(seq_len) {}

void gpt2_forward(const Model& model, const TokenBatch& batch, Gpt2Workspace& ws, float* logits) {
  const LlamaConfig& c = model.config;
  const Gpt2Weights w = gpt2_weights(model);
  const int64_t longest = llama_detail::check_batch(c, batch);
  const int64_t n = batch.n_tokens(), d = c.dim;
  check_invariant(n <= ws.max_tokens, "GPT-2 workspace too small for the batch");
  check_invariant(longest <= ws.max_seq_len, "GPT-2 workspace too small for a sequence");
  embed(w, batch, d, ws.x.data());
  ws.spans.clear();
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[floats(s)];
    ws.spans.push_back({first, first, 0, batch.seq_start[floats(s + 1)] - first});
  }
  for (const LayerWeights& layer : w.layers) {
    // x += c_proj(attention(c_attn(ln_1(x))))
    layernorm_rows(ws.x.data(), layer.ln_1_weight, layer.ln_1_bias, ws.xn.data(), n, d, c.norm_eps);
    matmul_nt(n, 3 * d, d, ws.xn.data(), d, layer.c_attn_weight, d, ws.qkv.data(), 3 * d);
    add_bias_rows(ws.qkv.data(), layer.c_attn_bias, n, 3 * d);
    const float* q = ws.qkv.data();  // (n, 3 dim): keys and values follow each query row
    attention_causal_spans(q, 3 * d, q + d, q + 2 * d, 3 * d, ws.att.data(), d, ws.spans, c.n_heads,
                           c.n_heads, c.head_dim(), ws.scratch);
    output_and_mlp(c, layer, ws, n, matmul_nt);
  }
  classify(c, w, ws, n, logits, matmul_nt);
}

void gpt2_decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
                 Gpt2Workspace& ws, KvCache& cache, float* logits) {
  const LlamaConfig& c = model.config;
  const Gpt2Weights w = gpt2_weights(model);
  llama_detail::check_decode(c, tokens, n, start, ws.max_tokens, cache);
  const int64_t d = c.dim;
  const int64_t len = start + n;  // positions the new rows attend to
  check_invariant(len <= ws.max_seq_len, "GPT-2 workspace too small for the decoded sequence");
  ws.spans.assign(1, AttentionSpan{0, 0, start, len});
  for (int64_t r = 0; r < n; ++r) {
    const float* token = w.wte + tokens[r] * d;
    const float* position = w.wpe + (start + r) * d;
    for (int64_t i = 0; i < d; ++i) ws.x[floats(r * d + i)] = token[i] + position[i];
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& layer = w.layers[floats(l)];
    layernorm_rows(ws.x.data(), layer.ln_1_weight, layer.ln_1_bias, ws.xn.data(), n, d, c.norm_eps);
    matmul_nt_decoding(n, 3 * d, d, ws.xn.data(), d, layer.c_attn_weight, d, ws.qkv.data(), 3 * d);
    add_bias_rows(ws.qkv.data(), layer.c_attn_bias, n, 3 * d);
    for (int64_t r = 0; r < n; ++r) {  // the new rows' keys and values into the cache
      const float* row = ws.qkv.data() + r * 3 * d;
      std::copy_n(row + d, d, cache.keys(l) + (start + r) * d);
      std::copy_n(row + 2 * d, d, cache.values(l) + (start + r) * d);
    }
    attention_causal_spans(ws.qkv.data(), 3 * d, cache.keys(l), cache.values(l), d, ws.att.data(),
                           d, ws.spans, c.n_heads, c.n_heads, c.head_dim(), ws.scratch);
    output_and_mlp(c, layer, ws, n, matmul_nt_decoding);
  }
  classify(c, w, ws, n, logits, matmul_nt_decoding);
}

double gpt2_forward_flops(const LlamaConfig& c, const TokenBatch& batch) {
  const auto n = static_cast<double>(batch.n_tokens());
  const auto d = static_cast<double>(c.dim), h = static_cast<double>(c.hidden_dim);
  double flops = 2.0 * n * static_cast<double>(c.n_layers) * (3 * d * d + d * d + 2 * d * h);
  flops += 2.0 * n * d * static_cast<double>(c.vocab_size);
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {  // q k^T and p v over the causal triangle
    const auto len =
        static_cast<double>(batch.seq_start[floats(s + 1)] - batch.seq_start[floats(s)]);
    flops += 2.0 * static_cast<double>(c.n_layers) * len * (len + 1) * d;
  }
  return flops;
}

std::unique_ptr<LanguageModelForward> make_gpt2_forward(const LlamaConfig& config,
                                                        int64_t max_tokens, int64_t max_seq_len) {
  using Forward =
      WorkspaceForward<Gpt2Workspace, gpt2_forward, gpt2_forward_flops, gpt2_gradient, gpt2_decode>;
  return std::make_unique<Forward>(config, max_tokens, max_seq_len);
}

}  // namespace fracsweep
