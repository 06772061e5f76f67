// GPT-2 gradient (see gpt2_backward.hpp): a forward pass that keeps the residual stream at every
// layer boundary, the objective's derivative at the logits, then layer by layer in reverse:
// recompute the layer's activations from its input, back-propagate through the MLP block, then
// the attention block; last the two embedding lookups.
#include "fracsweep/nn/gpt2_backward.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "arena.hpp"
#include "fracsweep/nn/forward.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/gpt2_ops_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_backward.hpp"
#include "gpt2_weights.hpp"
#include "input_norms.hpp"

namespace fracsweep {
namespace {

using gpt2_detail::add_bias_rows;
using gpt2_detail::gelu_tanh;
using gpt2_detail::Gpt2Weights;
using gpt2_detail::layernorm_rows;
using gpt2_detail::LayerWeights;

// One layer's forward values, recomputed from its input for its backward pass.
struct LayerActivations {
  float* xn1;     // (n, dim)        ln_1 output
  float* qkv;     // (n, 3 dim)      c_attn output: queries | keys | values
  float* att;     // (n, dim)        attention output before attn.c_proj
  float* x1;      // (n, dim)        residual stream after the attention block
  float* xn2;     // (n, dim)        ln_2 output
  float* fc;      // (n, hidden_dim) mlp.c_fc output (before GELU)
  float* hidden;  // (n, hidden_dim) gelu(fc)
};

// Gradients with respect to one layer's activations (reused by every layer).
struct LayerGradients {
  float* dxn;      // (n, dim)        d / d LayerNorm output
  float* datt;     // (n, dim)        d / d attention output
  float* dqkv;     // (n, 3 dim)      d / d queries | keys | values
  float* dhidden;  // (n, hidden_dim) d / d gelu(fc), then d / d fc
};

// Every buffer of one pass, carved from the caller's arena.
struct PassBuffers {
  float* residual;  // (L + 1, n, dim) each layer's input; [L] the last layer's output
  float* xf;        // (n, dim)        ln_f output
  float* logits;    // (n, vocab)
  float* dlogits;   // (n, vocab)      d objective / d logits
  float* dx;        // (n, dim)        d / d residual stream
  float* scratch;   // attention scratch, forward and backward, longest sequence
  LayerActivations a;
  LayerGradients g;
};

PassBuffers carve_buffers(const LlamaConfig& c, int64_t n, int64_t longest,
                          std::vector<float>& storage) {
  PassBuffers b{};
  const int64_t d = c.dim, h = c.hidden_dim, vocab = c.vocab_size;
  arena::carve(storage, [&](arena::Carver& take) {
    b.residual = take.take((c.n_layers + 1) * n * d);
    b.xf = take.take(n * d);
    b.logits = take.take(n * vocab);
    b.dlogits = take.take(n * vocab);
    b.dx = take.take(n * d);
    b.scratch = take.take(std::max(attention_scratch_floats(longest, c.head_dim()),
                                   attention_backward_scratch_floats(longest, c.head_dim())));
    b.a = {take.take(n * d), take.take(n * 3 * d), take.take(n * d), take.take(n * d),
           take.take(n * d), take.take(n * h),     take.take(n * h)};
    b.g = {take.take(n * d), take.take(n * d), take.take(n * 3 * d), take.take(n * h)};
  });
  return b;
}

// The batch-independent parts of one pass.
struct PassContext {
  const LlamaConfig& c;
  const TokenBatch& batch;
  float* scratch;  // attention scratch
};

// One layer forward from x_in (n, dim), keeping every activation in `a`; writes the layer's
// output to x_out (n, dim) unless it is nullptr. The same kernels in the same order as
// gpt2_forward, so the residual stream is bitwise the same.
void layer_forward(PassContext& pass, const LayerWeights& layer, const float* x_in,
                   LayerActivations& a, float* x_out) {
  const LlamaConfig& c = pass.c;
  const TokenBatch& batch = pass.batch;
  const int64_t n = batch.n_tokens(), d = c.dim, h = c.hidden_dim;
  layernorm_rows(x_in, layer.ln_1_weight, layer.ln_1_bias, a.xn1, n, d, c.norm_eps);
  matmul_nt(n, 3 * d, d, a.xn1, d, layer.c_attn_weight, d, a.qkv, 3 * d);
  add_bias_rows(a.qkv, layer.c_attn_bias, n, 3 * d);
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[floats(s)];
    const float* q = a.qkv + first * 3 * d;
    attention_causal(q, 3 * d, q + d, q + 2 * d, 3 * d, a.att + first * d, d,
                     batch.seq_start[floats(s + 1)] - first, c.n_heads, c.n_heads, c.head_dim(),
                     pass.scratch);
  }
  std::copy_n(x_in, n * d, a.x1);
  matmul_nt(n, d, d, a.att, d, layer.attn_proj_weight, d, a.x1, d, 1.0f);
  add_bias_rows(a.x1, layer.attn_proj_bias, n, d);
  layernorm_rows(a.x1, layer.ln_2_weight, layer.ln_2_bias, a.xn2, n, d, c.norm_eps);
  matmul_nt(n, h, d, a.xn2, d, layer.c_fc_weight, d, a.fc, h);
  add_bias_rows(a.fc, layer.c_fc_bias, n, h);
  std::copy_n(a.fc, n * h, a.hidden);
  gelu_tanh(a.hidden, n * h);
  if (x_out != nullptr) {
    std::copy_n(a.x1, n * d, x_out);
    matmul_nt(n, d, h, a.hidden, h, layer.mlp_proj_weight, h, x_out, d, 1.0f);
    add_bias_rows(x_out, layer.mlp_proj_bias, n, d);
  }
}

// Gradient sums in double for the 1-D parameters (gains, biases), written to the float
// gradient once per use (none of them is used twice).
class VectorGradient {
 public:
  explicit VectorGradient(int64_t size) : sums_(floats(size), 0.0) {}
  double* data() { return sums_.data(); }
  // grad[0 .. count) = the first `count` sums; they are reset to zero.
  void write(float* grad, int64_t count) {
    std::transform(sums_.begin(), sums_.begin() + count, grad,
                   [](double sum) { return static_cast<float>(sum); });
    std::fill_n(sums_.begin(), count, 0.0);
  }

