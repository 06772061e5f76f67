#define BOOST_TEST_MODULE sequential_backward
// The backward pass of sequential classifiers (nn/sequential_backward.hpp): every optimised
// backward kernel and input statistic against its plain twin (ref::) on random shapes (odd
// sizes, padding, stride > 1, overlapping pools, ties), the rules at kinks (ReLU at 0, max-pool
// ties and NaN); whole-network gradients of the mean NLL against central finite differences of a
// double-precision forward pass written here (tiny models covering every layer kind, a tensor
// used twice, chunked passes); input norms against a direct computation; and the built-in digits
// classifier (jobs/default) and a convolutional network on MNIST (../shared) at sampled entries.
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/eval/classifier.hpp"
#include "fracsweep/formats/image_data.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gradient.hpp"
#include "fracsweep/nn/sequential.hpp"
#include "fracsweep/nn/sequential_backward.hpp"
#include "shared_data.hpp"

namespace fs = fracsweep;
using fs::LayerKind;
using fs::Window2d;

namespace {

// BLIS fixes its kernel set at its first call: configure it before any test runs.
struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};

std::vector<float> random_values(int64_t count, uint32_t seed, float low = -1.0f,
                                 float high = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(static_cast<size_t>(count));  // (count)
  for (float& v : values) v = distribution(generator);
  return values;
}

// |actual - expected| <= tolerance * (|expected| + max |expected|) elementwise.
template <typename A, typename E>
void check_close(const std::vector<A>& actual, const std::vector<E>& expected, double tolerance,
                 const std::string& what) {
  BOOST_TEST_REQUIRE(actual.size() == expected.size(), what << ": sizes differ");
  double scale = 0;
  for (E v : expected) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  size_t worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double e = expected[i], diff = std::fabs(static_cast<double>(actual[i]) - e);
    const double excess = diff / (tolerance * (std::fabs(e) + scale) + 1e-300);
    if (!(excess <= worst_excess)) {
      worst_excess = excess;
      worst = i;
    }
  }
  BOOST_TEST(worst_excess <= 1.0, what << ": entry " << worst << " is " << actual[worst]
                                       << ", expected " << expected[worst] << " (scale " << scale
                                       << ", tolerance " << tolerance << ")");
}

// --- tiny models built in memory

struct TensorDef {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // empty: random in [-1, 1] (running variances: [0.5, 2])
};

struct TinyModel {
  fs::SequentialSpec spec;
  fs::Model model;
  fs::SequentialNetwork network;
};

TinyModel make_model(std::vector<int64_t> input_shape, int64_t classes,
                     std::vector<fs::LayerSpec> layers, const std::vector<TensorDef>& tensors,
                     uint32_t seed) {
  TinyModel m;
  m.spec.path = "tiny.json";
  m.spec.weights_path = "tiny.safetensors";
  m.spec.input_shape = std::move(input_shape);
  m.spec.classes = classes;
  m.spec.layers = std::move(layers);
  m.model.path = "tiny.json";
  m.model.format = "sequential";
  m.model.architecture = "sequential";
  for (const TensorDef& t : tensors) {
    fs::append_tensor(m.model.tensors, t.name, t.shape);
    const int64_t count = m.model.tensors.back().count;
    const bool variance = t.name.find(".v") != std::string::npos;
    std::vector<float> values =
        t.values.empty()
            ? random_values(count, seed++, variance ? 0.5f : -1.0f, variance ? 2.0f : 1.0f)
            : t.values;
    BOOST_TEST_REQUIRE(static_cast<int64_t>(values.size()) == count);
    m.model.values.insert(m.model.values.end(), values.begin(), values.end());
  }
  m.network = fs::build_network(m.spec, m.model);
  return m;
}

fs::LayerSpec layer(LayerKind kind, std::string weight = "", std::string bias = "") {
  fs::LayerSpec s;
  s.kind = kind;
  s.weight = std::move(weight);
  s.bias = std::move(bias);
  return s;
}

fs::LayerSpec conv(std::string weight, std::string bias, int64_t stride, int64_t padding) {
  fs::LayerSpec s = layer(LayerKind::conv2d, std::move(weight), std::move(bias));
  s.stride = stride;
  s.padding = padding;
  return s;
}

fs::LayerSpec batchnorm(const std::string& prefix, bool affine, double eps) {
  fs::LayerSpec s =
      layer(LayerKind::batchnorm, affine ? prefix + ".g" : "", affine ? prefix + ".b" : "");
  s.running_mean = prefix + ".m";
  s.running_var = prefix + ".v";
  s.eps = eps;
  return s;
}

fs::LayerSpec pool(LayerKind kind, int64_t kernel, int64_t stride) {
  fs::LayerSpec s = layer(kind);
  s.kernel = kernel;
  s.stride = stride;
  return s;
}

// linear(6 -> 5) + relu + linear(5 -> 4)
TinyModel mlp_model() {
  return make_model(
      {6}, 4,
      {layer(LayerKind::linear, "fc1.w", "fc1.b"), layer(LayerKind::relu),
       layer(LayerKind::linear, "fc2.w", "fc2.b")},
      {{"fc1.w", {5, 6}, {}}, {"fc1.b", {5}, {}}, {"fc2.w", {4, 5}, {}}, {"fc2.b", {4}, {}}}, 10);
}

// conv2d(2 -> 3, 3x3, padding 1) + batchnorm + relu + maxpool 2 + flatten + linear(27 -> 4) on
// (2, 6, 6) inputs.
TinyModel cnn_model() {
  return make_model({2, 6, 6}, 4,
                    {conv("c.w", "c.b", 1, 1), batchnorm("bn", true, 1e-3), layer(LayerKind::relu),
                     pool(LayerKind::maxpool2d, 2, 2), layer(LayerKind::flatten),
                     layer(LayerKind::linear, "fc.w", "fc.b")},
                    {{"c.w", {3, 2, 3, 3}, {}},
                     {"c.b", {3}, {}},
                     {"bn.g", {3}, {}},
                     {"bn.b", {3}, {}},
                     {"bn.m", {3}, {}},
                     {"bn.v", {3}, {}},
                     {"fc.w", {4, 27}, {}},
                     {"fc.b", {4}, {}}},
                    20);
}

