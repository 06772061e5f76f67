// GPT-2 gradient (see gpt2_backward.hpp): a forward pass that keeps the residual stream at every
// layer boundary, the objective's derivative at the logits, then layer by layer in reverse:
// recompute the layer's activations from its input, back-propagate through the MLP block, then
// the attention block; last the two embedding lookups.
#include "fracsweep/nn/gpt2_backward.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fracsweep/nn/forward.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/gpt2_ops_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_backward.hpp"
#include "gpt2_weights.hpp"

namespace fracsweep {
namespace {

using gpt2_detail::add_bias_rows;
using gpt2_detail::gelu_tanh;
using gpt2_detail::Gpt2Weights;
using gpt2_detail::layernorm_rows;
using gpt2_detail::LayerWeights;

// One layer's forward values, recomputed from its input for its backward pass.
struct LayerActivations {
  LayerActivations(const LlamaConfig& c, int64_t n)
      : xn1(floats(n * c.dim)), qkv(floats(n * 3 * c.dim)), att(floats(n * c.dim)),
        x1(floats(n * c.dim)), xn2(floats(n * c.dim)), fc(floats(n * c.hidden_dim)),
        hidden(floats(n * c.hidden_dim)) {}
  std::vector<float> xn1;     // (n, dim)        ln_1 output
  std::vector<float> qkv;     // (n, 3 dim)      c_attn output: queries | keys | values
  std::vector<float> att;     // (n, dim)        attention output before attn.c_proj
  std::vector<float> x1;      // (n, dim)        residual stream after the attention block
  std::vector<float> xn2;     // (n, dim)        ln_2 output
  std::vector<float> fc;      // (n, hidden_dim) mlp.c_fc output (before GELU)
  std::vector<float> hidden;  // (n, hidden_dim) gelu(fc)
};

// Gradients with respect to one layer's activations (reused by every layer).
struct LayerGradients {
  LayerGradients(const LlamaConfig& c, int64_t n)
      : dxn(floats(n * c.dim)), datt(floats(n * c.dim)), dqkv(floats(n * 3 * c.dim)),
        dhidden(floats(n * c.hidden_dim)) {}
  std::vector<float> dxn;      // (n, dim)        d / d LayerNorm output
  std::vector<float> datt;     // (n, dim)        d / d attention output
  std::vector<float> dqkv;     // (n, 3 dim)      d / d queries | keys | values
  std::vector<float> dhidden;  // (n, hidden_dim) d / d gelu(fc), then d / d fc
};

// The batch-independent parts of one pass.
struct PassContext {
  const LlamaConfig& c;
  const TokenBatch& batch;
  std::vector<float> scratch;  // attention scratch, forward and backward, longest sequence
};

// One layer forward from x_in (n, dim), keeping every activation in `a`; writes the layer's
// output to x_out (n, dim) unless it is nullptr. The same kernels in the same order as
// gpt2_forward, so the residual stream is bitwise the same.
void layer_forward(PassContext& pass, const LayerWeights& layer, const float* x_in,
                   LayerActivations& a, float* x_out) {
  const LlamaConfig& c = pass.c;
  const TokenBatch& batch = pass.batch;
  const int64_t n = batch.n_tokens(), d = c.dim, h = c.hidden_dim;
  layernorm_rows(x_in, layer.ln_1_weight, layer.ln_1_bias, a.xn1.data(), n, d, c.norm_eps);
  matmul_nt(n, 3 * d, d, a.xn1.data(), d, layer.c_attn_weight, d, a.qkv.data(), 3 * d);
  add_bias_rows(a.qkv.data(), layer.c_attn_bias, n, 3 * d);
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[floats(s)];
    const float* q = a.qkv.data() + first * 3 * d;
    attention_causal(q, 3 * d, q + d, q + 2 * d, 3 * d, a.att.data() + first * d, d,
                     batch.seq_start[floats(s + 1)] - first, c.n_heads, c.n_heads, c.head_dim(),
                     pass.scratch.data());
  }
  std::copy_n(x_in, n * d, a.x1.data());
  matmul_nt(n, d, d, a.att.data(), d, layer.attn_proj_weight, d, a.x1.data(), d, 1.0f);
  add_bias_rows(a.x1.data(), layer.attn_proj_bias, n, d);
  layernorm_rows(a.x1.data(), layer.ln_2_weight, layer.ln_2_bias, a.xn2.data(), n, d, c.norm_eps);
  matmul_nt(n, h, d, a.xn2.data(), d, layer.c_fc_weight, d, a.fc.data(), h);
  add_bias_rows(a.fc.data(), layer.c_fc_bias, n, h);
  std::copy(a.fc.begin(), a.fc.end(), a.hidden.begin());
  gelu_tanh(a.hidden.data(), n * h);
  if (x_out != nullptr) {
    std::copy_n(a.x1.data(), n * d, x_out);
    matmul_nt(n, d, h, a.hidden.data(), h, layer.mlp_proj_weight, h, x_out, d, 1.0f);
    add_bias_rows(x_out, layer.mlp_proj_bias, n, d);
  }
}

// Squared input norms per input feature of every weight and gain (gradient.hpp's input_norm),
// summed over all rows during the forward pass, and written out once with the embeddings'
// lookup counts and the biases' sqrt(rows).
class InputNorms {
 public:
  InputNorms(const Model& model, const Gpt2Weights& w) : model_(model), w_(w) {}
  // sums of tensor `weights` (rows_out, cols) += squares of x's columns; x (rows, cols).
  void add_columns(const float* weights, const float* x, int64_t rows, int64_t cols) {
    add_column_squares(x, rows, cols, cols, sums_of(weights, cols).data());
  }
  // The same for a LayerNorm gain: the columns of x (rows, d) normalised to mean 0 and variance
  // 1 (up to eps) per row, before the gain.
  void add_normalised_columns(const float* gain, const float* x, int64_t rows, int64_t d, float eps) {
    std::vector<double>& sums = sums_of(gain, d);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * d;
      double mean = 0.0;
      for (int64_t i = 0; i < d; ++i) mean += row[i];
      mean /= static_cast<double>(d);
      double squares = 0.0;
      for (int64_t i = 0; i < d; ++i) squares += (row[i] - mean) * (row[i] - mean);
      const double inv_var = 1.0 / (squares / static_cast<double>(d) + eps);
      for (int64_t i = 0; i < d; ++i) sums[i] += (row[i] - mean) * (row[i] - mean) * inv_var;
    }
  }
  // Writes every entry of input_norm (Model::values-sized): weight entry (o, i) gets column
  // i's norm; wte row t sqrt(lookups of t + the classifier's column sums); wpe row p
  // sqrt(rows at position p); biases and LayerNorm shifts sqrt(rows).
  void write(const TokenBatch& batch, float* input_norm) const {
    const LlamaConfig& c = model_.config;
    const int64_t d = c.dim;
    const float* base = model_.values.data();
    std::vector<double> token_lookups(floats(c.vocab_size), 0.0), position_lookups(floats(c.seq_len), 0.0);
    for (const int32_t token : batch.tokens) token_lookups[floats(token)] += 1.0;
    for (const int32_t position : batch.positions) position_lookups[floats(position)] += 1.0;
    for (const Entry& entry : entries_) {
      const int64_t cols = static_cast<int64_t>(entry.sums.size());
      const bool embedding = entry.weights == w_.wte;
      const int64_t rows_out = embedding ? c.vocab_size : tensor_count(entry.weights) / cols;
      float* out = input_norm + (entry.weights - base);
      for (int64_t o = 0; o < rows_out; ++o) {
        const double extra = embedding ? token_lookups[floats(o)] : 0.0;
        for (int64_t i = 0; i < cols; ++i) {
          out[o * cols + i] = static_cast<float>(std::sqrt(entry.sums[floats(i)] + extra));
        }
      }
    }
    float* wpe = input_norm + (w_.wpe - base);
    for (int64_t p = 0; p < c.seq_len; ++p) {
      std::fill_n(wpe + p * d, d, static_cast<float>(std::sqrt(position_lookups[floats(p)])));
    }
    const auto rows = static_cast<float>(std::sqrt(static_cast<double>(batch.n_tokens())));
    auto fill_bias = [&](const float* bias, int64_t count) { std::fill_n(input_norm + (bias - base), count, rows); };
    for (const LayerWeights& layer : w_.layers) {
      fill_bias(layer.ln_1_bias, d);
      fill_bias(layer.c_attn_bias, 3 * d);
      fill_bias(layer.attn_proj_bias, d);
      fill_bias(layer.ln_2_bias, d);
      fill_bias(layer.c_fc_bias, c.hidden_dim);
      fill_bias(layer.mlp_proj_bias, d);
    }
    fill_bias(w_.ln_f_bias, d);
  }

