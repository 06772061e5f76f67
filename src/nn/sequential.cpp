#include "fracsweep/nn/sequential.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

std::string layer_where(const SequentialSpec& spec, size_t index) {
  return in_file(spec.path, "layers[" + std::to_string(index) + "] (" +
                                layer_kind_name(spec.layers[index].kind) + ")");
}

// Resolves shapes layer by layer; `use` checks a tensor against the shape its layer needs.
class ShapePlanner {
 public:
  ShapePlanner(const SequentialSpec& spec, const TensorShapeLookup& shape_of)
      : spec_(spec), shape_of_(shape_of) {}

  std::vector<ResolvedLayer> resolve() {
    std::vector<ResolvedLayer> layers;
    std::vector<int64_t> shape = spec_.input_shape;
    for (size_t i = 0; i < spec_.layers.size(); ++i) {
      ResolvedLayer layer = resolve_layer(i, shape);
      shape = layer.out_shape;
      layers.push_back(std::move(layer));
    }
    check_input(shape == std::vector<int64_t>{spec_.classes},
                in_file(spec_.path,
                        "the last layer produces " + shape_text(shape) +
                            " per example, expected (classes) = " + std::to_string(spec_.classes)));
    return layers;
  }

  const NetworkLayout& layout() const { return layout_; }

 private:
  void use(const std::string& name, const std::vector<int64_t>& expected, const std::string& where,
           const char* field, TensorRole role = TensorRole::parameter) {
    const std::vector<int64_t>* actual = shape_of_(name);
    check_input(actual != nullptr, where + ", field '" + field + "': tensor '" + name +
                                       "' is not in " + spec_.weights_path);
    check_input(*actual == expected, where + ", field '" + field + "': tensor '" + name +
                                         "' has shape " + shape_text(*actual) + ", expected " +
                                         shape_text(expected));
    const auto found = std::find(layout_.tensor_names.begin(), layout_.tensor_names.end(), name);
    if (found == layout_.tensor_names.end()) {
      layout_.tensor_names.push_back(name);
      layout_.tensor_shapes.push_back(*actual);
      layout_.tensor_roles.push_back(role);
    } else if (role == TensorRole::parameter) {  // also read as a learned parameter: it is one
      layout_.tensor_roles[static_cast<size_t>(found - layout_.tensor_names.begin())] = role;
    }
  }

  // The first dimension of tensor `name` (which must exist and have rank `rank`).
  int64_t leading_dim(const std::string& name, size_t rank, const std::string& where,
                      const char* field) {
    const std::vector<int64_t>* actual = shape_of_(name);
    check_input(actual != nullptr, where + ", field '" + field + "': tensor '" + name +
                                       "' is not in " + spec_.weights_path);
    check_input(actual->size() == rank && actual->front() >= 1,
                where + ", field '" + field + "': tensor '" + name + "' has shape " +
                    shape_text(*actual) + ", expected " + std::to_string(rank) +
                    " non-empty dimensions");
    return actual->front();
  }

  // A linear weight stored (in, out), as some exporters write it, where the layer reads
  // (out, in): said so, with the fix, rather than as a mismatch against its own first dimension.
  void check_not_transposed(const std::string& name, const std::string& bias, int64_t in_features,
                            const std::string& where) {
    const std::vector<int64_t>& actual = *shape_of_(name);  // leading_dim checked: rank 2
    const int64_t in = actual[0], out = actual[1];
    if (in != in_features || out == in_features) return;  // not the transposed layout
    // A bias sized for the stored first dimension says the weight is (out, in) after all.
    const std::vector<int64_t>* bias_shape = bias.empty() ? nullptr : shape_of_(bias);
    if (bias_shape != nullptr && *bias_shape != std::vector<int64_t>{out}) return;
    throw InputError(where + ", field 'weight': tensor '" + name + "' in " + spec_.weights_path +
                     " is (in, out) = (" + std::to_string(in) + ", " + std::to_string(out) +
                     "); this layer expects (out, in) = (" + std::to_string(out) + ", " +
                     std::to_string(in) + "): transpose it");
  }

  static void need_rank(const std::vector<int64_t>& shape, size_t rank, const std::string& where,
                        const char* what) {
    check_input(shape.size() == rank, where + ": expects " + what + " input, found " +
                                          shape_text(shape) + " per example" +
                                          (rank == 1 ? " (add a flatten layer)" : ""));
  }