// conv2d(1 -> 2, 3x3, stride 2, padding 1) + tanh + conv2d(2 -> 2, 3x3, padding 1; its input
// gradient goes through the padding) + avgpool 2 + flatten + linear(8 -> 6) + gelu +
// linear(6 -> 3) on (1, 7, 7) inputs.
TinyModel smooth_model() {
  return make_model({1, 7, 7}, 3,
                    {conv("c.w", "c.b", 2, 1), layer(LayerKind::tanh), conv("c2.w", "c2.b", 1, 1),
                     pool(LayerKind::avgpool2d, 2, 2), layer(LayerKind::flatten),
                     layer(LayerKind::linear, "fc1.w", "fc1.b"), layer(LayerKind::gelu),
                     layer(LayerKind::linear, "fc2.w", "fc2.b")},
                    {{"c.w", {2, 1, 3, 3}, {}},
                     {"c.b", {2}, {}},
                     {"c2.w", {2, 2, 3, 3}, {}},
                     {"c2.b", {2}, {}},
                     {"fc1.w", {6, 8}, {}},
                     {"fc1.b", {6}, {}},
                     {"fc2.w", {3, 6}, {}},
                     {"fc2.b", {3}, {}}},
                    30);
}

// Every other kind and case: conv2d without bias (2x2, (2, 7, 7) -> (3, 6, 6)), overlapping
// max pool (kernel 3, stride 2), gelu, flatten, dropout, linear, batchnorm over features without
// gain or shift, tanh, a linear layer used twice (the same tensors) around a softmax, a
// log_softmax in the middle, a last linear layer and a trailing log_softmax (not scored).
TinyModel every_kind_model() {
  return make_model(
      {2, 7, 7}, 3,
      {conv("c.w", "", 1, 0), pool(LayerKind::maxpool2d, 3, 2), layer(LayerKind::gelu),
       layer(LayerKind::flatten), layer(LayerKind::dropout),
       layer(LayerKind::linear, "fc1.w", "fc1.b"), batchnorm("bn", false, 1e-5),
       layer(LayerKind::tanh), layer(LayerKind::linear, "sq.w", "sq.b"), layer(LayerKind::softmax),
       layer(LayerKind::linear, "sq.w", "sq.b"), layer(LayerKind::log_softmax),
       layer(LayerKind::linear, "out.w", "out.b"), layer(LayerKind::log_softmax)},
      {{"c.w", {3, 2, 2, 2}, {}},
       {"fc1.w", {5, 12}, {}},
       {"fc1.b", {5}, {}},
       {"bn.m", {5}, {}},
       {"bn.v", {5}, {}},
       {"sq.w", {5, 5}, {}},
       {"sq.b", {5}, {}},
       {"out.w", {3, 5}, {}},
       {"out.b", {3}, {}}},
      40);
}

// --- a double-precision forward pass of a network, written from the layer formulas

int64_t product(const std::vector<int64_t>& shape) {
  int64_t p = 1;
  for (int64_t d : shape) p *= d;
  return p;
}

// Runs the scored layers on x (n, input size) with parameters p (Model::values as doubles);
// returns the logits (n, classes). `inputs_of`, when given, receives each scored layer's input.
std::vector<double> double_forward(const fs::SequentialNetwork& network,
                                   const std::vector<double>& p, std::vector<double> x, int64_t n,
                                   std::vector<std::vector<double>>* inputs_of = nullptr) {
  for (size_t l = 0; l < network.scored_layers; ++l) {
    const fs::ResolvedLayer& L = network.layers[l];
    if (inputs_of) inputs_of->push_back(x);
    const int64_t in_size = product(L.in_shape), out_size = product(L.out_shape);
    std::vector<double> y(static_cast<size_t>(n * out_size));  // (n, layer output size)
    const Window2d& w = L.window;
    switch (L.spec.kind) {
      case LayerKind::linear:
        for (int64_t e = 0; e < n; ++e) {
          for (int64_t o = 0; o < L.out_features; ++o) {
            double sum = L.bias >= 0 ? p[static_cast<size_t>(L.bias + o)] : 0.0;
            for (int64_t i = 0; i < L.in_features; ++i) {
              sum += p[static_cast<size_t>(L.weight + o * L.in_features + i)] *
                     x[static_cast<size_t>(e * in_size + i)];
            }
            y[static_cast<size_t>(e * out_size + o)] = sum;
          }
        }
        break;
      case LayerKind::conv2d:
        for (int64_t e = 0; e < n; ++e) {
          for (int64_t o = 0; o < L.out_features; ++o) {
            for (int64_t oy = 0; oy < w.out_height(); ++oy) {
              for (int64_t ox = 0; ox < w.out_width(); ++ox) {
                double sum = L.bias >= 0 ? p[static_cast<size_t>(L.bias + o)] : 0.0;
                for (int64_t c = 0; c < w.channels; ++c) {
                  for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
                    for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
                      const int64_t iy = oy * w.stride - w.padding + ky,
                                    ix = ox * w.stride - w.padding + kx;
                      if (iy < 0 || iy >= w.height || ix < 0 || ix >= w.width) continue;
                      sum +=
                          p[static_cast<size_t>(
                              L.weight + ((o * w.channels + c) * w.kernel_h + ky) * w.kernel_w +
                              kx)] *
                          x[static_cast<size_t>(e * in_size + (c * w.height + iy) * w.width + ix)];
                    }
                  }
                }
                y[static_cast<size_t>(e * out_size + (o * w.out_height() + oy) * w.out_width() +
                                      ox)] = sum;
              }
            }
          }
        }
        break;
      case LayerKind::batchnorm: {
        const int64_t channels = L.in_shape[0], spatial = in_size / channels;
        for (int64_t j = 0; j < n * in_size; ++j) {
          const int64_t c = (j % in_size) / spatial;
          const double g = L.weight >= 0 ? p[static_cast<size_t>(L.weight + c)] : 1.0;
          const double b = L.bias >= 0 ? p[static_cast<size_t>(L.bias + c)] : 0.0;
          const double mean = p[static_cast<size_t>(L.running_mean + c)],
                       var = p[static_cast<size_t>(L.running_var + c)];
          y[static_cast<size_t>(j)] =
              (x[static_cast<size_t>(j)] - mean) / std::sqrt(var + L.spec.eps) * g + b;
        }
        break;
      }
      case LayerKind::relu:
        for (size_t j = 0; j < y.size(); ++j) y[j] = x[j] > 0 ? x[j] : 0.0;
        break;
      case LayerKind::gelu:
        for (size_t j = 0; j < y.size(); ++j) y[j] = x[j] * 0.5 * std::erfc(-x[j] / std::sqrt(2.0));
        break;
      case LayerKind::tanh:
        for (size_t j = 0; j < y.size(); ++j) y[j] = std::tanh(x[j]);
        break;
      case LayerKind::maxpool2d:
      case LayerKind::avgpool2d:
        for (int64_t plane = 0; plane < n * w.channels; ++plane) {
          for (int64_t oy = 0; oy < w.out_height(); ++oy) {
            for (int64_t ox = 0; ox < w.out_width(); ++ox) {
              double best = -std::numeric_limits<double>::infinity(), sum = 0;
              for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
                for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
                  const double v = x[static_cast<size_t>(
                      (plane * w.height + oy * w.stride + ky) * w.width + ox * w.stride + kx)];
                  best = std::max(best, v);
                  sum += v;
                }
              }
              y[static_cast<size_t>((plane * w.out_height() + oy) * w.out_width() + ox)] =
                  L.spec.kind == LayerKind::maxpool2d
                      ? best
                      : sum / static_cast<double>(w.kernel_h * w.kernel_w);
            }
          }
        }
        break;
      case LayerKind::softmax:
      case LayerKind::log_softmax:
        for (int64_t e = 0; e < n; ++e) {
          double max = -std::numeric_limits<double>::infinity(), sum = 0;
          for (int64_t i = 0; i < in_size; ++i)
            max = std::max(max, x[static_cast<size_t>(e * in_size + i)]);
          for (int64_t i = 0; i < in_size; ++i)
            sum += std::exp(x[static_cast<size_t>(e * in_size + i)] - max);
          for (int64_t i = 0; i < in_size; ++i) {
            const double v = x[static_cast<size_t>(e * in_size + i)] - max - std::log(sum);
            y[static_cast<size_t>(e * in_size + i)] =
                L.spec.kind == LayerKind::softmax ? std::exp(v) : v;
          }
        }
        break;
      case LayerKind::flatten:
      case LayerKind::dropout:
        y = x;
        break;
    }
    x = std::move(y);
  }
  return x;
}