 private:
  struct Entry {
    const float* weights;
    std::vector<double> sums;  // (cols) squared norm of each input feature
  };
  std::vector<double>& sums_of(const float* weights, int64_t cols) {
    for (Entry& entry : entries_) {
      if (entry.weights == weights) return entry.sums;
    }
    entries_.push_back({weights, std::vector<double>(floats(cols), 0.0)});
    return entries_.back().sums;
  }
  // Element count of the tensor that starts at `weights`.
  int64_t tensor_count(const float* weights) const {
    const int64_t offset = weights - model_.values.data();
    for (const TensorInfo& info : model_.tensors) {
      if (info.offset == offset) return info.count;
    }
    return 0;
  }
  const Model& model_;
  const Gpt2Weights& w_;
  std::vector<Entry> entries_;
};

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

}  // namespace

double gpt2_gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                     const GradientOutputs& out) {
  const LlamaConfig& c = model.config;
  const Gpt2Weights w = gpt2_detail::gpt2_weights(model);
  const int64_t longest = llama_detail::check_batch(c, batch);
  const int64_t n = batch.n_tokens(), d = c.dim, h = c.hidden_dim;
  const int64_t vocab = c.vocab_size, layers = c.n_layers;

  PassContext pass{c, batch,
                   std::vector<float>(floats(std::max(attention_scratch_floats(longest, c.head_dim()),
                                                      attention_backward_scratch_floats(longest))))};
  std::vector<float> residual(floats((layers + 1) * n * d));  // (L + 1, n, dim) layer inputs; [L] = final
  std::vector<float> xf(floats(n * d));                       // (n, dim)   ln_f output
  std::vector<float> logits(floats(n * vocab));               // (n, vocab)
  std::vector<float> dlogits(floats(n * vocab));              // (n, vocab) d objective / d logits
  std::vector<float> dx(floats(n * d));                       // (n, dim)   d / d residual stream
  LayerActivations a(c, n);
  InputNorms norms(model, w);

  // Forward, keeping each layer's input.
  gpt2_detail::embed(w, batch, d, residual.data());
  for (int64_t l = 0; l < layers; ++l) {
    const LayerWeights& layer = w.layers[floats(l)];
    const float* x_in = residual.data() + l * n * d;
    layer_forward(pass, layer, x_in, a, residual.data() + (l + 1) * n * d);
    if (out.input_norm != nullptr) {
      norms.add_normalised_columns(layer.ln_1_weight, x_in, n, d, c.norm_eps);
      norms.add_columns(layer.c_attn_weight, a.xn1.data(), n, d);
      norms.add_columns(layer.attn_proj_weight, a.att.data(), n, d);
      norms.add_normalised_columns(layer.ln_2_weight, a.x1.data(), n, d, c.norm_eps);
      norms.add_columns(layer.c_fc_weight, a.xn2.data(), n, d);
      norms.add_columns(layer.mlp_proj_weight, a.hidden.data(), n, h);
    }
  }
  const float* x_last = residual.data() + layers * n * d;
  layernorm_rows(x_last, w.ln_f_weight, w.ln_f_bias, xf.data(), n, d, c.norm_eps);
  matmul_nt(n, vocab, d, xf.data(), d, w.wte, d, logits.data(), vocab);
  const double value = objective(logits.data(), n, vocab, dlogits.data());
  if (out.input_norm != nullptr) {
    norms.add_normalised_columns(w.ln_f_weight, x_last, n, d, c.norm_eps);
    norms.add_columns(w.wte, xf.data(), n, d);
    norms.write(batch, out.input_norm);
  }
  if (out.grad == nullptr) return value;

  // Backward. Weight gradients accumulate (beta = 1) onto zeros, so the tied wte sums both uses.
  float* grad = out.grad;
  std::fill_n(grad, model.values.size(), 0.0f);
  auto grad_of = [&](const float* weights) { return grad + (weights - model.values.data()); };
  LayerGradients g(c, n);
  VectorGradient gain_grad(d), shift_grad(d), bias_grad(std::max(3 * d, h));
  auto layernorm_backward = [&](const float* x, const float* gain, const float* shift) {
    layernorm_rows_backward(x, gain, g.dxn.data(), dx.data(), gain_grad.data(), shift_grad.data(),
                            n, d, c.norm_eps);
    gain_grad.write(grad_of(gain), d);
    shift_grad.write(grad_of(shift), d);
  };
  auto bias_backward = [&](const float* dy, const float* bias, int64_t width) {
    add_bias_rows_backward(dy, n, width, bias_grad.data());
    bias_grad.write(grad_of(bias), width);
  };

  // Head: logits = xf wte^T; xf = ln_f(x_last).
  matmul_tn(vocab, d, n, dlogits.data(), vocab, xf.data(), d, grad_of(w.wte), d, 1.0f);
  matmul_nn(n, d, vocab, dlogits.data(), vocab, w.wte, d, g.dxn.data(), d);
  std::fill(dx.begin(), dx.end(), 0.0f);
  layernorm_backward(x_last, w.ln_f_weight, w.ln_f_bias);

  for (int64_t l = layers - 1; l >= 0; --l) {
    const LayerWeights& layer = w.layers[floats(l)];
    const float* x_in = residual.data() + l * n * d;
    layer_forward(pass, layer, x_in, a, nullptr);

    // MLP block: x_out = x1 + gelu(ln_2(x1) c_fc^T + b_fc) c_proj^T + b_proj.
    bias_backward(dx.data(), layer.mlp_proj_bias, d);
    matmul_tn(d, h, n, dx.data(), d, a.hidden.data(), h, grad_of(layer.mlp_proj_weight), h, 1.0f);
    matmul_nn(n, h, d, dx.data(), d, layer.mlp_proj_weight, h, g.dhidden.data(), h);
    gelu_tanh_backward(a.fc.data(), g.dhidden.data(), g.dhidden.data(), n * h);
    bias_backward(g.dhidden.data(), layer.c_fc_bias, h);
    matmul_tn(h, d, n, g.dhidden.data(), h, a.xn2.data(), d, grad_of(layer.c_fc_weight), d, 1.0f);
    matmul_nn(n, d, h, g.dhidden.data(), h, layer.c_fc_weight, d, g.dxn.data(), d);
    layernorm_backward(a.x1.data(), layer.ln_2_weight, layer.ln_2_bias);

    // Attention block: x1 = x_in + attention(ln_1(x_in) c_attn^T + b_attn) c_proj^T + b_proj.
    bias_backward(dx.data(), layer.attn_proj_bias, d);
    matmul_tn(d, d, n, dx.data(), d, a.att.data(), d, grad_of(layer.attn_proj_weight), d, 1.0f);
    matmul_nn(n, d, d, dx.data(), d, layer.attn_proj_weight, d, g.datt.data(), d);
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t first = batch.seq_start[floats(s)];
      const float* q = a.qkv.data() + first * 3 * d;
      float* dq = g.dqkv.data() + first * 3 * d;
      attention_causal_backward(q, 3 * d, q + d, q + 2 * d, 3 * d, g.datt.data() + first * d, d, dq,
                                3 * d, dq + d, dq + 2 * d, 3 * d, batch.seq_start[floats(s + 1)] - first,
                                c.n_heads, c.n_heads, c.head_dim(), pass.scratch.data());
    }
    bias_backward(g.dqkv.data(), layer.c_attn_bias, 3 * d);
    matmul_tn(3 * d, d, n, g.dqkv.data(), 3 * d, a.xn1.data(), d, grad_of(layer.c_attn_weight), d, 1.0f);
    matmul_nn(n, d, 3 * d, g.dqkv.data(), 3 * d, layer.c_attn_weight, d, g.dxn.data(), d);
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
      token_row[i] += dx[floats(r * d + i)];
      position_row[i] += dx[floats(r * d + i)];
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
                            static_cast<double>(config.vocab_size) * static_cast<double>(config.dim);
  double attention = 0.0;  // q k^T and p v over the causal triangle, as gpt2_forward_flops counts them
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const auto len = static_cast<double>(batch.seq_start[floats(s + 1)] - batch.seq_start[floats(s)]);
    attention += 2.0 * static_cast<double>(config.n_layers) * len * (len + 1) * static_cast<double>(config.dim);
  }
  const double projections = forward - classifier - attention;
  return forward + (projections + attention) + 2.0 * (projections + classifier) + 2.5 * attention;
}

}  // namespace fracsweep