 private:
  std::vector<double> sums_;
};

// Writes input_norm (Model::values-sized) from the sums of one pass: weights' column norms, wte
// rows sqrt(lookups of the token + the head's column sums), wpe rows sqrt(rows at the
// position), biases and LayerNorm shifts sqrt(rows).
void write_input_norms(const Model& model, const Gpt2Weights& w, const TokenBatch& batch,
                       const InputNormSums& norms, float* input_norm) {
  const LlamaConfig& c = model.config;
  const int64_t d = c.dim;
  std::vector<double> token_lookups(floats(c.vocab_size), 0.0);  // (vocab) rows per token
  std::vector<double> position_lookups(floats(c.seq_len), 0.0);  // (seq_len) rows per position
  for (const int32_t token : batch.tokens) token_lookups[floats(token)] += 1.0;
  for (const int32_t position : batch.positions) position_lookups[floats(position)] += 1.0;
  norms.write(input_norm, w.wte, d, token_lookups);
  norms.write_lookup_rows(input_norm, w.wpe, d, position_lookups);
  const auto rows = static_cast<float>(std::sqrt(static_cast<double>(batch.n_tokens())));
  for (const LayerWeights& layer : w.layers) {
    norms.write_constant(input_norm, layer.ln_1_bias, d, rows);
    norms.write_constant(input_norm, layer.c_attn_bias, 3 * d, rows);
    norms.write_constant(input_norm, layer.attn_proj_bias, d, rows);
    norms.write_constant(input_norm, layer.ln_2_bias, d, rows);
    norms.write_constant(input_norm, layer.c_fc_bias, c.hidden_dim, rows);
    norms.write_constant(input_norm, layer.mlp_proj_bias, d, rows);
  }
  norms.write_constant(input_norm, w.ln_f_bias, d, rows);
}

}  // namespace