double mean_nll(const std::vector<double>& logits, const std::vector<int32_t>& labels,
                int64_t classes) {
  const auto n = static_cast<int64_t>(labels.size());
  double total = 0;
  for (int64_t e = 0; e < n; ++e) {
    const double* row = logits.data() + e * classes;
    const double max = *std::max_element(row, row + classes);
    double sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(row[j] - max);
    total += max + std::log(sum) - row[labels[static_cast<size_t>(e)]];
  }
  return total / static_cast<double>(n);
}

// The objective: mean over rows of -log softmax(logits)[label], d/dlogits = (p - onehot) / rows.
fs::LogitObjective mean_nll_objective(const std::vector<int32_t>& labels, int* calls = nullptr) {
  return [&labels, calls](const float* logits, int64_t rows, int64_t classes, float* dlogits) {
    if (calls) ++*calls;
    BOOST_TEST_REQUIRE(rows == static_cast<int64_t>(labels.size()));
    double total = 0;
    for (int64_t e = 0; e < rows; ++e) {
      const float* row = logits + e * classes;
      const double max = *std::max_element(row, row + classes);
      double sum = 0;
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(row[j] - max);
      const double log_sum = max + std::log(sum);
      const int32_t label = labels[static_cast<size_t>(e)];
      total += log_sum - row[label];
      for (int64_t j = 0; j < classes; ++j) {
        const double p = std::exp(row[j] - log_sum);
        dlogits[e * classes + j] =
            static_cast<float>((p - (j == label ? 1.0 : 0.0)) / static_cast<double>(rows));
      }
    }
    return total / static_cast<double>(rows);
  };
}

std::vector<int32_t> random_labels(int64_t n, int64_t classes, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int32_t> distribution(0, static_cast<int32_t>(classes - 1));
  std::vector<int32_t> labels(static_cast<size_t>(n));  // (n)
  for (int32_t& l : labels) l = distribution(generator);
  return labels;
}

template <typename Floats>  // std::vector<float> or WeightBuffer
std::vector<double> as_double(const Floats& v) {
  return {v.begin(), v.end()};
}

// The gradient of the mean NLL (sequential_gradient) against double central differences of
// double_forward, per tensor at every entry (entries_per_tensor = 0) or at that many random
// entries plus the one of largest |gradient|: |g - fd| <= 1e-3 |fd| + 1e-3 max |fd| of the
// checked entries of that tensor. Every tensor must have a nonzero difference somewhere.
void check_gradient(const TinyModel& m, const std::vector<float>& inputs,
                    const std::vector<int32_t>& labels, int entries_per_tensor,
                    double step = 1e-5) {
  const auto n = static_cast<int64_t>(labels.size());
  std::vector<float> grad(m.model.values.size(), std::nanf(""));  // (n_values)
  const double value =
      fs::sequential_gradient(m.network, m.model, inputs.data(), n, mean_nll_objective(labels),
                              fs::GradientOutputs{grad.data(), nullptr});
  std::vector<double> p = as_double(m.model.values);  // (n_values)
  const std::vector<double> x = as_double(inputs);    // (n, input size)
  auto loss = [&] { return mean_nll(double_forward(m.network, p, x, n), labels, m.spec.classes); };
  BOOST_TEST(value == loss(), boost::test_tools::tolerance(1e-5));

  std::mt19937 generator(7);
  for (const fs::TensorInfo& t : m.model.tensors) {
    std::vector<int64_t> entries;
    if (entries_per_tensor == 0 || t.count <= entries_per_tensor) {
      for (int64_t j = 0; j < t.count; ++j) entries.push_back(j);
    } else {
      std::uniform_int_distribution<int64_t> pick(0, t.count - 1);
      for (int i = 0; i < entries_per_tensor; ++i) entries.push_back(pick(generator));
      const float* g = grad.data() + t.offset;
      entries.push_back(
          std::max_element(g, g + t.count,
                           [](float a, float b) { return std::fabs(a) < std::fabs(b); }) -
          g);
    }
    std::vector<double> fd, analytic;
    for (int64_t j : entries) {
      double& parameter = p[static_cast<size_t>(t.offset + j)];
      const double saved = parameter;
      parameter = saved + step;
      const double plus = loss();
      parameter = saved - step;
      const double minus = loss();
      parameter = saved;
      fd.push_back((plus - minus) / (2 * step));
      analytic.push_back(grad[static_cast<size_t>(t.offset + j)]);
    }
    double largest = 0;
    for (double v : fd) largest = std::max(largest, std::fabs(v));
    BOOST_TEST(largest > 0,
               t.name << ": every finite difference is 0 (the check would be vacuous)");
    for (size_t i = 0; i < entries.size(); ++i) {
      const double allowed = 1e-3 * std::fabs(fd[i]) + 1e-3 * largest;
      BOOST_TEST(std::fabs(analytic[i] - fd[i]) <= allowed,
                 t.name << "[" << entries[i] << "]: gradient " << analytic[i]
                        << ", finite difference " << fd[i]);
    }
  }
  for (float g : grad) BOOST_TEST_REQUIRE(std::isfinite(g), "grad was not overwritten entirely");
}

