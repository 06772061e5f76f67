// Llama gradient (see llama_backward.hpp): a forward pass that keeps the residual stream at
// every layer boundary, the objective's derivative at the logits, then layer by layer in
// reverse: recompute the layer's activations from its input, back-propagate through the
// feed-forward block, then the attention block.
#include "fracsweep/nn/llama_backward.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "arena.hpp"
#include "fracsweep/nn/forward.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_backward.hpp"
#include "input_norms.hpp"
#include "llama_weights.hpp"

namespace fracsweep {
namespace {

using llama_detail::LayerWeights;
using llama_detail::LlamaWeights;

// One layer's forward values, recomputed from its input for its backward pass.
struct LayerActivations {
  float* xn1;     // (n, dim)        attention block's normalised input
  float* q;       // (n, dim)        queries after RoPE
  float* k;       // (n, kv_dim)     keys after RoPE
  float* v;       // (n, kv_dim)     values
  float* att;     // (n, dim)        attention output before wo
  float* x1;      // (n, dim)        residual stream after the attention block
  float* xn2;     // (n, dim)        feed-forward block's normalised input
  float* gate;    // (n, hidden_dim) w1 xn2 (before the activation)
  float* up;      // (n, hidden_dim) w3 xn2
  float* hidden;  // (n, hidden_dim) silu(gate) * up
};

// Gradients with respect to one layer's activations (reused by every layer).
struct LayerGradients {
  float* dxn;    // (n, dim)        d / d normalised block input
  float* datt;   // (n, dim)        d / d attention output
  float* dq;     // (n, dim)        d / d queries (after, then before RoPE)
  float* dk;     // (n, kv_dim)     d / d keys (after, then before RoPE)
  float* dv;     // (n, kv_dim)     d / d values
  float* dgate;  // (n, hidden_dim) d / d hidden, then d / d gate
  float* dup;    // (n, hidden_dim) d / d up
};

// Every buffer of one pass, carved from the caller's arena.
struct PassBuffers {
  float* residual;  // (L + 1, n, dim) each layer's input; [L] the last layer's output
  float* xf;        // (n, dim)        final normalised stream
  float* logits;    // (n, vocab)
  float* dlogits;   // (n, vocab)      d objective / d logits
  float* dx;        // (n, dim)        d / d residual stream
  float* rope;      // (seq_len, head_dim) rope_table
  float* scratch;   // attention scratch, forward and backward, longest sequence
  LayerActivations a;
  LayerGradients g;
};

PassBuffers carve_buffers(const LlamaConfig& c, int64_t n, int64_t longest,
                          std::vector<float>& storage) {
  PassBuffers b{};
  const int64_t dim = c.dim, kv = c.kv_dim(), hidden = c.hidden_dim, vocab = c.vocab_size;
  arena::carve(storage, [&](arena::Carver& take) {
    b.residual = take.take((c.n_layers + 1) * n * dim);
    b.xf = take.take(n * dim);
    b.logits = take.take(n * vocab);
    b.dlogits = take.take(n * vocab);
    b.dx = take.take(n * dim);
    b.rope = take.take(c.seq_len * c.head_dim());
    b.scratch = take.take(std::max(attention_scratch_floats(longest, c.head_dim()),
                                   attention_backward_scratch_floats(longest, c.head_dim())));
    b.a = {take.take(n * dim),    take.take(n * dim),   take.take(n * kv),  take.take(n * kv),
           take.take(n * dim),    take.take(n * dim),   take.take(n * dim), take.take(n * hidden),
           take.take(n * hidden), take.take(n * hidden)};
    b.g = {take.take(n * dim), take.take(n * dim),    take.take(n * dim),   take.take(n * kv),
           take.take(n * kv),  take.take(n * hidden), take.take(n * hidden)};
  });
  return b;
}

// The batch-independent parts of one pass.
struct PassContext {
  const Model& model;
  const LlamaConfig& c;
  const TokenBatch& batch;
  const float* rope;  // (seq_len, head_dim)
  float* scratch;     // attention scratch
};

// One layer forward from x_in (n, dim), keeping every activation in `a`; writes the layer's
// output to x_out (n, dim) unless it is nullptr.
void layer_forward(PassContext& pass, const LayerWeights& layer, const float* x_in,
                   LayerActivations& a, float* x_out) {
  const LlamaConfig& c = pass.c;
  const TokenBatch& batch = pass.batch;
  const int64_t n = batch.n_tokens(), dim = c.dim, kv = c.kv_dim(), hidden = c.hidden_dim;
  rmsnorm_rows(x_in, layer.attn_norm, a.xn1, n, dim, c.norm_eps);
  matmul_nt(n, dim, dim, a.xn1, dim, layer.wq, dim, a.q, dim);
  matmul_nt(n, kv, dim, a.xn1, dim, layer.wk, dim, a.k, kv);
  matmul_nt(n, kv, dim, a.xn1, dim, layer.wv, dim, a.v, kv);
  rope_rows(a.q, batch.positions.data(), pass.rope, n, c.n_heads, c.head_dim());
  rope_rows(a.k, batch.positions.data(), pass.rope, n, c.n_kv_heads, c.head_dim());
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[s];
    attention_causal(a.q + first * dim, dim, a.k + first * kv, a.v + first * kv, kv,
                     a.att + first * dim, dim, batch.seq_start[s + 1] - first, c.n_heads,
                     c.n_kv_heads, c.head_dim(), pass.scratch);
  }
  std::copy_n(x_in, n * dim, a.x1);
  matmul_nt(n, dim, dim, a.att, dim, layer.wo, dim, a.x1, dim, 1.0f);
  rmsnorm_rows(a.x1, layer.ffn_norm, a.xn2, n, dim, c.norm_eps);
  matmul_nt(n, hidden, dim, a.xn2, dim, layer.w1, dim, a.gate, hidden);
  matmul_nt(n, hidden, dim, a.xn2, dim, layer.w3, dim, a.up, hidden);
  std::copy_n(a.gate, n * hidden, a.hidden);
  swiglu(a.hidden, a.up, n * hidden);
  if (x_out != nullptr) {
    std::copy_n(a.x1, n * dim, x_out);
    matmul_nt(n, dim, hidden, a.hidden, hidden, layer.w2, hidden, x_out, dim, 1.0f);
  }
}

}  // namespace

