#include "fracsweep/nn/sequential_backward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t p = 1;
  for (int64_t dim : shape) p *= dim;
  return p;
}

bool has_parameters(LayerKind kind) {
  return kind == LayerKind::linear || kind == LayerKind::conv2d || kind == LayerKind::batchnorm;
}

// Layers whose output is their input unchanged: no buffer of their own.
bool is_alias(LayerKind kind) {
  return kind == LayerKind::flatten || kind == LayerKind::dropout;
}

// Layers the forward pass runs in place on a copy of their input.
bool is_in_place(LayerKind kind) {
  return kind == LayerKind::batchnorm || kind == LayerKind::relu || kind == LayerKind::gelu ||
         kind == LayerKind::tanh || kind == LayerKind::softmax || kind == LayerKind::log_softmax;
}

// Multiply-adds x 2 of one example through a linear or conv2d layer (0 for the others); each of
// the forward GEMM, the dW GEMM and the dx GEMM costs this much.
double layer_gemm_flops(const ResolvedLayer& layer) {
  if (layer.spec.kind == LayerKind::linear) {
    return 2.0 * static_cast<double>(layer.in_features) * static_cast<double>(layer.out_features);
  }
  if (layer.spec.kind == LayerKind::conv2d) {
    return 2.0 * static_cast<double>(layer.window.positions() * layer.out_features) *
           static_cast<double>(layer.window.patch_size());
  }
  return 0.0;
}

// Size of the scored layers' output per example (the logits).
int64_t network_classes(const SequentialNetwork& network) {
  return network.scored_layers == 0 ? network.input_size
                                    : product(network.layers[network.scored_layers - 1].out_shape);
}

// The first scored layer with parameters (nothing below it is back-propagated); scored_layers
// when there is none.
size_t first_with_parameters(const SequentialNetwork& network) {
  for (size_t i = 0; i < network.scored_layers; ++i) {
    if (has_parameters(network.layers[i].spec.kind)) return i;
  }
  return network.scored_layers;
}

// Floats per example of each buffer of a pass (the header's A, G, C, R).
struct Footprint {
  int64_t kept = 0, largest = 0, columns = 0, conv_out = 0;
  int64_t per_example() const { return kept + 2 * largest + columns + conv_out; }
};

Footprint footprint(const SequentialNetwork& network) {
  Footprint f;
  f.largest = network.input_size;
  for (size_t i = 0; i < network.scored_layers; ++i) {
    const ResolvedLayer& layer = network.layers[i];
    const int64_t out_size = product(layer.out_shape);
    f.largest = std::max(f.largest, out_size);
    if (i + 1 < network.scored_layers && !is_alias(layer.spec.kind)) f.kept += out_size;
    if (layer.spec.kind == LayerKind::conv2d) {
      f.columns = std::max(f.columns, layer.window.positions() * layer.window.patch_size());
      f.conv_out = std::max(f.conv_out, out_size);
    }
  }
  return f;
}

float* at_offset(float* base, int64_t offset) {
  return offset < 0 ? nullptr : base + offset;
}
const float* at_offset(const float* base, int64_t offset) {
  return offset < 0 ? nullptr : base + offset;
}

}  // namespace

