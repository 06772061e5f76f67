#pragma once
// Sequential classifiers: the JSON description (formats/sequential_spec.hpp) resolved against
// the weights so shapes chain, and a batched forward pass over all evaluation examples with a
// workspace sized once. Activations are row-major, one example after another: (n, C, H, W) for
// images (NCHW), (n, F) for feature vectors. Linear layers are one GEMM over
// (examples x features); conv2d is im2col + one GEMM. Every layer kernel has a plain twin in
// namespace `ref` (sequential_ref.cpp) for tests.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fracsweep/formats/sequential_spec.hpp"
#include "fracsweep/model/model.hpp"

namespace fracsweep {

// Geometry of a 2-D convolution or pooling window over one example.
struct Window2d {
  int64_t channels = 0, height = 0, width = 0;  // input (C, H, W)
  int64_t kernel_h = 0, kernel_w = 0, stride = 1, padding = 0;
  int64_t out_height() const { return (height + 2 * padding - kernel_h) / stride + 1; }
  int64_t out_width() const { return (width + 2 * padding - kernel_w) / stride + 1; }
  int64_t positions() const { return out_height() * out_width(); }       // output positions
  int64_t patch_size() const { return channels * kernel_h * kernel_w; }  // im2col row length
};

// A layer resolved against the model's tensors: offsets into Model::values and shapes.
struct ResolvedLayer {
  LayerSpec spec;
  std::vector<int64_t> in_shape, out_shape;                             // per example
  Window2d window;                                                      // conv2d, pooling
  int64_t weight = -1, bias = -1, running_mean = -1, running_var = -1;  // offsets; -1: none
  int64_t in_features = 0, out_features = 0;  // linear; conv2d: out = out_channels
};

// The network of one model: resolved layers, and which of them produce the scored logits.
struct SequentialNetwork {
  std::vector<int64_t> input_shape;  // per example
  int64_t input_size = 0;            // product of input_shape
  int64_t classes = 0;
  std::vector<ResolvedLayer> layers;
  // Layers run by the evaluator: a trailing softmax / log_softmax is left out, because the
  // metrics take the softmax of the logits themselves (log_softmax(x) has the same softmax as x).
  size_t scored_layers = 0;

  int64_t largest_activation() const;  // per example, over the input and every layer output
  int64_t largest_im2col() const;      // per example, over conv2d layers (0 without)
  double forward_flops(int64_t examples) const;  // multiply-adds x 2 of linear and conv2d
};

// Shape of the weights file's tensor called `name`; nullptr when it has none.
using TensorShapeLookup = std::function<const std::vector<int64_t>*(const std::string& name)>;

// The tensors a network reads, distinct, in order of first use, with their shapes and roles:
// batch-norm running_mean / running_var are buffers (statistics, not learned), every other
// tensor a learned parameter.
struct NetworkLayout {
  std::vector<std::string> tensor_names;
  std::vector<std::vector<int64_t>> tensor_shapes;
  std::vector<TensorRole> tensor_roles;
};

// Checks that every named tensor exists with the shape its layer needs and that shapes chain
// from the input to (classes). InputError naming the JSON file, the layer (index and type) and
// the field otherwise; a linear weight stored (in, out) instead of (out, in) is named as such.
NetworkLayout plan_network(const SequentialSpec& spec, const TensorShapeLookup& shape_of);

// Resolves `spec` against a loaded model (tensors named as in the JSON file).
SequentialNetwork build_network(const SequentialSpec& spec, const Model& model);

// Scratch buffers for one pass over up to max_examples() examples, sized once: all `n_examples`
// when they fit in `budget_bytes`, otherwise the forward pass runs in chunks of that many.
class SequentialWorkspace {
 public:
  SequentialWorkspace(const SequentialNetwork& network, int64_t n_examples,
                      int64_t budget_bytes = int64_t{64} << 20);
  int64_t max_examples() const { return max_examples_; }

 private:
  friend void sequential_forward(const SequentialNetwork&, const Model&, const float*, int64_t,
                                 size_t, SequentialWorkspace&, float*);
  int64_t max_examples_ = 0;
  std::vector<float> ping_, pong_;  // (max_examples, largest_activation) alternating activations
  std::vector<float> columns_;      // (max_examples * out_h * out_w, C * kh * kw) im2col rows
  std::vector<float> gemm_out_;     // (max_examples * out_h * out_w, out_channels) conv result
};

// Runs the first `n_layers` layers of `network` on `inputs` (n, input_size) and writes the
// result (n, size of the last run layer's output; input_size when n_layers = 0) to `out`.
void sequential_forward(const SequentialNetwork& network, const Model& model, const float* inputs,
                        int64_t n, size_t n_layers, SequentialWorkspace& workspace, float* out);

// The kernel of one layer over m examples, its parameters read from `values` (Model::values):
// source (m, layer input size) -> target (m, layer output size). Element-wise kernels
// (activations, batchnorm, softmax) work in place on target, which the caller fills with source
// first; flatten and dropout do nothing. columns / gemm_out: conv2d scratch (conv2d_forward).
void run_layer_kernel(const ResolvedLayer& layer, const float* values, int64_t m,
                      const float* source, float* columns, float* gemm_out, float* target);

// --- layer kernels over a batch of n examples (optimised; the `ref` twins below are plain loops)

// y (n, out) = x (n, in) W^T + b; W (out, in), b (out) or nullptr. One GEMM.
void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                    const float* bias, float* y);
// y (n, O, OH, OW) from x (n, C, H, W), W (O, C, KH, KW), b (O) or nullptr. `columns`
// (n * OH * OW, C * KH * KW) and `gemm_out` (n * OH * OW, O) are scratch.
void conv2d_forward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                    const float* weight, const float* bias, float* columns, float* gemm_out,
                    float* y);
// In place on x (n, C, spatial): (x - mean) / sqrt(var + eps) * gamma + beta; gamma/beta may be
// nullptr (1 / 0).
void batchnorm_forward(int64_t n, int64_t channels, int64_t spatial, const float* gamma,
                       const float* beta, const float* mean, const float* var, double eps,
                       float* x);
void relu_forward(int64_t count, float* x);
void gelu_forward(int64_t count, float* x);  // exact: x * Phi(x) with erf
void tanh_forward(int64_t count, float* x);
// y (n, C, OH, OW) = max / mean over each window of x (n, C, H, W); no padding.
void maxpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y);
void avgpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y);
// In place on rows of x (n, features).
void softmax_forward(int64_t n, int64_t features, float* x);
void log_softmax_forward(int64_t n, int64_t features, float* x);

namespace ref {
// Plain twins: direct loops, sums in double, the textbook formula of each layer.
void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                    const float* bias, float* y);
void conv2d_forward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                    const float* weight, const float* bias, float* y);
void batchnorm_forward(int64_t n, int64_t channels, int64_t spatial, const float* gamma,
                       const float* beta, const float* mean, const float* var, double eps,
                       float* x);
void relu_forward(int64_t count, float* x);
void gelu_forward(int64_t count, float* x);
void tanh_forward(int64_t count, float* x);
void maxpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y);
void avgpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y);
void softmax_forward(int64_t n, int64_t features, float* x);
void log_softmax_forward(int64_t n, int64_t features, float* x);
}  // namespace ref

}  // namespace fracsweep