// Long by design: the forward pass, the objective and the backward pass in data-flow order, so
// each backward step sits opposite the forward step it differentiates; split up, the pieces
// would pass a dozen buffers between them.
double llama_gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                      const GradientOutputs& out, std::vector<float>& arena) {
  const LlamaConfig& c = model.config;
  const LlamaWeights w = llama_detail::llama_weights(model);
  const int64_t longest = llama_detail::check_batch(c, batch);
  const int64_t n = batch.n_tokens(), dim = c.dim, kv = c.kv_dim(), hidden = c.hidden_dim;
  const int64_t vocab = c.vocab_size, layers = c.n_layers;

  PassBuffers b = carve_buffers(c, n, longest, arena);
  rope_table(c.seq_len, c.head_dim(), c.rope_theta, b.rope);
  PassContext pass{model, c, batch, b.rope, b.scratch};
  LayerActivations& a = b.a;
  LayerGradients& g = b.g;
  InputNormSums norms(model);

  // Forward, keeping each layer's input.
  llama_detail::embed_tokens(w.tok_embeddings, batch, dim, b.residual);
  for (int64_t l = 0; l < layers; ++l) {
    const LayerWeights& layer = w.layers[static_cast<size_t>(l)];
    const float* x_in = b.residual + l * n * dim;
    layer_forward(pass, layer, x_in, a, b.residual + (l + 1) * n * dim);
    if (out.input_norm != nullptr) {
      norms.add_normalised_columns(layer.attn_norm, x_in, n, dim, c.norm_eps, false);
      for (const float* projection : {layer.wq, layer.wk, layer.wv}) {
        norms.add_columns(projection, a.xn1, n, dim);
      }
      norms.add_columns(layer.wo, a.att, n, dim);
      norms.add_normalised_columns(layer.ffn_norm, a.x1, n, dim, c.norm_eps, false);
      norms.add_columns(layer.w1, a.xn2, n, dim);
      norms.add_columns(layer.w3, a.xn2, n, dim);
      norms.add_columns(layer.w2, a.hidden, n, hidden);
    }
  }
  const float* x_last = b.residual + layers * n * dim;
  rmsnorm_rows(x_last, w.norm_final, b.xf, n, dim, c.norm_eps);
  matmul_nt(n, vocab, dim, b.xf, dim, w.classifier, dim, b.logits, vocab);
  const double value = objective(b.logits, n, vocab, b.dlogits);
  if (out.input_norm != nullptr) {
    norms.add_normalised_columns(w.norm_final, x_last, n, dim, c.norm_eps, false);
    norms.add_columns(w.classifier, b.xf, n, dim);
    std::vector<double> lookups(floats(vocab), 0.0);  // (vocab) rows that look each token up
    for (const int32_t token : batch.tokens) lookups[static_cast<size_t>(token)] += 1.0;
    norms.write(out.input_norm, w.tok_embeddings, dim, lookups);
  }
  if (out.grad == nullptr) return value;

  // Backward. Weight gradients accumulate (beta = 1) onto zeros, so a tied tensor sums both uses.
  float* grad = out.grad;
  std::fill_n(grad, model.values.size(), 0.0f);
  auto grad_of = [&](const float* weights) { return grad + (weights - model.values.data()); };
  std::vector<double> gain_grad(floats(dim));  // (dim) one norm gain's gradient, in double
  auto write_gain = [&](const float* gain) {
    std::transform(gain_grad.begin(), gain_grad.end(), grad_of(gain),
                   [](double sum) { return static_cast<float>(sum); });
    std::fill(gain_grad.begin(), gain_grad.end(), 0.0);
  };

  matmul_tn(vocab, dim, n, b.dlogits, vocab, b.xf, dim, grad_of(w.classifier), dim, 1.0f);
  matmul_nn(n, dim, vocab, b.dlogits, vocab, w.classifier, dim, g.dxn, dim);
  std::fill_n(b.dx, n * dim, 0.0f);
  rmsnorm_rows_backward(x_last, w.norm_final, g.dxn, b.dx, gain_grad.data(), n, dim, c.norm_eps);
  write_gain(w.norm_final);

  for (int64_t l = layers - 1; l >= 0; --l) {
    const LayerWeights& layer = w.layers[static_cast<size_t>(l)];
    const float* x_in = b.residual + l * n * dim;
    layer_forward(pass, layer, x_in, a, nullptr);

    // Feed-forward block: x_out = x1 + hidden w2^T, hidden = silu(xn2 w1^T) * (xn2 w3^T).
    matmul_nn(n, hidden, dim, b.dx, dim, layer.w2, hidden, g.dgate, hidden);
    matmul_tn(dim, hidden, n, b.dx, dim, a.hidden, hidden, grad_of(layer.w2), hidden, 1.0f);
    swiglu_backward(a.gate, a.up, g.dgate, g.dgate, g.dup, n * hidden);
    matmul_tn(hidden, dim, n, g.dgate, hidden, a.xn2, dim, grad_of(layer.w1), dim, 1.0f);
    matmul_tn(hidden, dim, n, g.dup, hidden, a.xn2, dim, grad_of(layer.w3), dim, 1.0f);
    matmul_nn(n, dim, hidden, g.dgate, hidden, layer.w1, dim, g.dxn, dim);
    matmul_nn(n, dim, hidden, g.dup, hidden, layer.w3, dim, g.dxn, dim, 1.0f);
    rmsnorm_rows_backward(a.x1, layer.ffn_norm, g.dxn, b.dx, gain_grad.data(), n, dim, c.norm_eps);
    write_gain(layer.ffn_norm);

    // Attention block: x1 = x_in + att wo^T, att = attention(rope(xn1 wq^T), rope(xn1 wk^T), xn1
    // wv^T).
    matmul_nn(n, dim, dim, b.dx, dim, layer.wo, dim, g.datt, dim);
    matmul_tn(dim, dim, n, b.dx, dim, a.att, dim, grad_of(layer.wo), dim, 1.0f);
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t first = batch.seq_start[s];
      attention_causal_backward(
          a.q + first * dim, dim, a.k + first * kv, a.v + first * kv, kv, g.datt + first * dim, dim,
          g.dq + first * dim, dim, g.dk + first * kv, g.dv + first * kv, kv,
          batch.seq_start[s + 1] - first, c.n_heads, c.n_kv_heads, c.head_dim(), pass.scratch);
    }
    rope_rows_backward(g.dq, batch.positions.data(), pass.rope, n, c.n_heads, c.head_dim());
    rope_rows_backward(g.dk, batch.positions.data(), pass.rope, n, c.n_kv_heads, c.head_dim());
    matmul_tn(dim, dim, n, g.dq, dim, a.xn1, dim, grad_of(layer.wq), dim, 1.0f);
    matmul_tn(kv, dim, n, g.dk, kv, a.xn1, dim, grad_of(layer.wk), dim, 1.0f);
    matmul_tn(kv, dim, n, g.dv, kv, a.xn1, dim, grad_of(layer.wv), dim, 1.0f);
    matmul_nn(n, dim, dim, g.dq, dim, layer.wq, dim, g.dxn, dim);
    matmul_nn(n, dim, kv, g.dk, kv, layer.wk, dim, g.dxn, dim, 1.0f);
    matmul_nn(n, dim, kv, g.dv, kv, layer.wv, dim, g.dxn, dim, 1.0f);
    rmsnorm_rows_backward(x_in, layer.attn_norm, g.dxn, b.dx, gain_grad.data(), n, dim, c.norm_eps);
    write_gain(layer.attn_norm);
  }

  // Embedding lookup: each row's gradient goes to its token's row, in row order.
  float* embedding_grad = grad_of(w.tok_embeddings);
  for (int64_t r = 0; r < n; ++r) {
    float* row = embedding_grad + static_cast<int64_t>(batch.tokens[static_cast<size_t>(r)]) * dim;
    for (int64_t i = 0; i < dim; ++i) row[i] += b.dx[r * dim + i];
  }
  return value;
}

// Forward (llama_forward_flops) + the recomputed layer forwards (its layer part again) + the
// backward pass: every projection GEMM twice (dx and dW), the classifier twice, and attention's
// four products (scores, dp = dout v^T, dq, dk; dv is the fourth), i.e. twice its forward cost.
double llama_gradient_flops(const LlamaConfig& config, const TokenBatch& batch) {
  const double forward = llama_forward_flops(config, batch);
  const double classifier = 2.0 * static_cast<double>(batch.n_tokens()) *
                            static_cast<double>(config.vocab_size) *
                            static_cast<double>(config.dim);
  const double layers = forward - classifier;
  return forward + layers + 2.0 * forward;
}

}  // namespace fracsweep