// Expected input norms from the double forward pass's layer inputs, per gradient.hpp.
std::vector<double> direct_input_norms(const TinyModel& m, const std::vector<float>& inputs,
                                       int64_t n) {
  std::vector<std::vector<double>> inputs_of;
  double_forward(m.network, as_double(m.model.values), as_double(inputs), n, &inputs_of);
  std::vector<double> sq(m.model.values.size(), 0.0);  // (n_values) squared norms
  for (size_t l = 0; l < m.network.scored_layers; ++l) {
    const fs::ResolvedLayer& L = m.network.layers[l];
    const std::vector<double>& x = inputs_of[l];
    const int64_t in_size = product(L.in_shape);
    const Window2d& w = L.window;
    if (L.spec.kind == LayerKind::linear) {
      for (int64_t o = 0; o < L.out_features; ++o) {
        for (int64_t i = 0; i < L.in_features; ++i) {
          for (int64_t e = 0; e < n; ++e) {
            sq[static_cast<size_t>(L.weight + o * L.in_features + i)] +=
                std::pow(x[static_cast<size_t>(e * in_size + i)], 2);
          }
        }
        if (L.bias >= 0) sq[static_cast<size_t>(L.bias + o)] += static_cast<double>(n);
      }
    } else if (L.spec.kind == LayerKind::conv2d) {
      // im2col row (e, oy, ox), column (c, ky, kx): the input value it reads, 0 in the padding.
      const int64_t patch = w.channels * w.kernel_h * w.kernel_w;
      for (int64_t o = 0; o < L.out_features; ++o) {
        for (int64_t e = 0; e < n; ++e) {
          for (int64_t oy = 0; oy < w.out_height(); ++oy) {
            for (int64_t ox = 0; ox < w.out_width(); ++ox) {
              for (int64_t c = 0; c < w.channels; ++c) {
                for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
                  for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
                    const int64_t iy = oy * w.stride - w.padding + ky,
                                  ix = ox * w.stride - w.padding + kx;
                    const double v = iy < 0 || iy >= w.height || ix < 0 || ix >= w.width
                                         ? 0.0
                                         : x[static_cast<size_t>(
                                               e * in_size + (c * w.height + iy) * w.width + ix)];
                    sq[static_cast<size_t>(L.weight + o * patch +
                                           (c * w.kernel_h + ky) * w.kernel_w + kx)] += v * v;
                  }
                }
              }
            }
          }
        }
        if (L.bias >= 0)
          sq[static_cast<size_t>(L.bias + o)] +=
              static_cast<double>(n * w.out_height() * w.out_width());
      }
    } else if (L.spec.kind == LayerKind::batchnorm) {
      const int64_t channels = L.in_shape[0], spatial = in_size / channels;
      for (int64_t j = 0; j < n * in_size; ++j) {
        const int64_t c = (j % in_size) / spatial;
        const double mean = m.model.values[static_cast<size_t>(L.running_mean + c)];
        const double var = m.model.values[static_cast<size_t>(L.running_var + c)];
        const double xhat = (x[static_cast<size_t>(j)] - mean) / std::sqrt(var + L.spec.eps);
        if (L.weight >= 0) sq[static_cast<size_t>(L.weight + c)] += xhat * xhat;
        if (L.bias >= 0) sq[static_cast<size_t>(L.bias + c)] += 1.0;
      }
    }
  }
  for (double& v : sq) v = std::sqrt(v);
  return sq;
}

fs::GradientOutputs outputs(float* grad, float* input_norm) {
  return fs::GradientOutputs{grad, input_norm};
}

// One sequential_gradient of the mean NLL with the outputs asked for, prefilled with `fill`.
struct Pass {
  double value = 0;
  std::vector<float> grad, norm;  // (n_values) each, or empty when not asked for
};

Pass run_pass(const TinyModel& m, const std::vector<float>& inputs,
              const std::vector<int32_t>& labels, bool want_grad, bool want_norm, float fill,
              int64_t budget = int64_t{256} << 20) {
  Pass pass;
  if (want_grad) pass.grad.assign(m.model.values.size(), fill);
  if (want_norm) pass.norm.assign(m.model.values.size(), fill);
  pass.value =
      fs::sequential_gradient(m.network, m.model, inputs.data(),
                              static_cast<int64_t>(labels.size()), mean_nll_objective(labels),
                              fs::GradientOutputs{want_grad ? pass.grad.data() : nullptr,
                                                  want_norm ? pass.norm.data() : nullptr},
                              budget);
  return pass;
}

std::filesystem::path source_dir() {
  const char* env = std::getenv("FRACSWEEP_SOURCE_DIR");
  return env ? std::filesystem::path(env)
             : std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

// --- (1) each backward kernel against its plain twin

BOOST_AUTO_TEST_CASE(linear_backward_matches_reference) {
  struct Shape {
    int64_t n, in, out;
  };
  uint32_t seed = 100;
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{33, 64, 10}, Shape{128, 17, 31}}) {
    const auto x = random_values(s.n * s.in, seed++), weight = random_values(s.out * s.in, seed++);
    const auto dy = random_values(s.n * s.out, seed++);
    // Parameter gradients accumulate: both start from the same nonzero values.
    const auto dw0 = random_values(s.out * s.in, seed++), db0 = random_values(s.out, seed++);
    std::vector<float> dx(static_cast<size_t>(s.n * s.in)), dw = dw0, db = db0;  // fast
    std::vector<float> dx_ref(dx.size()), dw_ref = dw0, db_ref = db0;            // twin
    fs::linear_backward(s.n, s.in, s.out, x.data(), weight.data(), dy.data(), dx.data(), dw.data(),
                        db.data());
    fs::ref::linear_backward(s.n, s.in, s.out, x.data(), weight.data(), dy.data(), dx_ref.data(),
                             dw_ref.data(), db_ref.data());
    const std::string shape =
        std::to_string(s.n) + "x" + std::to_string(s.in) + "->" + std::to_string(s.out);
    check_close(dx, dx_ref, 1e-5, "linear dx " + shape);
    check_close(dw, dw_ref, 1e-5, "linear dW " + shape);
    check_close(db, db_ref, 1e-6, "linear db " + shape);
    // Outputs left out are not computed; the others are unchanged by their absence.
    std::vector<float> dw_only = dw0;
    fs::linear_backward(s.n, s.in, s.out, x.data(), weight.data(), dy.data(), nullptr,
                        dw_only.data(), nullptr);
    BOOST_TEST(std::memcmp(dw_only.data(), dw.data(), dw.size() * sizeof(float)) == 0);
  }
}