// Long by design, like llama_gradient: forward, objective and backward in data-flow order.
double gpt2_gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                     const GradientOutputs& out, std::vector<float>& arena) {
  const LlamaConfig& c = model.config;
  const Gpt2Weights w = gpt2_detail::gpt2_weights(model);
  const int64_t longest = llama_detail::check_batch(c, batch);
  const int64_t n = batch.n_tokens(), d = c.dim, h = c.hidden_dim;
  const int64_t vocab = c.vocab_size, layers = c.n_layers;

  PassBuffers b = carve_buffers(c, n, longest, arena);
  PassContext pass{c, batch, b.scratch};
  LayerActivations& a = b.a;
  LayerGradients& g = b.g;
  InputNormSums norms(model);

  // Forward, keeping each layer's input.
  gpt2_detail::embed(w, batch, d, b.residual);
  for (int64_t l = 0; l < layers; ++l) {
    const LayerWeights& layer = w.layers[floats(l)];
    const float* x_in = b.residual + l * n * d;
    layer_forward(pass, layer, x_in, a, b.residual + (l + 1) * n * d);
    if (out.input_norm != nullptr) {
      norms.add_normalised_columns(layer.ln_1_weight, x_in, n, d, c.norm_eps, true);
      norms.add_columns(layer.c_attn_weight, a.xn1, n, d);
      norms.add_columns(layer.attn_proj_weight, a.att, n, d);
      norms.add_normalised_columns(layer.ln_2_weight, a.x1, n, d, c.norm_eps, true);
      norms.add_columns(layer.c_fc_weight, a.xn2, n, d);
      norms.add_columns(layer.mlp_proj_weight, a.hidden, n, h);
    }
  }
  const float* x_last = b.residual + layers * n * d;
  layernorm_rows(x_last, w.ln_f_weight, w.ln_f_bias, b.xf, n, d, c.norm_eps);
  matmul_nt(n, vocab, d, b.xf, d, w.wte, d, b.logits, vocab);
  const double value = objective(b.logits, n, vocab, b.dlogits);
  if (out.input_norm != nullptr) {
    norms.add_normalised_columns(w.ln_f_weight, x_last, n, d, c.norm_eps, true);
    norms.add_columns(w.wte, b.xf, n, d);
    write_input_norms(model, w, batch, norms, out.input_norm);
  }
  if (out.grad == nullptr) return value;

  // Backward. Weight gradients accumulate (beta = 1) onto zeros, so the tied wte sums both uses.
  float* grad = out.grad;
  std::fill_n(grad, model.values.size(), 0.0f);
  auto grad_of = [&](const float* weights) { return grad + (weights - model.values.data()); };
  VectorGradient gain_grad(d), shift_grad(d), bias_grad(std::max(3 * d, h));
  auto layernorm_backward = [&](const float* x, const float* gain, const float* shift) {
    layernorm_rows_backward(x, gain, g.dxn, b.dx, gain_grad.data(), shift_grad.data(), n, d,
                            c.norm_eps);
    gain_grad.write(grad_of(gain), d);
    shift_grad.write(grad_of(shift), d);
  };
  auto bias_backward = [&](const float* dy, const float* bias, int64_t width) {
    add_bias_rows_backward(dy, n, width, bias_grad.data());
    bias_grad.write(grad_of(bias), width);
  };

  // Head: logits = xf wte^T; xf = ln_f(x_last).
  matmul_tn(vocab, d, n, b.dlogits, vocab, b.xf, d, grad_of(w.wte), d, 1.0f);
  matmul_nn(n, d, vocab, b.dlogits, vocab, w.wte, d, g.dxn, d);
  std::fill_n(b.dx, n * d, 0.0f);
  layernorm_backward(x_last, w.ln_f_weight, w.ln_f_bias);

  for (int64_t l = layers - 1; l >= 0; --l) {
    const LayerWeights& layer = w.layers[floats(l)];
    const float* x_in = b.residual + l * n * d;
    layer_forward(pass, layer, x_in, a, nullptr);

    // MLP block: x_out = x1 + gelu(ln_2(x1) c_fc^T + b_fc) c_proj^T + b_proj.
    bias_backward(b.dx, layer.mlp_proj_bias, d);
    matmul_tn(d, h, n, b.dx, d, a.hidden, h, grad_of(layer.mlp_proj_weight), h, 1.0f);
    matmul_nn(n, h, d, b.dx, d, layer.mlp_proj_weight, h, g.dhidden, h);
    gelu_tanh_backward(a.fc, g.dhidden, g.dhidden, n * h);
    bias_backward(g.dhidden, layer.c_fc_bias, h);
    matmul_tn(h, d, n, g.dhidden, h, a.xn2, d, grad_of(layer.c_fc_weight), d, 1.0f);
    matmul_nn(n, d, h, g.dhidden, h, layer.c_fc_weight, d, g.dxn, d);
    layernorm_backward(a.x1, layer.ln_2_weight, layer.ln_2_bias);

    // Attention block: x1 = x_in + attention(ln_1(x_in) c_attn^T + b_attn) c_proj^T + b_proj.
    bias_backward(b.dx, layer.attn_proj_bias, d);
    matmul_tn(d, d, n, b.dx, d, a.att, d, grad_of(layer.attn_proj_weight), d, 1.0f);
    matmul_nn(n, d, d, b.dx, d, layer.attn_proj_weight, d, g.datt, d);
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t first = batch.seq_start[floats(s)];
      const float* q = a.qkv + first * 3 * d;
      float* dq = g.dqkv + first * 3 * d;
      attention_causal_backward(q, 3 * d, q + d, q + 2 * d, 3 * d, g.datt + first * d, d, dq, 3 * d,
                                dq + d, dq + 2 * d, 3 * d, batch.seq_start[floats(s + 1)] - first,
                                c.n_heads, c.n_heads, c.head_dim(), pass.scratch);
    }
    bias_backward(g.dqkv, layer.c_attn_bias, 3 * d);
    matmul_tn(3 * d, d, n, g.dqkv, 3 * d, a.xn1, d, grad_of(layer.c_attn_weight), d, 1.0f);
    matmul_nn(n, d, 3 * d, g.dqkv, 3 * d, layer.c_attn_weight, d, g.dxn, d);
    layernorm_backward(x_in, layer.ln_1_weight, layer.ln_1_bias);
  }

  // Embedding lookups: each row's gradient goes to its token's wte row (on top of the head's
  // gradient) and its position's wpe row, in row order.
  float* wte_grad = grad_of(w.wte);
  float* wpe_grad = grad_of(w.wpe);
  for (int64_t r = 0; r < n; ++r) {
    float* token_row = wte_grad + static_cast<int64_t>(batch.tokens[floats(r)]) * d;
    float* position_row = wpe_grad + static_cast<int64_t>(batch.positions[floats(r)]) * d;
    for (int64_t i = 0; i < d; ++i) {
      token_row[i] += b.dx[r * d + i];
      position_row[i] += b.dx[r * d + i];
    }
  }
  return value;
}

// Forward (gpt2_forward_flops) + the recomputed layer forwards (its layer part again) + the
// backward pass: every projection GEMM and the classifier twice (dx and dW), attention's five
// products (5/2 of its forward two).
double gpt2_gradient_flops(const LlamaConfig& config, const TokenBatch& batch) {
  const double forward = gpt2_forward_flops(config, batch);
  const double classifier = 2.0 * static_cast<double>(batch.n_tokens()) *
                            static_cast<double>(config.vocab_size) *
                            static_cast<double>(config.dim);
  double attention =
      0.0;  // q k^T and p v over the causal triangle, as gpt2_forward_flops counts them
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const auto len =
        static_cast<double>(batch.seq_start[floats(s + 1)] - batch.seq_start[floats(s)]);
    attention += 2.0 * static_cast<double>(config.n_layers) * len * (len + 1) *
                 static_cast<double>(config.dim);
  }
  const double projections = forward - classifier - attention;
  return forward + (projections + attention) + 2.0 * (projections + classifier) + 2.5 * attention;
}

}  // namespace fracsweep
