#pragma once
// The backward pass of sequential classifiers (nn/sequential.hpp): the gradient of a scalar
// objective of the logits with respect to every parameter, and Wanda's input norms, under the
// contract of nn/gradient.hpp. A forward pass keeps every layer's input, the objective is called
// once on the logits of all examples, and the layers are run backwards. Every GEMM goes through
// gemm.hpp; every backward kernel has a plain twin in namespace `ref`
// (sequential_backward_ref.cpp) for tests.
//
// Conventions of the kernels below (examples one after another, as in the forward pass):
// * `dy` is d objective / d (layer output), `dx` d objective / d (layer input): dx is
//   overwritten; parameter gradients (dweight, dbias, dgamma, ...) are ADDED to (+=), so a tensor
//   used by two layers, or several chunks of examples, accumulate in a fixed order. Any
//   output may be nullptr (not computed).
// * ReLU's derivative at exactly 0 is taken as 0 (as PyTorch does); NaN inputs pass no gradient.
// * Max pooling sends each window's gradient to the element the forward pass chose: the first
//   maximal element in window order (row by row), or the first NaN when the window holds one.
// * Batch norm is in evaluation mode: y = (x - mean) / sqrt(var + eps) * gamma + beta. The
//   running statistics are constants of the formula but parameters of the model, so they get
//   their true gradients: d/dmean = -gamma * s * sum(dy), d/dvar = -gamma * s^2 / 2 *
//   sum(dy * xhat), with s = 1 / sqrt(var + eps) and xhat = (x - mean) * s.
#include <cstdint>

#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"
#include "fracsweep/nn/sequential.hpp"

namespace fracsweep {

// Runs the scored layers ([0, network.scored_layers)) on inputs (n, input_size), calls
// `objective` once on the logits (n, classes), back-propagates, fills `out` (either pointer may
// be nullptr; see gradient.hpp) and returns the objective's value.
//
// Memory. Per example, in floats, over the scored layers:
//   A = sum of the output sizes of every layer but the last (each later layer's input; flatten
//       and dropout outputs are the same buffer as their input and count 0),
//   G = 2 * largest activation (input or any layer output; the two alternating gradients dx/dy),
//   C = largest im2col row block of a conv2d layer (OH * OW * C * KH * KW),
//   R = largest conv2d output (OH * OW * O; the GEMM result, then dy as (positions, O) rows);
// the pass holds chunk * 4 * (A + G + C + R) bytes, with chunk = clamp(budget_bytes /
// (4 * (A + G + C + R)), 1, n), plus 2 * n * classes floats (logits and their gradient), plus
// 8 * Model::values.size() bytes when `out.input_norm` is set (squares summed in double).
// When chunk < n the logits of all examples are computed first (the objective sees all n
// rows at once), then each chunk's forward pass is run again before its backward pass; chunks
// run in order, so the result is the same every run.
double sequential_gradient(const SequentialNetwork& network, const Model& model,
                           const float* inputs, int64_t n, const LogitObjective& objective,
                           const GradientOutputs& out, int64_t budget_bytes = int64_t{256} << 20);

// FLOPs of one sequential_gradient over n examples: forward GEMMs (twice when the budget forces
// chunks), and backward GEMMs (dW of every linear / conv2d layer, dx of every one but the first
// layer with parameters, below which nothing is back-propagated); 2 per multiply-add.
double sequential_gradient_flops(const SequentialNetwork& network, int64_t n,
                                 int64_t budget_bytes = int64_t{256} << 20);

// Examples per chunk of sequential_gradient for this network, n and budget.
int64_t sequential_gradient_chunk(const SequentialNetwork& network, int64_t n,
                                  int64_t budget_bytes = int64_t{256} << 20);

// --- backward kernels over a batch of n examples (optimised; `ref` twins below)

// y (n, out) = x (n, in) W^T + b: dx (n, in) = dy W (one GEMM); dW (out, in) += dy^T x (one
// GEMM); db (out) += column sums of dy (in double).
void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias);