BOOST_AUTO_TEST_CASE(conv2d_backward_matches_reference) {
  struct Case {
    Window2d window;
    int64_t n, out_channels;
  };
  const Case cases[] = {
      {Window2d{1, 5, 5, 3, 3, 1, 0}, 2, 1}, {Window2d{3, 7, 6, 3, 2, 2, 1}, 3, 5},
      {Window2d{2, 8, 8, 5, 5, 3, 2}, 2, 4}, {Window2d{4, 9, 7, 1, 1, 2, 0}, 3, 3},
      {Window2d{2, 4, 4, 4, 4, 1, 3}, 1, 2}, {Window2d{3, 11, 9, 3, 3, 2, 1}, 5, 7},
  };
  uint32_t seed = 200;
  for (const Case& c : cases) {
    const Window2d& w = c.window;
    const int64_t positions = w.out_height() * w.out_width(),
                  patch = w.channels * w.kernel_h * w.kernel_w;
    const int64_t in_size = w.channels * w.height * w.width;
    const auto x = random_values(c.n * in_size, seed++),
               weight = random_values(c.out_channels * patch, seed++);
    const auto dy = random_values(c.n * c.out_channels * positions, seed++);
    const auto dw0 = random_values(c.out_channels * patch, seed++),
               db0 = random_values(c.out_channels, seed++);
    std::vector<float> columns(static_cast<size_t>(c.n * positions * patch),
                               std::nanf(""));  // scratch
    std::vector<float> dy_rows(static_cast<size_t>(c.n * positions * c.out_channels),
                               std::nanf(""));  // scratch
    std::vector<float> dx(static_cast<size_t>(c.n * in_size), std::nanf("")), dw = dw0, db = db0;
    std::vector<float> dx_ref(dx.size()), dw_ref = dw0, db_ref = db0;
    fs::conv2d_backward(c.n, w, c.out_channels, x.data(), weight.data(), dy.data(), columns.data(),
                        dy_rows.data(), dx.data(), dw.data(), db.data());
    fs::ref::conv2d_backward(c.n, w, c.out_channels, x.data(), weight.data(), dy.data(),
                             dx_ref.data(), dw_ref.data(), db_ref.data());
    const std::string geometry = "C" + std::to_string(w.channels) + " " + std::to_string(w.height) +
                                 "x" + std::to_string(w.width) + " k" + std::to_string(w.kernel_h) +
                                 "x" + std::to_string(w.kernel_w) + " s" +
                                 std::to_string(w.stride) + " p" + std::to_string(w.padding);
    check_close(dx, dx_ref, 1e-5, "conv2d dx " + geometry);
    check_close(dw, dw_ref, 1e-5, "conv2d dW " + geometry);
    check_close(db, db_ref, 1e-6, "conv2d db " + geometry);
  }
}

BOOST_AUTO_TEST_CASE(batchnorm_backward_matches_reference) {
  struct Case {
    int64_t n, channels, spatial;
    bool gamma;
  };
  uint32_t seed = 300;
  for (const Case c : {Case{5, 3, 7, true}, Case{4, 6, 1, false}, Case{3, 2, 25, true}}) {
    const int64_t count = c.n * c.channels * c.spatial;
    const auto x = random_values(count, seed++), dy = random_values(count, seed++);
    const auto gamma = random_values(c.channels, seed++), mean = random_values(c.channels, seed++);
    const auto var = random_values(c.channels, seed++, 0.1f, 3.0f);
    const auto init = random_values(4 * c.channels, seed++);  // dgamma, dbeta, dmean, dvar start
    std::vector<float> dx(static_cast<size_t>(count)), acc = init, dx_ref(dx.size()),
                                                       acc_ref = init;
    const float* g = c.gamma ? gamma.data() : nullptr;
    auto part = [&](std::vector<float>& a, int64_t i) { return a.data() + i * c.channels; };
    fs::batchnorm_backward(c.n, c.channels, c.spatial, x.data(), g, mean.data(), var.data(), 1e-3,
                           dy.data(), dx.data(), part(acc, 0), part(acc, 1), part(acc, 2),
                           part(acc, 3));
    fs::ref::batchnorm_backward(c.n, c.channels, c.spatial, x.data(), g, mean.data(), var.data(),
                                1e-3, dy.data(), dx_ref.data(), part(acc_ref, 0), part(acc_ref, 1),
                                part(acc_ref, 2), part(acc_ref, 3));
    check_close(dx, dx_ref, 1e-6, "batchnorm dx");
    check_close(acc, acc_ref, 1e-6, "batchnorm dgamma, dbeta, dmean, dvar");
  }
}

BOOST_AUTO_TEST_CASE(activation_backward_matches_reference) {
  const int64_t count = 1001;
  auto x = random_values(count, 400, -4.0f, 4.0f);
  for (int64_t i = 0; i < count; i += 97) x[static_cast<size_t>(i)] = 0.0f;  // exact kinks
  const auto dy = random_values(count, 401);
  std::vector<float> y = x;  // (count) tanh outputs
  fs::tanh_forward(count, y.data());
  std::vector<float> fast(static_cast<size_t>(count)), plain(fast.size());
  fs::relu_backward(count, x.data(), dy.data(), fast.data());
  fs::ref::relu_backward(count, x.data(), dy.data(), plain.data());
  BOOST_TEST(fast == plain, boost::test_tools::per_element());
  fs::gelu_backward(count, x.data(), dy.data(), fast.data());
  fs::ref::gelu_backward(count, x.data(), dy.data(), plain.data());
  check_close(fast, plain, 1e-6, "gelu dx");
  fs::tanh_backward(count, y.data(), dy.data(), fast.data());
  fs::ref::tanh_backward(count, y.data(), dy.data(), plain.data());
  check_close(fast, plain, 1e-6, "tanh dx");
}

