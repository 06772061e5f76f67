#pragma once
// Gradient of an objective of the Llama logits with respect to every parameter (gradient.hpp's
// contract), batched over all tokens of a TokenBatch like llama_forward: every projection's
// backward pass is two GEMMs over all tokens (dx = dy W with matmul_nn, dW = dy^T x with
// matmul_tn), attention's runs per sequence.
//
// Memory (floats; n = tokens, L = layers, d = dim, kv = kv_dim, h = hidden_dim, V = vocab):
// the residual stream at every layer boundary, (L + 1) n d, plus one layer's activations
// recomputed during the backward pass and their gradients, n (9 d + 4 kv + 5 h), plus logits
// and their gradient, 2 n V. The caller's gradient / input-norm buffers are Model::values-sized.
// Activations inside a layer are recomputed from its input (one extra forward pass per layer)
// rather than kept for all layers.
#include <cstdint>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"

namespace fracsweep {

// Runs the forward pass over `batch`, calls `objective` on the logits (n_tok, vocab),
// back-propagates and fills `out`; returns the objective's value. Every buffer comes from
// `arena`, grown on first use and reused by later calls.
double llama_gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                      const GradientOutputs& out, std::vector<float>& arena);

// FLOPs of one llama_gradient (2 per multiply-add): the forward pass, the recomputed layer
// forwards, and the backward pass's two GEMMs per projection and attention's four products.
double llama_gradient_flops(const LlamaConfig& config, const TokenBatch& batch);

}  // namespace fracsweep