  ResolvedLayer resolve_layer(size_t index, const std::vector<int64_t>& in) {
    const std::string where = layer_where(spec_, index);
    ResolvedLayer layer;
    layer.spec = spec_.layers[index];
    layer.in_shape = in;
    layer.out_shape = in;
    const LayerSpec& s = layer.spec;
    switch (s.kind) {
      case LayerKind::linear: {
        need_rank(in, 1, where, "a 1-D (features)");
        layer.in_features = in[0];
        layer.out_features = leading_dim(s.weight, 2, where, "weight");
        check_not_transposed(s.weight, s.bias, layer.in_features, where);
        use(s.weight, {layer.out_features, layer.in_features}, where, "weight");
        if (!s.bias.empty()) use(s.bias, {layer.out_features}, where, "bias");
        layer.out_shape = {layer.out_features};
        break;
      }
      case LayerKind::conv2d: {
        need_rank(in, 3, where, "a 3-D (channels, height, width)");
        const int64_t out_channels = leading_dim(s.weight, 4, where, "weight");
        const std::vector<int64_t>& w = *shape_of_(s.weight);
        layer.window = Window2d{in[0], in[1], in[2], w[2], w[3], s.stride, s.padding};
        use(s.weight, {out_channels, in[0], w[2], w[3]}, where, "weight");
        if (!s.bias.empty()) use(s.bias, {out_channels}, where, "bias");
        check_input(in[1] + 2 * s.padding >= w[2] && in[2] + 2 * s.padding >= w[3],
                    where + ": kernel " + std::to_string(w[2]) + "x" + std::to_string(w[3]) +
                        " is larger than the padded input " + shape_text(in));
        layer.out_features = out_channels;
        layer.out_shape = {out_channels, layer.window.out_height(), layer.window.out_width()};
        checked_shape_product(
            {layer.window.out_height() * layer.window.out_width(), in[0], w[2], w[3]},
            where + " im2col rows");
        break;
      }
      case LayerKind::batchnorm: {
        check_input(in.size() == 1 || in.size() == 3,
                    where + ": expects (features) or (channels, height, width) input, found " +
                        shape_text(in));
        const std::vector<int64_t> per_channel = {in[0]};
        if (!s.weight.empty()) use(s.weight, per_channel, where, "weight");
        if (!s.bias.empty()) use(s.bias, per_channel, where, "bias");
        use(s.running_mean, per_channel, where, "running_mean", TensorRole::buffer);
        use(s.running_var, per_channel, where, "running_var", TensorRole::buffer);
        break;
      }
      case LayerKind::maxpool2d:
      case LayerKind::avgpool2d: {
        need_rank(in, 3, where, "a 3-D (channels, height, width)");
        check_input(s.kernel <= in[1] && s.kernel <= in[2],
                    where + ": kernel " + std::to_string(s.kernel) + " is larger than the input " +
                        shape_text(in));
        layer.window = Window2d{in[0], in[1], in[2], s.kernel, s.kernel, s.stride, 0};
        layer.out_shape = {in[0], layer.window.out_height(), layer.window.out_width()};
        break;
      }
      case LayerKind::flatten:
        layer.out_shape = {checked_shape_product(in, where)};
        break;
      case LayerKind::softmax:
      case LayerKind::log_softmax:
        need_rank(in, 1, where, "a 1-D (features)");
        break;
      case LayerKind::relu:
      case LayerKind::gelu:
      case LayerKind::tanh:
      case LayerKind::dropout:
        break;
    }
    checked_shape_product(layer.out_shape, where + " output");
    return layer;
  }

  const SequentialSpec& spec_;
  const TensorShapeLookup& shape_of_;
  NetworkLayout layout_;
};

int64_t product(const std::vector<int64_t>& shape) {
  int64_t p = 1;
  for (int64_t dim : shape) p *= dim;
  return p;
}

bool is_elementwise(LayerKind kind) {
  return kind == LayerKind::batchnorm || kind == LayerKind::relu || kind == LayerKind::gelu ||
         kind == LayerKind::tanh || kind == LayerKind::flatten || kind == LayerKind::dropout ||
         kind == LayerKind::softmax || kind == LayerKind::log_softmax;
}

}  // namespace

