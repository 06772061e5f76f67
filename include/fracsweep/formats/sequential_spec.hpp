#pragma once
// The JSON description of a sequential classifier: layer list, input shape, class count and the
// safetensors file holding the weights, read and validated (types, keys, values). Shapes are
// checked against the weights by plan_network / build_network (nn/sequential.hpp).
//
// JSON format (README, "Sequential classifiers"):
//   {"format": "fracsweep-sequential/1", "weights": "model.safetensors",
//    "input": {"shape": [C, H, W] or [F]}, "classes": K,
//    "layers": [{"type": "linear", "weight": "fc1.weight", "bias": "fc1.bias"}, ...]}
#include <cstdint>
#include <string>
#include <vector>

namespace fracsweep {

enum class LayerKind {
  linear,
  conv2d,
  batchnorm,
  relu,
  gelu,
  tanh,
  maxpool2d,
  avgpool2d,
  flatten,
  dropout,
  softmax,
  log_softmax
};
const char* layer_kind_name(LayerKind kind);  // the JSON "type", e.g. "conv2d"

// One layer as described in the JSON file. Tensor names refer to the safetensors file.
struct LayerSpec {
  LayerKind kind = LayerKind::relu;
  std::string weight;        // linear (out, in), conv2d (out, in, kh, kw), batchnorm gamma (C)
  std::string bias;          // linear/conv2d (out), batchnorm beta (C); empty: none
  std::string running_mean;  // batchnorm (C)
  std::string running_var;   // batchnorm (C)
  double eps = 1e-5;         // batchnorm
  int64_t kernel = 0;        // pooling window (square)
  int64_t stride = 1;        // conv2d (default 1), pooling (default = kernel)
  int64_t padding = 0;       // conv2d, zero padding on every side
};

// The parsed description; `path` is the JSON file, `weights_path` absolute.
struct SequentialSpec {
  std::string path;
  std::string weights_path;
  std::vector<int64_t> input_shape;  // per example: {C, H, W} or {F}
  int64_t classes = 0;
  std::vector<LayerSpec> layers;
};

// Reads and validates the JSON structure (types, keys, values); shapes are checked by
// build_network. InputError naming the file and the field otherwise.
SequentialSpec read_sequential_spec(const std::string& json_path);

// Product of a shape whose every dimension is in 1..2^31 and whose product is at most 2^40;
// InputError naming `where` otherwise.
int64_t checked_shape_product(const std::vector<int64_t>& shape, const std::string& where);

}  // namespace fracsweep