BOOST_AUTO_TEST_CASE(relu_derivative_at_zero_is_zero) {
  const std::vector<float> x = {-1.0f, 0.0f, -0.0f, 2.0f, std::nanf("")}, dy = {1, 1, 1, 1, 1};
  const std::vector<float> expected = {0, 0, 0, 1, 0};
  std::vector<float> fast(5), plain(5);
  fs::relu_backward(5, x.data(), dy.data(), fast.data());
  fs::ref::relu_backward(5, x.data(), dy.data(), plain.data());
  BOOST_TEST(fast == expected, boost::test_tools::per_element());
  BOOST_TEST(plain == expected, boost::test_tools::per_element());
  // gelu'(0) = Phi(0) = 1/2; tanh'(0) = 1.
  const float zero = 0.0f, one = 1.0f;
  float d = 0;
  fs::gelu_backward(1, &zero, &one, &d);
  BOOST_TEST(d == 0.5f);
  fs::tanh_backward(1, &zero, &one, &d);
  BOOST_TEST(d == 1.0f);
}

BOOST_AUTO_TEST_CASE(pooling_backward_matches_reference) {
  struct Case {
    Window2d window;
    int64_t n;
  };
  // Stride = kernel, overlapping windows (stride < kernel), borders no window covers, and gaps
  // (stride > kernel).
  const Case cases[] = {{Window2d{2, 6, 6, 2, 2, 2, 0}, 3},
                        {Window2d{3, 7, 9, 3, 3, 2, 0}, 2},
                        {Window2d{1, 7, 7, 2, 2, 2, 0}, 2},
                        {Window2d{2, 8, 8, 2, 2, 3, 0}, 2},
                        {Window2d{1, 5, 4, 3, 3, 1, 0}, 1}};
  uint32_t seed = 500;
  for (const Case& c : cases) {
    const Window2d& w = c.window;
    const int64_t in_count = c.n * w.channels * w.height * w.width;
    const int64_t out_count = c.n * w.channels * w.out_height() * w.out_width();
    // Values on a coarse grid, so windows hold ties.
    auto x = random_values(in_count, seed++, -2.0f, 2.0f);
    for (float& v : x) v = std::round(v);
    const auto dy = random_values(out_count, seed++);
    std::vector<float> fast(static_cast<size_t>(in_count), std::nanf("")), plain(fast.size());
    fs::maxpool2d_backward(c.n, w, x.data(), dy.data(), fast.data());
    fs::ref::maxpool2d_backward(c.n, w, x.data(), dy.data(), plain.data());
    check_close(fast, plain, 1e-6, "maxpool2d dx");
    std::fill(fast.begin(), fast.end(), std::nanf(""));
    fs::avgpool2d_backward(c.n, w, dy.data(), fast.data());
    fs::ref::avgpool2d_backward(c.n, w, dy.data(), plain.data());
    check_close(fast, plain, 1e-6, "avgpool2d dx");
  }
}