NetworkLayout plan_network(const SequentialSpec& spec, const TensorShapeLookup& shape_of) {
  ShapePlanner planner(spec, shape_of);
  planner.resolve();
  return planner.layout();
}

SequentialNetwork build_network(const SequentialSpec& spec, const Model& model) {
  std::map<std::string, const TensorInfo*> by_name;
  for (const TensorInfo& t : model.tensors) by_name[t.name] = &t;
  const TensorShapeLookup shape_of = [&](const std::string& name) -> const std::vector<int64_t>* {
    const auto found = by_name.find(name);
    return found == by_name.end() ? nullptr : &found->second->shape;
  };
  ShapePlanner planner(spec, shape_of);
  SequentialNetwork network;
  network.input_shape = spec.input_shape;
  network.input_size = product(spec.input_shape);
  network.classes = spec.classes;
  network.layers = planner.resolve();
  auto offset = [&](const std::string& name) {
    return name.empty() ? int64_t{-1} : by_name.at(name)->offset;
  };
  for (ResolvedLayer& layer : network.layers) {
    layer.weight = offset(layer.spec.weight);
    layer.bias = offset(layer.spec.bias);
    layer.running_mean = offset(layer.spec.running_mean);
    layer.running_var = offset(layer.spec.running_var);
  }
  network.scored_layers = network.layers.size();
  while (network.scored_layers > 0) {
    const LayerKind last = network.layers[network.scored_layers - 1].spec.kind;
    if (last != LayerKind::softmax && last != LayerKind::log_softmax) break;
    --network.scored_layers;
  }
  return network;
}

int64_t SequentialNetwork::largest_activation() const {
  int64_t largest = input_size;
  for (const ResolvedLayer& layer : layers) largest = std::max(largest, product(layer.out_shape));
  return largest;
}

int64_t SequentialNetwork::largest_im2col() const {
  int64_t largest = 0;
  for (const ResolvedLayer& layer : layers) {
    if (layer.spec.kind != LayerKind::conv2d) continue;
    const Window2d& w = layer.window;
    largest = std::max(largest, w.positions() * w.patch_size());
  }
  return largest;
}

double SequentialNetwork::forward_flops(int64_t examples) const {
  double flops = 0;
  for (const ResolvedLayer& layer : layers) {
    if (layer.spec.kind == LayerKind::linear) {
      flops +=
          2.0 * static_cast<double>(layer.in_features) * static_cast<double>(layer.out_features);
    } else if (layer.spec.kind == LayerKind::conv2d) {
      const Window2d& w = layer.window;
      flops += 2.0 * static_cast<double>(product(layer.out_shape)) *
               static_cast<double>(w.channels * w.kernel_h * w.kernel_w);
    }
  }
  return flops * static_cast<double>(examples);
}

SequentialWorkspace::SequentialWorkspace(const SequentialNetwork& network, int64_t n_examples,
                                         int64_t budget_bytes) {
  const int64_t activation = network.largest_activation();
  const int64_t columns = network.largest_im2col();
  // ping + pong + conv GEMM output (each <= activation) + im2col rows, per example.
  const int64_t bytes_per_example =
      static_cast<int64_t>(sizeof(float)) * (3 * activation + columns);
  max_examples_ =
      std::clamp<int64_t>(budget_bytes / bytes_per_example, 1, std::max<int64_t>(n_examples, 1));
  ping_.resize(static_cast<size_t>(max_examples_ * activation));
  pong_.resize(static_cast<size_t>(max_examples_ * activation));
  if (columns > 0) {
    columns_.resize(static_cast<size_t>(max_examples_ * columns));
    gemm_out_.resize(static_cast<size_t>(max_examples_ * activation));
  }
}