SequentialGradientWorkspace::SequentialGradientWorkspace(const SequentialNetwork& network,
                                                         int64_t n_examples, int64_t budget_bytes) {
  const Footprint f = footprint(network);
  max_examples_ = std::max<int64_t>(n_examples, 0);
  chunk_ = sequential_gradient_chunk(network, n_examples, budget_bytes);
  per_example_ = f.per_example();
  scored_layers_ = network.scored_layers;
  classes_ = network_classes(network);
  const int64_t chunk = chunk_;
  const size_t layers = network.scored_layers;
  input_of_.assign(layers + 1, nullptr);
  kept_offset_.assign(layers, -1);
  int64_t kept_per_example = 0;
  for (size_t i = 0; i + 1 < layers; ++i) {
    if (is_alias(network.layers[i].spec.kind)) continue;
    kept_offset_[i] = chunk * kept_per_example;
    kept_per_example += product(network.layers[i].out_shape);
  }
  kept_.resize(static_cast<size_t>(chunk * f.kept));
  grad_a_.resize(static_cast<size_t>(chunk * f.largest));
  grad_b_.resize(static_cast<size_t>(chunk * f.largest));
  columns_.resize(static_cast<size_t>(chunk * f.columns));
  conv_rows_.resize(static_cast<size_t>(chunk * f.conv_out));
  stat_offset_.assign(layers, -1);
  int64_t stats = 0;
  for (size_t i = 0; i < layers; ++i) {
    const ResolvedLayer& layer = network.layers[i];
    switch (layer.spec.kind) {
      case LayerKind::linear:
        stat_offset_[i] = stats;
        stats += layer.in_features;
        break;
      case LayerKind::conv2d:
        stat_offset_[i] = stats;
        stats += layer.window.patch_size();
        break;
      case LayerKind::batchnorm:
        if (layer.weight >= 0) {
          stat_offset_[i] = stats;
          stats += layer.in_shape[0];
        }
        break;
      default:
        break;
    }
  }
  stats_.assign(static_cast<size_t>(stats), 0.0);
  logits_.resize(static_cast<size_t>(max_examples_ * classes_));
  dlogits_.resize(static_cast<size_t>(max_examples_ * classes_));
}

// Runs the scored layers on `inputs` (m, input_size), keeping every layer's input, and writes
// the logits (m, classes).
void SequentialGradientWorkspace::forward(const SequentialNetwork& network, const float* values,
                                          const float* inputs, int64_t m, float* logits) {
  const size_t layers = network.scored_layers;
  input_of_[0] = inputs;
  if (layers == 0) {
    std::memcpy(logits, inputs, static_cast<size_t>(m * network.input_size) * sizeof(float));
    return;
  }
  for (size_t i = 0; i < layers; ++i) {
    const ResolvedLayer& layer = network.layers[i];
    const LayerSpec& s = layer.spec;
    const bool last = i + 1 == layers;
    const float* source = input_of_[i];  // (m, layer input size)
    const int64_t in_size = product(layer.in_shape);
    if (is_alias(s.kind)) {
      if (last) std::memcpy(logits, source, static_cast<size_t>(m * in_size) * sizeof(float));
      input_of_[i + 1] = last ? logits : source;
      continue;
    }
    float* target = last ? logits : kept_.data() + kept_offset_[i];  // (m, layer output size)
    if (is_in_place(s.kind)) {
      std::memcpy(target, source, static_cast<size_t>(m * in_size) * sizeof(float));
    }
    run_layer_kernel(layer, values, m, source, columns_.data(), conv_rows_.data(), target);
    input_of_[i + 1] = target;
  }
}

