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
#include <vector>

#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gradient.hpp"
#include "fracsweep/nn/sequential.hpp"

namespace fracsweep {

// Default budget for the per-chunk buffers of a gradient pass (see sequential_gradient).
inline constexpr int64_t sequential_gradient_budget = int64_t{256} << 20;

// Every buffer of sequential_gradient for one network over up to `n_examples` examples, sized
// once (memory: see sequential_gradient); reusable across calls, e.g. one gradient per
// perturbed model. Not shared between threads.
class SequentialGradientWorkspace {
 public:
  SequentialGradientWorkspace(const SequentialNetwork& network, int64_t n_examples,
                              int64_t budget_bytes = sequential_gradient_budget);
  int64_t max_examples() const { return max_examples_; }
  int64_t chunk() const { return chunk_; }  // examples per chunk

 private:
  friend double sequential_gradient(const SequentialNetwork&, const Model&, const float*, int64_t,
                                    const LogitObjective&, const GradientOutputs&,
                                    SequentialGradientWorkspace&);
  // Runs the scored layers on inputs (m, input_size), keeping every layer's input; writes the
  // logits (m, classes).
  void forward(const SequentialNetwork& network, const float* values, const float* inputs,
               int64_t m, float* logits);
  // Back-propagates dlogits (m, classes) through the last forward(); adds into grad.
  void backward(const SequentialNetwork& network, const float* values, int64_t m,
                const float* dlogits, float* grad);
  // Adds the sums of squares input_norm needs over the m examples of the last forward().
  void add_statistics(const SequentialNetwork& network, const float* values, int64_t m);
  // input_norm (n_values) from the statistics of all n examples.
  void write_input_norm(const SequentialNetwork& network, int64_t n, size_t n_values,
                        float* input_norm);

  int64_t max_examples_ = 0, chunk_ = 0;
  int64_t per_example_ = 0;  // floats per example of the chunk buffers (A + G + C + R)
  size_t scored_layers_ = 0;
  int64_t classes_ = 0;
  std::vector<const float*> input_of_;  // (scored_layers + 1) input of layer i; [last]: logits
  std::vector<int64_t> kept_offset_;    // (scored_layers) offset of layer i's output in kept_
  std::vector<float> kept_;             // per kept layer output: (chunk, output size), back to back
  std::vector<float> grad_a_;           // (chunk, largest activation) dy / dx, alternating
  std::vector<float> grad_b_;           // (chunk, largest activation)
  std::vector<float> columns_;          // (chunk * OH * OW, C * KH * KW) im2col rows, then dcolumns
  std::vector<float> conv_rows_;        // (chunk * OH * OW, O) conv GEMM result, then dy as rows
  std::vector<float> logits_;           // (max_examples, classes)
  std::vector<float> dlogits_;          // (max_examples, classes) d objective / d logits
  std::vector<int64_t> stat_offset_;    // (scored_layers) offset in stats_; -1: none
  std::vector<double> stats_;    // per linear: (in); conv2d: (C * KH * KW); batchnorm gain: (C)
  std::vector<double> norm_sq_;  // (Model::values.size()) squared input norms, when asked for
};

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
// run in order, so the result is the same every run. This overload builds a workspace per call
// (on the digits MLP, allocating and faulting it in costs 5x the pass itself): keep one when
// calling repeatedly.
double sequential_gradient(const SequentialNetwork& network, const Model& model,
                           const float* inputs, int64_t n, const LogitObjective& objective,
                           const GradientOutputs& out,
                           int64_t budget_bytes = sequential_gradient_budget);
// The same with buffers sized once (n <= workspace.max_examples(), workspace built for this
// network); its chunk is the workspace's.
double sequential_gradient(const SequentialNetwork& network, const Model& model,
                           const float* inputs, int64_t n, const LogitObjective& objective,
                           const GradientOutputs& out, SequentialGradientWorkspace& workspace);

// FLOPs of one sequential_gradient over n examples with `out.grad` set: forward GEMMs (twice when
// the budget forces chunks), and backward GEMMs (dW of every linear / conv2d layer, dx of every one
// but the first layer with parameters, below which nothing is back-propagated); 2 per multiply-add.
double sequential_gradient_flops(const SequentialNetwork& network, int64_t n,
                                 int64_t budget_bytes = sequential_gradient_budget);

// Examples per chunk of sequential_gradient for this network, n and budget.
int64_t sequential_gradient_chunk(const SequentialNetwork& network, int64_t n,
                                  int64_t budget_bytes = sequential_gradient_budget);

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
