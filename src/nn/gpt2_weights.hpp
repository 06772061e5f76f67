#pragma once
// Internal to the nn layer: the GPT-2 parameters as pointers into Model::values (shape-checked),
// and the pieces of the forward pass (gpt2.cpp) that the backward pass (gpt2_backward.cpp)
// reruns: the embedding and the row kernels, defined once in gpt2.cpp so that both passes
// compute the same floats.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "llama_weights.hpp"

namespace fracsweep::gpt2_detail {

struct LayerWeights {
  const float* ln_1_weight;       // (dim)
  const float* ln_1_bias;         // (dim)
  const float* c_attn_weight;     // (3 dim, dim)   queries | keys | values
  const float* c_attn_bias;       // (3 dim)
  const float* attn_proj_weight;  // (dim, dim)     attn.c_proj
  const float* attn_proj_bias;    // (dim)
  const float* ln_2_weight;       // (dim)
  const float* ln_2_bias;         // (dim)
  const float* c_fc_weight;       // (hidden, dim)
  const float* c_fc_bias;         // (hidden)
  const float* mlp_proj_weight;   // (dim, hidden)  mlp.c_proj
  const float* mlp_proj_bias;     // (dim)
};

struct Gpt2Weights {
  const float* wte;  // (vocab, dim) token embeddings, also the classifier
  const float* wpe;  // (seq_len, dim) position embeddings
  std::vector<LayerWeights> layers;
  const float* ln_f_weight;  // (dim)
  const float* ln_f_bias;    // (dim)
};

inline Gpt2Weights gpt2_weights(const Model& model) {
  using llama_detail::weights;
  const LlamaConfig& c = model.config;
  const int64_t d = c.dim, h = c.hidden_dim;
  Gpt2Weights w;
  w.wte = weights(model, "wte", {c.vocab_size, d});
  w.wpe = weights(model, "wpe", {c.seq_len, d});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    w.layers.push_back(
        {weights(model, p + "ln_1.weight", {d}), weights(model, p + "ln_1.bias", {d}),
         weights(model, p + "attn.c_attn.weight", {3 * d, d}),
         weights(model, p + "attn.c_attn.bias", {3 * d}),
         weights(model, p + "attn.c_proj.weight", {d, d}),
         weights(model, p + "attn.c_proj.bias", {d}), weights(model, p + "ln_2.weight", {d}),
         weights(model, p + "ln_2.bias", {d}), weights(model, p + "mlp.c_fc.weight", {h, d}),
         weights(model, p + "mlp.c_fc.bias", {h}), weights(model, p + "mlp.c_proj.weight", {d, h}),
         weights(model, p + "mlp.c_proj.bias", {d})});
  }
  w.ln_f_weight = weights(model, "ln_f.weight", {d});
  w.ln_f_bias = weights(model, "ln_f.bias", {d});
  return w;
}

// x[r, :] = wte[tokens[r], :] + wpe[positions[r], :]; x (n_tokens, dim), for a batch that
// passed llama_detail::check_batch.
void embed(const Gpt2Weights& w, const TokenBatch& batch, int64_t dim, float* x);

// One row's mean and 1 / sqrt(variance + eps) as layernorm_rows normalises it (sums in double,
// results rounded to float): the backward kernel recomputes them with this too.
struct RowScale {
  float mean;
  float inv;
};
inline RowScale layernorm_row_scale(const float* row, int64_t d, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < d; ++i) sum += row[i];
  const double mean = sum / static_cast<double>(d);
  double squares = 0;
  for (int64_t i = 0; i < d; ++i) squares += (row[i] - mean) * (row[i] - mean);
  return {static_cast<float>(mean),
          static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(d) + eps))};
}

// out[r, :] = (x[r, :] - mean) * inv * weight + bias with layernorm_row_scale's mean and inv;
// x, out (rows, d).
void layernorm_rows(const float* x, const float* weight, const float* bias, float* out,
                    int64_t rows, int64_t d, float eps);

// x[r, :] += bias for every row; x (rows, d).
void add_bias_rows(float* x, const float* bias, int64_t rows, int64_t d);

// GELU, tanh approximation (GPT-2's "gelu_new"), in place on n floats.
void gelu_tanh(float* x, int64_t n);

}  // namespace fracsweep::gpt2_detail