// y (n, O, OH, OW) = conv2d(x (n, C, H, W), W (O, C, KH, KW)) + b. dW (O, C*KH*KW) +=
// dy_rows^T im2col(x) (one GEMM); db (O) += sums of dy (in double); dcolumns = dy_rows W (one
// GEMM, written over `columns`), then dx = col2im(dcolumns) (scatter-add). Scratch: `columns`
// (n * OH * OW, C * KH * KW) and `dy_rows` (n * OH * OW, O), dy with examples x positions as rows.
void conv2d_backward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                     const float* weight, const float* dy, float* columns, float* dy_rows,
                     float* dx, float* dweight, float* dbias);

// Evaluation-mode batch norm over x (n, C, spatial) (the layer's input); gamma may be nullptr
// (1). dx = dy * gamma * s; dgamma += sum(dy * xhat), dbeta += sum(dy), dmean, dvar as above
// (per channel, sums in double).
void batchnorm_backward(int64_t n, int64_t channels, int64_t spatial, const float* x,
                        const float* gamma, const float* mean, const float* var, double eps,
                        const float* dy, float* dx, float* dgamma, float* dbeta, float* dmean,
                        float* dvar);

// Elementwise over `count` values: relu and gelu from the layer's input x, tanh from its
// output y (1 - y^2).
void relu_backward(int64_t count, const float* x, const float* dy, float* dx);
void gelu_backward(int64_t count, const float* x, const float* dy, float* dx);  // Phi + x phi
void tanh_backward(int64_t count, const float* y, const float* dy, float* dx);

// Pooling: dx (n, C, H, W) from dy (n, C, OH, OW); x is the max pool's input. Overlapping
// windows (stride < kernel) add up; elements no window covers get 0.
void maxpool2d_backward(int64_t n, const Window2d& window, const float* x, const float* dy,
                        float* dx);
void avgpool2d_backward(int64_t n, const Window2d& window, const float* dy, float* dx);

// Rows of (n, features), from the layer's output y: softmax dx = y (dy - sum(dy y));
// log_softmax dx = dy - exp(y) sum(dy) (sums in double).
void softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx);
void log_softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx);

// --- input statistics for GradientOutputs::input_norm: sums of squares ADDED to `sq` (double)

// sq (features) += per column of x (rows, features): sum of x^2 (a linear layer's inputs).
void column_sum_squares(int64_t rows, int64_t features, const float* x, double* sq);
// sq (C * KH * KW) += per im2col column of x (n, C, H, W): sum over examples and output
// positions of the input value it reads (0 in the padding), squared.
void conv2d_column_sum_squares(int64_t n, const Window2d& window, const float* x, double* sq);
// sq (C) += per channel: sum of xhat^2 = ((x - mean) / sqrt(var + eps))^2 over x (n, C, spatial).
void batchnorm_normalised_sum_squares(int64_t n, int64_t channels, int64_t spatial, const float* x,
                                      const float* mean, const float* var, double eps, double* sq);

namespace ref {
// Plain twins: direct loops (convolution without im2col or GEMM), sums and transcendental
// functions in double; same contracts as above.
void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias);
void conv2d_backward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                     const float* weight, const float* dy, float* dx, float* dweight, float* dbias);
void batchnorm_backward(int64_t n, int64_t channels, int64_t spatial, const float* x,
                        const float* gamma, const float* mean, const float* var, double eps,
                        const float* dy, float* dx, float* dgamma, float* dbeta, float* dmean,
                        float* dvar);
void relu_backward(int64_t count, const float* x, const float* dy, float* dx);
void gelu_backward(int64_t count, const float* x, const float* dy, float* dx);
void tanh_backward(int64_t count, const float* y, const float* dy, float* dx);
void maxpool2d_backward(int64_t n, const Window2d& window, const float* x, const float* dy,
                        float* dx);
void avgpool2d_backward(int64_t n, const Window2d& window, const float* dy, float* dx);
void softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx);
void log_softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx);
void column_sum_squares(int64_t rows, int64_t features, const float* x, double* sq);
void conv2d_column_sum_squares(int64_t n, const Window2d& window, const float* x, double* sq);
void batchnorm_normalised_sum_squares(int64_t n, int64_t channels, int64_t spatial, const float* x,
                                      const float* mean, const float* var, double eps, double* sq);
}  // namespace ref

}  // namespace fracsweep