// Back-propagates dlogits (m, classes) through the layers of the last forward() and adds the
// parameter gradients into `grad` (Model::values.size()).
void SequentialGradientWorkspace::backward(const SequentialNetwork& network, const float* values,
                                           int64_t m, const float* dlogits, float* grad) {
  const size_t first = first_with_parameters(network);
  const float* dy = dlogits;  // (m, output size of layer i)
  for (size_t i = network.scored_layers; i-- > first;) {
    const ResolvedLayer& layer = network.layers[i];
    const LayerSpec& s = layer.spec;
    if (is_alias(s.kind)) continue;     // dx = dy
    const float* x = input_of_[i];      // (m, layer input size)
    const float* y = input_of_[i + 1];  // (m, layer output size)
    const int64_t in_size = product(layer.in_shape);
    // (m, layer input size); nothing below the first layer with parameters needs it.
    float* dx = i == first ? nullptr : dy == grad_a_.data() ? grad_b_.data() : grad_a_.data();
    switch (s.kind) {
      case LayerKind::linear:
        linear_backward(m, layer.in_features, layer.out_features, x,
                        at_offset(values, layer.weight), dy, dx, at_offset(grad, layer.weight),
                        at_offset(grad, layer.bias));
        break;
      case LayerKind::conv2d:
        conv2d_backward(m, layer.window, layer.out_features, x, at_offset(values, layer.weight), dy,
                        columns_.data(), conv_rows_.data(), dx, at_offset(grad, layer.weight),
                        at_offset(grad, layer.bias));
        break;
      case LayerKind::batchnorm:
        batchnorm_backward(m, layer.in_shape[0], in_size / layer.in_shape[0], x,
                           at_offset(values, layer.weight), at_offset(values, layer.running_mean),
                           at_offset(values, layer.running_var), s.eps, dy, dx,
                           at_offset(grad, layer.weight), at_offset(grad, layer.bias),
                           at_offset(grad, layer.running_mean), at_offset(grad, layer.running_var));
        break;
      case LayerKind::relu:
        relu_backward(m * in_size, x, dy, dx);
        break;
      case LayerKind::gelu:
        gelu_backward(m * in_size, x, dy, dx);
        break;
      case LayerKind::tanh:
        tanh_backward(m * in_size, y, dy, dx);
        break;
      case LayerKind::maxpool2d:
        maxpool2d_backward(m, layer.window, x, dy, dx);
        break;
      case LayerKind::avgpool2d:
        avgpool2d_backward(m, layer.window, dy, dx);
        break;
      case LayerKind::softmax:
        softmax_backward(m, in_size, y, dy, dx);
        break;
      case LayerKind::log_softmax:
        log_softmax_backward(m, in_size, y, dy, dx);
        break;
      case LayerKind::flatten:
      case LayerKind::dropout:
        break;
    }
    dy = dx;
  }
}

// Adds the sums of squares input_norm needs, over the m examples of the last forward().
void SequentialGradientWorkspace::add_statistics(const SequentialNetwork& network,
                                                 const float* values, int64_t m) {
  for (size_t i = 0; i < network.scored_layers; ++i) {
    if (stat_offset_[i] < 0) continue;
    const ResolvedLayer& layer = network.layers[i];
    double* sq = stats_.data() + stat_offset_[i];
    switch (layer.spec.kind) {
      case LayerKind::linear:
        column_sum_squares(m, layer.in_features, input_of_[i], sq);
        break;
      case LayerKind::conv2d:
        conv2d_column_sum_squares(m, layer.window, input_of_[i], sq);
        break;
      case LayerKind::batchnorm: {
        const int64_t channels = layer.in_shape[0];
        batchnorm_normalised_sum_squares(m, channels, product(layer.in_shape) / channels,
                                         input_of_[i], values + layer.running_mean,
                                         values + layer.running_var, layer.spec.eps, sq);
        break;
      }
      default:
        break;
    }
  }
}

// input_norm (Model::values.size()) from the statistics of all n examples.
void SequentialGradientWorkspace::write_input_norm(const SequentialNetwork& network, int64_t n,
                                                   size_t n_values, float* input_norm) {
  std::vector<double>& sq = norm_sq_;  // (n_values) squared norms; shared tensors add up
  sq.assign(n_values, 0.0);
  const auto rows = static_cast<double>(n);
  auto add_rows = [&](int64_t offset, int64_t count, double value) {
    if (offset < 0) return;
    for (int64_t j = 0; j < count; ++j) sq[static_cast<size_t>(offset + j)] += value;
  };
  // Every output unit o of a weight (out, k) sees the same k input statistics.
  auto add_weight = [&](int64_t offset, int64_t out, int64_t k, const double* stats) {
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t j = 0; j < k; ++j) sq[static_cast<size_t>(offset + o * k + j)] += stats[j];
    }
  };
  for (size_t i = 0; i < network.scored_layers; ++i) {
    const ResolvedLayer& layer = network.layers[i];
    const double* stats = stat_offset_[i] < 0 ? nullptr : stats_.data() + stat_offset_[i];
    switch (layer.spec.kind) {
      case LayerKind::linear:
        add_weight(layer.weight, layer.out_features, layer.in_features, stats);
        add_rows(layer.bias, layer.out_features, rows);
        break;
      case LayerKind::conv2d:
        add_weight(layer.weight, layer.out_features, layer.window.patch_size(), stats);
        add_rows(layer.bias, layer.out_features,
                 rows * static_cast<double>(layer.window.positions()));
        break;
      case LayerKind::batchnorm: {
        const int64_t channels = layer.in_shape[0];
        if (stats) add_weight(layer.weight, 1, channels, stats);
        add_rows(layer.bias, channels,
                 rows * static_cast<double>(product(layer.in_shape) / channels));
        // Running statistics multiply no input: 0.
        break;
      }
      default:
        break;
    }
  }
  for (size_t j = 0; j < n_values; ++j) input_norm[j] = static_cast<float>(std::sqrt(sq[j]));
}