void sequential_forward(const SequentialNetwork& network, const Model& model, const float* inputs,
                        int64_t n, size_t n_layers, SequentialWorkspace& workspace, float* out) {
  check_invariant(n_layers <= network.layers.size(), "sequential_forward: too many layers");
  const int64_t out_size =
      n_layers == 0 ? network.input_size : product(network.layers[n_layers - 1].out_shape);
  for (int64_t first = 0; first < n; first += workspace.max_examples_) {
    const int64_t m = std::min(workspace.max_examples_, n - first);  // examples in this pass
    const float* source = inputs + first * network.input_size;       // (m, layer input size)
    float* buffers[2] = {workspace.ping_.data(), workspace.pong_.data()};
    int which = 0;
    for (size_t i = 0; i < n_layers; ++i) {
      const ResolvedLayer& layer = network.layers[i];
      const LayerSpec& s = layer.spec;
      const bool last = i + 1 == n_layers;
      float* target = last ? out + first * out_size : buffers[which];  // (m, layer output size)
      const int64_t in_size = product(layer.in_shape);
      if (is_elementwise(s.kind)) {
        std::memcpy(target, source, static_cast<size_t>(m * in_size) * sizeof(float));
      }
      run_layer_kernel(layer, model.values.data(), m, source, workspace.columns_.data(),
                       workspace.gemm_out_.data(), target);
      source = target;
      which = 1 - which;
    }
    if (n_layers == 0) {
      std::memcpy(out + first * out_size, source,
                  static_cast<size_t>(m * out_size) * sizeof(float));
    }
  }
}

void run_layer_kernel(const ResolvedLayer& layer, const float* values, int64_t m,
                      const float* source, float* columns, float* gemm_out, float* target) {
  const LayerSpec& s = layer.spec;
  const int64_t in_size = product(layer.in_shape);
  const auto parameter = [&](int64_t offset) { return offset < 0 ? nullptr : values + offset; };
  switch (s.kind) {
    case LayerKind::linear:
      linear_forward(m, layer.in_features, layer.out_features, source, parameter(layer.weight),
                     parameter(layer.bias), target);
      break;
    case LayerKind::conv2d:
      conv2d_forward(m, layer.window, layer.out_features, source, parameter(layer.weight),
                     parameter(layer.bias), columns, gemm_out, target);
      break;
    case LayerKind::batchnorm:
      batchnorm_forward(m, layer.in_shape[0], in_size / layer.in_shape[0], parameter(layer.weight),
                        parameter(layer.bias), parameter(layer.running_mean),
                        parameter(layer.running_var), s.eps, target);
      break;
    case LayerKind::relu:
      relu_forward(m * in_size, target);
      break;
    case LayerKind::gelu:
      gelu_forward(m * in_size, target);
      break;
    case LayerKind::tanh:
      tanh_forward(m * in_size, target);
      break;
    case LayerKind::maxpool2d:
      maxpool2d_forward(m, layer.window, source, target);
      break;
    case LayerKind::avgpool2d:
      avgpool2d_forward(m, layer.window, source, target);
      break;
    case LayerKind::softmax:
      softmax_forward(m, in_size, target);
      break;
    case LayerKind::log_softmax:
      log_softmax_forward(m, in_size, target);
      break;
    case LayerKind::flatten:
    case LayerKind::dropout:
      break;
  }
}

// --- layer kernels

void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                    const float* bias, float* y) {
  matmul_nt(n, out, in, x, in, weight, in, y, out);
  if (!bias) return;
#pragma omp parallel for schedule(static) if (worth_threads(2 * n * out))
  for (int64_t e = 0; e < n; ++e) {
    float* row = y + e * out;
    for (int64_t o = 0; o < out; ++o) row[o] += bias[o];
  }
}

void conv2d_forward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                    const float* weight, const float* bias, float* columns, float* gemm_out,
                    float* y) {
  const Window2d& w = window;
  const int64_t out_h = w.out_height(), out_w = w.out_width(), positions = out_h * out_w;
  const int64_t patch = w.channels * w.kernel_h * w.kernel_w;  // one im2col row: (C, KH, KW)
#pragma omp parallel for schedule(static) if (worth_threads(n * positions * patch))
  for (int64_t e = 0; e < n; ++e) {
    const float* image = x + e * w.channels * w.height * w.width;  // (C, H, W)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        float* row = columns + ((e * out_h + oy) * out_w + ox) * patch;
        for (int64_t c = 0; c < w.channels; ++c) {
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            const int64_t iy = oy * w.stride - w.padding + ky;
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              const int64_t ix = ox * w.stride - w.padding + kx;
              const bool inside = iy >= 0 && iy < w.height && ix >= 0 && ix < w.width;
              *row++ = inside ? image[(c * w.height + iy) * w.width + ix] : 0.0f;
            }
          }
        }
      }
    }
  }
  // gemm_out (n * positions, O) = columns (n * positions, patch) * weight (O, patch)^T
  matmul_nt(n * positions, out_channels, patch, columns, patch, weight, patch, gemm_out,
            out_channels);
