#pragma once
// Gradient of an objective of the GPT-2 logits with respect to every parameter (gradient.hpp's
// contract), batched over all tokens of a TokenBatch like gpt2_forward: every projection's
// backward pass is two GEMMs over all tokens (dx = dy W with matmul_nn, dW = dy^T x with
// matmul_tn), attention's runs per sequence (ops_backward.hpp's attention_causal_backward on
// the interleaved q | k | v rows), LayerNorm, GELU and bias gradients are gpt2_ops_backward.hpp's.
//
// Memory (floats; n = tokens, L = layers, d = dim, h = hidden_dim, V = vocab): the residual
// stream at every layer boundary, (L + 1) n d; one layer's activations recomputed during the
// backward pass, n (7 d + 2 h) (ln_1 output, q | k | v, attention output, residual after
// attention, ln_2 output, c_fc output before and after GELU), and their gradients, n (5 d + h);
// the final LayerNorm's output and the residual stream's gradient, 2 n d; logits and their
// gradient, 2 n V. In all (L + 15) n d + 3 n h + 2 n V. The caller's gradient / input-norm
// buffers are Model::values-sized. Activations inside a layer are recomputed from its input
// (one extra forward pass per layer) rather than kept for all layers.
#include <cstdint>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"

namespace fracsweep {

// Runs the forward pass over `batch` (the objective sees exactly gpt2_forward's logits), calls
// `objective` on the logits (n_tok, vocab), back-propagates and fills `out`; returns the
// objective's value. input_norm (gradient.hpp): wte row t holds sqrt(lookups of t + the
// classifier's squared input norms) (it is also the head), wpe row p sqrt(rows at position p),
// biases and LayerNorm shifts sqrt(n), LayerNorm gains the norms of the normalised input.
double gpt2_gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                     const GradientOutputs& out, std::vector<float>& arena);

// FLOPs of one gpt2_gradient (2 per multiply-add; LayerNorm, GELU and softmax not counted): the
// forward pass, the recomputed layer forwards, and the backward pass's two GEMMs per projection
// and the classifier, and attention's five products per layer (scores recomputed, d probs =
// dout v^T, dq, dk, dv: 5/2 of its forward cost).
double gpt2_gradient_flops(const LlamaConfig& config, const TokenBatch& batch);

}  // namespace fracsweep