int64_t sequential_gradient_chunk(const SequentialNetwork& network, int64_t n,
                                  int64_t budget_bytes) {
  const int64_t bytes_per_example =
      static_cast<int64_t>(sizeof(float)) * std::max<int64_t>(footprint(network).per_example(), 1);
  return std::clamp<int64_t>(budget_bytes / bytes_per_example, 1, std::max<int64_t>(n, 1));
}

double sequential_gradient_flops(const SequentialNetwork& network, int64_t n,
                                 int64_t budget_bytes) {
  const size_t first = first_with_parameters(network);
  double forward = 0, backward = 0;
  for (size_t i = 0; i < network.scored_layers; ++i) {
    const double f = layer_gemm_flops(network.layers[i]);
    forward += f;
    backward += f;                 // dW
    if (i > first) backward += f;  // dx
  }
  const double forwards = sequential_gradient_chunk(network, n, budget_bytes) < n ? 2.0 : 1.0;
  return (forwards * forward + backward) * static_cast<double>(n);
}

double sequential_gradient(const SequentialNetwork& network, const Model& model,
                           const float* inputs, int64_t n, const LogitObjective& objective,
                           const GradientOutputs& out, SequentialGradientWorkspace& workspace) {
  SequentialGradientWorkspace& w = workspace;
  check_invariant(n >= 0 && n <= w.max_examples_,
                  "sequential_gradient: example count beyond the workspace");
  check_invariant(network.scored_layers == w.scored_layers_ &&
                      footprint(network).per_example() == w.per_example_ &&
                      network_classes(network) == w.classes_,
                  "sequential_gradient: workspace built for another network");
  const float* values = model.values.data();
  const int64_t classes = w.classes_, chunk = w.chunk_;
  const bool one_pass = chunk >= n;
  float* logits = w.logits_.data();    // (n, classes)
  float* dlogits = w.dlogits_.data();  // (n, classes) d objective / d logits
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = std::min(chunk, n - first);
    w.forward(network, values, inputs + first * network.input_size, m, logits + first * classes);
  }
  const double value = objective(logits, n, classes, dlogits);

  const size_t n_values = model.values.size();
  if (out.grad) std::fill(out.grad, out.grad + n_values, 0.0f);
  if (out.input_norm) std::fill(w.stats_.begin(), w.stats_.end(), 0.0);
  if (out.grad || out.input_norm) {
    for (int64_t first = 0; first < n; first += chunk) {
      const int64_t m = std::min(chunk, n - first);
      if (!one_pass) {
        w.forward(network, values, inputs + first * network.input_size, m,
                  logits + first * classes);
      }
      if (out.grad) w.backward(network, values, m, dlogits + first * classes, out.grad);
      if (out.input_norm) w.add_statistics(network, values, m);
    }
  }
  if (out.input_norm) w.write_input_norm(network, n, n_values, out.input_norm);
  return value;
}

double sequential_gradient(const SequentialNetwork& network, const Model& model,
                           const float* inputs, int64_t n, const LogitObjective& objective,
                           const GradientOutputs& out, int64_t budget_bytes) {
  SequentialGradientWorkspace workspace(network, n, budget_bytes);
  return sequential_gradient(network, model, inputs, n, objective, out, workspace);
}

}  // namespace fracsweep