#pragma omp parallel for schedule(static) if (worth_threads(2 * n * positions * out_channels))
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t o = 0; o < out_channels; ++o) {
      const float b = bias ? bias[o] : 0.0f;
      float* plane = y + (e * out_channels + o) * positions;  // (OH, OW)
      const float* column = gemm_out + e * positions * out_channels + o;
      for (int64_t p = 0; p < positions; ++p) plane[p] = column[p * out_channels] + b;
    }
  }
}

void batchnorm_forward(int64_t n, int64_t channels, int64_t spatial, const float* gamma,
                       const float* beta, const float* mean, const float* var, double eps,
                       float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * n * channels * spatial))
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < channels; ++c) {
      const float scale = static_cast<float>((gamma ? gamma[c] : 1.0) /
                                             std::sqrt(static_cast<double>(var[c]) + eps));
      const float shift = (beta ? beta[c] : 0.0f) - mean[c] * scale;
      float* plane = x + (e * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) plane[i] = plane[i] * scale + shift;
    }
  }
}

// `x < 0 ? 0 : x` keeps NaN (a comparison with NaN is false), as PyTorch's relu does.
void relu_forward(int64_t count, float* x) {
#pragma omp parallel for simd schedule(static) if (worth_threads(2 * count))
  for (int64_t i = 0; i < count; ++i) x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void gelu_forward(int64_t count, float* x) {
  constexpr float inv_sqrt2 = 0.70710678118654752f;
#pragma omp parallel for schedule(static) if (worth_threads(2 * count))
  for (int64_t i = 0; i < count; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * inv_sqrt2));
}

void tanh_forward(int64_t count, float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * count))
  for (int64_t i = 0; i < count; ++i) x[i] = std::tanh(x[i]);
}

// Window reductions: `combine` folds one input value into the running result.
template <typename Init, typename Combine, typename Finish>
void pool2d(int64_t n, const Window2d& w, const float* x, float* y, Init init, Combine combine,
            Finish finish) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
#pragma omp parallel for schedule(static) if (worth_threads(n * w.channels * w.height * w.width))
  for (int64_t plane = 0; plane < n * w.channels; ++plane) {
    const float* in = x + plane * w.height * w.width;  // (H, W)
    float* result = y + plane * out_h * out_w;         // (OH, OW)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        float acc = init();
        for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
          const float* line = in + (oy * w.stride + ky) * w.width + ox * w.stride;
          for (int64_t kx = 0; kx < w.kernel_w; ++kx) acc = combine(acc, line[kx]);
        }
        result[oy * out_w + ox] = finish(acc);
      }
    }
  }
}

void maxpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y) {
  pool2d(
      n, window, x, y, [] { return -std::numeric_limits<float>::infinity(); },
      [](float acc, float v) { return (v > acc || std::isnan(v)) && !std::isnan(acc) ? v : acc; },
      [](float acc) { return acc; });
}

void avgpool2d_forward(int64_t n, const Window2d& window, const float* x, float* y) {
  const float inv_area = 1.0f / static_cast<float>(window.kernel_h * window.kernel_w);
  pool2d(
      n, window, x, y, [] { return 0.0f; }, [](float acc, float v) { return acc + v; },
      [inv_area](float acc) { return acc * inv_area; });
}

void softmax_forward(int64_t n, int64_t features, float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * n * features))
  for (int64_t e = 0; e < n; ++e) {
    float* row = x + e * features;
    const float max = *std::max_element(row, row + features);
    double sum = 0;
    for (int64_t i = 0; i < features; ++i) {
      row[i] = std::exp(row[i] - max);
      sum += row[i];
    }
    const auto inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < features; ++i) row[i] *= inv;
  }
}

void log_softmax_forward(int64_t n, int64_t features, float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * n * features))
  for (int64_t e = 0; e < n; ++e) {
    float* row = x + e * features;
    const float max = *std::max_element(row, row + features);
    double sum = 0;
    for (int64_t i = 0; i < features; ++i) sum += std::exp(static_cast<double>(row[i] - max));
    const auto shift = static_cast<float>(max + std::log(sum));
    for (int64_t i = 0; i < features; ++i) row[i] -= shift;
  }
}

}  // namespace fracsweep