BOOST_AUTO_TEST_CASE(maxpool_gradient_goes_to_the_first_maximum) {
  // One 2x2 window per case, stride 2: ties go to the first maximal element (row by row), a
  // NaN wins (the first one), an all -inf window sends it to its first element.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  struct Case {
    std::vector<float> x;
    size_t chosen;
  };
  const Case cases[] = {{{1, 3, 3, 2}, 1},
                        {{3, 3, 3, 3}, 0},
                        {{1, 2, 5, 5}, 2},
                        {{1, nan, nan, 5}, 1},
                        {{-inf, -inf, -inf, -inf}, 0}};
  const Window2d w{1, 2, 2, 2, 2, 2, 0};
  for (const Case& c : cases) {
    std::vector<float> expected(4, 0.0f), fast(4), plain(4);
    expected[c.chosen] = 0.75f;
    const float dy = 0.75f;
    fs::maxpool2d_backward(1, w, c.x.data(), &dy, fast.data());
    fs::ref::maxpool2d_backward(1, w, c.x.data(), &dy, plain.data());
    BOOST_TEST(fast == expected, boost::test_tools::per_element());
    BOOST_TEST(plain == expected, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(softmax_backward_matches_reference) {
  const int64_t n = 9, features = 13;
  std::vector<float> y = random_values(n * features, 600, -3.0f, 3.0f), logy = y;
  fs::softmax_forward(n, features, y.data());
  fs::log_softmax_forward(n, features, logy.data());
  const auto dy = random_values(n * features, 601);
  std::vector<float> fast(static_cast<size_t>(n * features)), plain(fast.size());
  fs::softmax_backward(n, features, y.data(), dy.data(), fast.data());
  fs::ref::softmax_backward(n, features, y.data(), dy.data(), plain.data());
  check_close(fast, plain, 1e-6, "softmax dx");
  fs::log_softmax_backward(n, features, logy.data(), dy.data(), fast.data());
  fs::ref::log_softmax_backward(n, features, logy.data(), dy.data(), plain.data());
  check_close(fast, plain, 1e-6, "log_softmax dx");
}

BOOST_AUTO_TEST_CASE(input_statistics_match_reference) {
  const auto x = random_values(37 * 11, 700);
  std::vector<double> fast(11, 0.5), plain(11, 0.5);  // accumulate onto the same start
  fs::column_sum_squares(37, 11, x.data(), fast.data());
  fs::ref::column_sum_squares(37, 11, x.data(), plain.data());
  check_close(fast, plain, 1e-12, "column sums of squares");

  uint32_t seed = 701;
  for (const Window2d& w : {Window2d{3, 7, 6, 3, 2, 2, 1}, Window2d{2, 8, 8, 5, 5, 3, 2},
                            Window2d{2, 4, 4, 4, 4, 1, 3}}) {
    const int64_t n = 3, patch = w.channels * w.kernel_h * w.kernel_w;
    const auto image = random_values(n * w.channels * w.height * w.width, seed++);
    std::vector<double> f(static_cast<size_t>(patch), 0.25), r(f);
    fs::conv2d_column_sum_squares(n, w, image.data(), f.data());
    fs::ref::conv2d_column_sum_squares(n, w, image.data(), r.data());
    check_close(f, r, 1e-12, "conv2d column sums of squares");
  }

  const int64_t n = 4, channels = 3, spatial = 10;
  const auto values = random_values(n * channels * spatial, seed++);
  const auto mean = random_values(channels, seed++),
             var = random_values(channels, seed++, 0.2f, 2.0f);
  std::vector<double> f(channels, 0.0), r(channels, 0.0);
  fs::batchnorm_normalised_sum_squares(n, channels, spatial, values.data(), mean.data(), var.data(),
                                       1e-5, f.data());
  fs::ref::batchnorm_normalised_sum_squares(n, channels, spatial, values.data(), mean.data(),
                                            var.data(), 1e-5, r.data());
  check_close(f, r, 1e-6, "batchnorm normalised sums of squares");
}

// --- (2) whole networks against finite differences of a double-precision forward pass

BOOST_AUTO_TEST_CASE(mlp_gradient_matches_finite_differences) {
  const TinyModel m = mlp_model();
  const int64_t n = 5;
  check_gradient(m, random_values(n * 6, 1000), random_labels(n, 4, 1001), 0);
}

BOOST_AUTO_TEST_CASE(cnn_gradient_matches_finite_differences) {
  const TinyModel m = cnn_model();
  const int64_t n = 4;
  check_gradient(m, random_values(n * 72, 1100), random_labels(n, 4, 1101), 0);
}

BOOST_AUTO_TEST_CASE(smooth_network_gradient_matches_finite_differences) {
  const TinyModel m = smooth_model();
  const int64_t n = 5;
  check_gradient(m, random_values(n * 49, 1200, -2.0f, 2.0f), random_labels(n, 3, 1201), 0);
}

BOOST_AUTO_TEST_CASE(every_layer_kind_gradient_matches_finite_differences) {
  const TinyModel m = every_kind_model();
  BOOST_TEST(m.network.scored_layers == 13u);  // the trailing log_softmax is not scored
  const int64_t n = 6;
  check_gradient(m, random_values(n * 98, 1300, -2.0f, 2.0f), random_labels(n, 3, 1301), 0);
}

BOOST_AUTO_TEST_CASE(gradient_outputs_are_independent_and_overwritten) {
  const TinyModel m = cnn_model();
  const int64_t n = 4;
  const auto inputs = random_values(n * 72, 1100);
  const auto labels = random_labels(n, 4, 1101);
  // Each output alone, both, or neither: the same values, and every entry overwritten.
  const Pass both = run_pass(m, inputs, labels, true, true, std::nanf(""));
  const Pass grad_only = run_pass(m, inputs, labels, true, false, 7.0f);
  const Pass norm_only = run_pass(m, inputs, labels, false, true, 7.0f);
  const Pass neither = run_pass(m, inputs, labels, false, false, 7.0f);
  BOOST_TEST(both.value == grad_only.value);
  BOOST_TEST(both.value == norm_only.value);
  BOOST_TEST(both.value == neither.value);
  BOOST_TEST(
      std::memcmp(both.grad.data(), grad_only.grad.data(), both.grad.size() * sizeof(float)) == 0);
  BOOST_TEST(
      std::memcmp(both.norm.data(), norm_only.norm.data(), both.norm.size() * sizeof(float)) == 0);
}

BOOST_AUTO_TEST_CASE(chunked_passes_match_one_pass_and_repeat_exactly) {
  const TinyModel m = cnn_model();
  const int64_t n = 5;
  const auto inputs = random_values(n * 72, 1400);
  const auto labels = random_labels(n, 4, 1401);
  const size_t count = m.model.values.size();
  std::vector<float> grad(count), norm(count), grad2(count), norm2(count), grad3(count),
      norm3(count);
  int calls = 0;
  const double whole = fs::sequential_gradient(m.network, m.model, inputs.data(), n,
                                               mean_nll_objective(labels, &calls),
                                               outputs(grad.data(), norm.data()));
  BOOST_TEST(calls == 1);
  BOOST_TEST(fs::sequential_gradient_chunk(m.network, n) == n);
  // A budget of 2 examples: chunks of 2, 2 and 1; the objective still sees all 5 rows once.
  // Bytes per example (header formula): kept outputs of conv, batchnorm, relu (3 x 108) and
  // maxpool (27); two gradients of the largest activation (108); im2col 36 x 18; conv output 108.
  const int64_t per_example = 4 * (3 * 108 + 27) + 4 * 2 * 108 + 4 * 36 * 18 + 4 * 108;
  const int64_t budget = 2 * per_example + per_example / 2;
  BOOST_TEST(fs::sequential_gradient_chunk(m.network, n, budget) == 2);
  calls = 0;
  const double chunked = fs::sequential_gradient(m.network, m.model, inputs.data(), n,
                                                 mean_nll_objective(labels, &calls),
                                                 outputs(grad2.data(), norm2.data()), budget);
  BOOST_TEST(calls == 1);
  BOOST_TEST(chunked == whole, boost::test_tools::tolerance(1e-6));
  check_close(grad2, grad, 1e-5, "chunked gradient");
  check_close(norm2, norm, 1e-6, "chunked input norms");
  // The same every run, also through one workspace used twice (room for more examples).
  fs::SequentialGradientWorkspace workspace(m.network, n + 3, budget);
  BOOST_TEST(workspace.chunk() == 2);
  for (int run = 0; run < 2; ++run) {
    fs::sequential_gradient(m.network, m.model, inputs.data(), n, mean_nll_objective(labels),
                            outputs(grad3.data(), norm3.data()), workspace);
    BOOST_TEST(std::memcmp(grad2.data(), grad3.data(), count * sizeof(float)) == 0,
               "gradient not the same in run " << run);
    BOOST_TEST(std::memcmp(norm2.data(), norm3.data(), count * sizeof(float)) == 0,
               "input norms not the same in run " << run);
  }
}

BOOST_AUTO_TEST_CASE(gradient_flops_count_the_gemms) {
  const TinyModel m = mlp_model();
  // forward 2(6*5 + 5*4) = 100, dW 100, dx of the second layer only 2*5*4 = 40, per example.
  BOOST_TEST(fs::sequential_gradient_flops(m.network, 10) == 2400.0);
  // Chunked: the forward pass runs twice.
  BOOST_TEST(fs::sequential_gradient_flops(m.network, 10, 1) == 3400.0);
  const TinyModel c = cnn_model();
  // conv: 2 * 36 positions * 3 out * 18 patch = 3888; linear 2 * 27 * 4 = 216; dx of linear only.
  BOOST_TEST(fs::sequential_gradient_flops(c.network, 1) == 3888.0 * 2 + 216.0 * 3);
}

// --- (3) input norms against a direct computation

BOOST_AUTO_TEST_CASE(input_norms_match_direct_computation) {
  struct Named {
    const char* name;
    TinyModel model;
    int64_t n;
  };
  const Named models[] = {{"mlp", mlp_model(), 5},
                          {"cnn", cnn_model(), 4},
                          {"smooth", smooth_model(), 3},
                          {"every kind", every_kind_model(), 6}};
  uint32_t seed = 1500;
  for (const Named& named : models) {
    const TinyModel& m = named.model;
    const auto inputs = random_values(named.n * m.network.input_size, seed++);
    const auto labels = random_labels(named.n, m.spec.classes, seed++);
    std::vector<float> norm(m.model.values.size(), std::nanf(""));
    fs::sequential_gradient(m.network, m.model, inputs.data(), named.n, mean_nll_objective(labels),
                            outputs(nullptr, norm.data()));
    check_close(norm, direct_input_norms(m, inputs, named.n), 1e-5,
                std::string(named.name) + " input norms");
  }
  // Spot checks of the rules: a linear bias sqrt(n); batch-norm running statistics 0; the
  // tensor used twice (sq.w) sums both layers' squares.
  const TinyModel& every = models[3].model;
  std::vector<float> norm(every.model.values.size());
  const auto inputs = random_values(6 * 98, 1600);
  const auto labels = random_labels(6, 3, 1601);
  fs::sequential_gradient(every.network, every.model, inputs.data(), 6, mean_nll_objective(labels),
                          outputs(nullptr, norm.data()));
  BOOST_TEST(norm[static_cast<size_t>(every.model.tensor("fc1.b").offset)] == std::sqrt(6.0f),
             boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(norm[static_cast<size_t>(every.model.tensor("sq.b").offset)] == std::sqrt(12.0f),
             boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(norm[static_cast<size_t>(every.model.tensor("bn.m").offset)] == 0.0f);
  BOOST_TEST(norm[static_cast<size_t>(every.model.tensor("bn.v").offset + 4)] == 0.0f);
}

// --- (4) real classifiers at sampled entries

BOOST_AUTO_TEST_CASE(digits_classifier_gradient_matches_finite_differences) {
  // The built-in default model (jobs/default, in the repository): 64 -> 64 ReLU -> 10 on the
  // 450 held-out digits images.
  const std::filesystem::path dir = source_dir() / "jobs" / "default";
  TinyModel m;
  m.spec = fs::read_sequential_spec((dir / "digits-mlp.json").string());
  m.model = fs::load_sequential_model(m.spec);
  m.network = fs::build_network(m.spec, m.model);
  fs::InputScaling scaling;
  scaling.divisor = 16;
  const fs::ClassifierData data =
      fs::read_classifier_data(m.spec, (dir / "digits-test-images.npy").string(),
                               (dir / "digits-test-labels.npy").string(), 0, scaling, "digits");
  BOOST_TEST_REQUIRE(data.examples == 450);
  check_gradient(m, data.inputs, data.labels, 20);

  // Speed of one gradient pass against one forward pass of the scored layers (best of 5 each).
  const int64_t n = data.examples;
  fs::SequentialWorkspace workspace(m.network, n);
  std::vector<float> logits(static_cast<size_t>(n * m.network.classes)),
      grad(m.model.values.size());
  auto best_of = [](int repeats, auto&& run) {
    double best = std::numeric_limits<double>::infinity();
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      run();
      best = std::min(
          best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return best;
  };
  const double forward = best_of(5, [&] {
    fs::sequential_forward(m.network, m.model, data.inputs.data(), n, m.network.scored_layers,
                           workspace, logits.data());
  });
  const double fresh = best_of(5, [&] {
    fs::sequential_gradient(m.network, m.model, data.inputs.data(), n,
                            mean_nll_objective(data.labels), outputs(grad.data(), nullptr));
  });
  const fs::LogitObjective objective = mean_nll_objective(data.labels);
  std::vector<float> dlogits(logits.size());  // (n, classes)
  const double objective_only =
      best_of(5, [&] { objective(logits.data(), n, m.network.classes, dlogits.data()); });
  fs::SequentialGradientWorkspace gradient_workspace(m.network, n);
  const double backward = best_of(5, [&] {
    fs::sequential_gradient(m.network, m.model, data.inputs.data(), n,
                            mean_nll_objective(data.labels), outputs(grad.data(), nullptr),
                            gradient_workspace);
  });
  BOOST_TEST_MESSAGE("digits, 450 examples, best of 5: forward "
                     << forward * 1e6 << " us; gradient with a reused workspace " << backward * 1e6
                     << " us (ratio " << backward / forward << "; the objective alone "
                     << objective_only * 1e6 << " us), with a fresh one " << fresh * 1e6
                     << " us; GEMM FLOPs ratio "
                     << fs::sequential_gradient_flops(m.network, n) / m.network.forward_flops(n));
}

BOOST_AUTO_TEST_CASE(mnist_cnn_gradient_matches_finite_differences,
                     *boost::unit_test::precondition(fs::test::needs_shared{})) {
  // Real images (the first 64 MNIST test images in ../shared) through a random-weight
  // convolutional network at realistic shapes: conv2d(1 -> 4, 3x3, padding 1) + batchnorm +
  // relu + maxpool 2 + conv2d(4 -> 6, 3x3, stride 2) + gelu + flatten + linear(216 -> 10).
  fs::SequentialSpec shape_only;
  shape_only.input_shape = {1, 28, 28};
  shape_only.classes = 10;
  fs::InputScaling scaling;
  scaling.divisor = 255;
  const fs::ClassifierData data = fs::read_classifier_data(
      shape_only, fs::test::shared_file("data/mnist/t10k-images-idx3-ubyte.gz"),
      fs::test::shared_file("data/mnist/t10k-labels-idx1-ubyte.gz"), 64, scaling, "mnist");
  TinyModel m = make_model(
      {1, 28, 28}, 10,
      {conv("c1.w", "c1.b", 1, 1), batchnorm("bn", true, 1e-5), layer(LayerKind::relu),
       pool(LayerKind::maxpool2d, 2, 2), conv("c2.w", "c2.b", 2, 0), layer(LayerKind::gelu),
       layer(LayerKind::flatten), layer(LayerKind::linear, "fc.w", "fc.b")},
      {{"c1.w", {4, 1, 3, 3}, {}},
       {"c1.b", {4}, {}},
       {"bn.g", {4}, {}},
       {"bn.b", {4}, {}},
       {"bn.m", {4}, {}},
       {"bn.v", {4}, {}},
       {"c2.w", {6, 4, 3, 3}, {}},
       {"c2.b", {6}, {}},
       {"fc.w", {10, 216}, {}},
       {"fc.b", {10}, {}}},
      1700);
  check_gradient(m, data.inputs, data.labels, 20);
}
