#define BOOST_TEST_MODULE sequential
// Sequential classifiers: every optimised layer kernel against its plain twin (ref::) on random
// data over several geometries, the twins against hand-computed values, NaN propagation, the
// whole forward pass against the twins composed by hand (also in chunks), the JSON description
// with every kind of bad input, and the classifier evaluator's metrics against values computed
// here from the reference logits.
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/eval/classifier.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/sequential.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;
using fs::Window2d;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};

using fracsweep::test::TempDir;

std::vector<float> random_values(size_t count, uint32_t seed, float low = -1.0f,
                                 float high = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(count);  // (count)
  for (float& v : values) v = distribution(generator);
  return values;
}

// |a - b| <= tolerance * (1 + |b|) elementwise; NaN must match NaN.
void check_close(const std::vector<float>& actual, const std::vector<float>& expected,
                 double tolerance) {
  BOOST_TEST_REQUIRE(actual.size() == expected.size());
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::isnan(expected[i])) {
      BOOST_TEST(std::isnan(actual[i]), "element " << i << " should be NaN");
      continue;
    }
    worst = std::max(worst, std::fabs(static_cast<double>(actual[i]) - expected[i]) /
                                (1 + std::fabs(expected[i])));
  }
  BOOST_TEST(worst <= tolerance, "largest relative difference " << worst);
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  std::string dtype = "F32";  // the header's claim; the bytes are always the float32 values
};

// safetensors: 8-byte little-endian header length, JSON header, little-endian F32 data.
void write_safetensors(const std::string& path, const std::vector<Tensor>& tensors) {
  std::string header = "{";
  std::string data;
  for (const Tensor& t : tensors) {
    std::string shape;
    for (int64_t d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * sizeof(float));
    header += (header.size() > 1 ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" +
              t.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(begin) +
              "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((length >> (8 * i)) & 0xFF));
  out << header << data;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

// --- the reference twins against hand-computed values

BOOST_AUTO_TEST_CASE(reference_twins_match_hand_computed_values) {
  // linear: [1 2] * [[1 0] [1 -1] [0.5 2]]^T + [0 1 -1] = [1, 0, 3.5]
  std::vector<float> y(3);
  fs::ref::linear_forward(1, 2, 3, std::vector<float>{1, 2}.data(),
                          std::vector<float>{1, 0, 1, -1, 0.5f, 2}.data(),
                          std::vector<float>{0, 1, -1}.data(), y.data());
  BOOST_TEST(y == (std::vector<float>{1, 0, 3.5f}), boost::test_tools::per_element());

  // conv2d: 3x3 input 1..9, kernel [[1 0] [0 -1]]: each output is x(i,j) - x(i+1,j+1) = -4;
  // with padding 1 the top-left output sees only x(0,0) under the -1: -1.
  const std::vector<float> image = {1, 2, 3, 4, 5, 6, 7, 8, 9}, kernel = {1, 0, 0, -1};
  std::vector<float> conv(4);
  fs::ref::conv2d_forward(1, Window2d{1, 3, 3, 2, 2, 1, 0}, 1, image.data(), kernel.data(), nullptr,
                          conv.data());
  BOOST_TEST(conv == (std::vector<float>{-4, -4, -4, -4}), boost::test_tools::per_element());
  std::vector<float> padded(16);
  fs::ref::conv2d_forward(1, Window2d{1, 3, 3, 2, 2, 1, 1}, 1, image.data(), kernel.data(), nullptr,
                          padded.data());
  BOOST_TEST(padded[0] == -1.0f);
  BOOST_TEST(padded[15] == 9.0f);  // bottom-right window sees only x(2,2) under the +1

  // batchnorm: (3 - 1) / sqrt(3 + 1) * 2 + 0.5 = 2.5
  std::vector<float> x = {3};
  const float gamma = 2, beta = 0.5f, mean = 1, var = 3;
  fs::ref::batchnorm_forward(1, 1, 1, &gamma, &beta, &mean, &var, 1.0, x.data());
  BOOST_TEST(x[0] == 2.5f);

  // pooling over a 4x4 plane 0..15 with 2x2 windows, stride 2
  std::vector<float> plane(16);
  for (int i = 0; i < 16; ++i) plane[static_cast<size_t>(i)] = static_cast<float>(i);
  std::vector<float> pooled(4);
  fs::ref::maxpool2d_forward(1, Window2d{1, 4, 4, 2, 2, 2, 0}, plane.data(), pooled.data());
  BOOST_TEST(pooled == (std::vector<float>{5, 7, 13, 15}), boost::test_tools::per_element());
  fs::ref::avgpool2d_forward(1, Window2d{1, 4, 4, 2, 2, 2, 0}, plane.data(), pooled.data());
  BOOST_TEST(pooled == (std::vector<float>{2.5f, 4.5f, 10.5f, 12.5f}),
             boost::test_tools::per_element());

  // gelu(1) = Phi(1) = 0.841344746..., tanh(0.5) = 0.462117157...
  std::vector<float> g = {1.0f, -1.0f, 0.5f};
  fs::ref::gelu_forward(2, g.data());
  fs::ref::tanh_forward(1, g.data() + 2);
  BOOST_TEST(g[0] == 0.8413447460685429f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(g[1] == -0.15865525393145707f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(g[2] == 0.46211715726000974f, boost::test_tools::tolerance(1e-6f));

  // softmax of (0, ln 3) = (1/4, 3/4); log_softmax = (ln 1/4, ln 3/4)
  std::vector<float> s = {0, std::log(3.0f)}, ls = s;
  fs::ref::softmax_forward(1, 2, s.data());
  fs::ref::log_softmax_forward(1, 2, ls.data());
  BOOST_TEST(s[0] == 0.25f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s[1] == 0.75f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(ls[0] == std::log(0.25f), boost::test_tools::tolerance(1e-6f));
}

// --- optimised kernels against their twins

BOOST_AUTO_TEST_CASE(linear_matches_reference) {
  for (const bool with_bias : {true, false}) {
    const int64_t n = 37, in = 53, out = 19;
    const auto x = random_values(n * in, 1), w = random_values(out * in, 2),
               b = random_values(out, 3);
    std::vector<float> fast(n * out), plain(n * out);
    fs::linear_forward(n, in, out, x.data(), w.data(), with_bias ? b.data() : nullptr, fast.data());
    fs::ref::linear_forward(n, in, out, x.data(), w.data(), with_bias ? b.data() : nullptr,
                            plain.data());
    check_close(fast, plain, 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(conv2d_matches_reference) {
  struct Case {
    Window2d window;
    int64_t out_channels;
    bool bias;
  };
  const Case cases[] = {
      {{3, 9, 7, 3, 3, 1, 1}, 5, true},   // same-size 3x3
      {{2, 8, 8, 3, 2, 2, 0}, 4, false},  // rectangular kernel, stride 2
      {{1, 5, 5, 5, 5, 1, 2}, 2, true},   // kernel = input, padding 2
      {{4, 6, 10, 1, 1, 1, 0}, 3, true},  // 1x1 convolution
      {{2, 7, 7, 3, 3, 3, 1}, 3, true},   // stride 3 with padding
  };
  uint32_t seed = 10;
  for (const Case& c : cases) {
    const Window2d& w = c.window;
    BOOST_TEST_CONTEXT("C=" << w.channels << " H=" << w.height << " W=" << w.width
                            << " K=" << w.kernel_h << "x" << w.kernel_w << " s=" << w.stride
                            << " p=" << w.padding) {
      const int64_t n = 3, positions = w.out_height() * w.out_width();
      const auto x = random_values(n * w.channels * w.height * w.width, ++seed);
      const auto weight =
          random_values(c.out_channels * w.channels * w.kernel_h * w.kernel_w, ++seed);
      const auto bias = random_values(c.out_channels, ++seed);
      std::vector<float> columns(n * positions * w.channels * w.kernel_h * w.kernel_w),
          gemm_out(n * positions * c.out_channels);
      std::vector<float> fast(n * c.out_channels * positions), plain(fast.size());
      fs::conv2d_forward(n, w, c.out_channels, x.data(), weight.data(),
                         c.bias ? bias.data() : nullptr, columns.data(), gemm_out.data(),
                         fast.data());
      fs::ref::conv2d_forward(n, w, c.out_channels, x.data(), weight.data(),
                              c.bias ? bias.data() : nullptr, plain.data());
      check_close(fast, plain, 1e-5);
    }
  }
}

BOOST_AUTO_TEST_CASE(batchnorm_matches_reference) {
  const int64_t n = 3, channels = 4, spatial = 6;
  const auto x = random_values(n * channels * spatial, 20), gamma = random_values(channels, 21),
             beta = random_values(channels, 22), mean = random_values(channels, 23),
             var = random_values(channels, 24, 0.1f, 2.0f);
  for (const bool affine : {true, false}) {
    auto fast = x, plain = x;
    fs::batchnorm_forward(n, channels, spatial, affine ? gamma.data() : nullptr,
                          affine ? beta.data() : nullptr, mean.data(), var.data(), 1e-5,
                          fast.data());
    fs::ref::batchnorm_forward(n, channels, spatial, affine ? gamma.data() : nullptr,
                               affine ? beta.data() : nullptr, mean.data(), var.data(), 1e-5,
                               plain.data());
    check_close(fast, plain, 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(activations_match_reference_and_keep_nan) {
  auto x = random_values(200, 30, -6.0f, 6.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  x.insert(x.end(), {nan, inf, -inf, 0.0f, -0.0f});
  auto relu = x, relu_plain = x, gelu = x, gelu_plain = x, tanh = x, tanh_plain = x;
  const auto n = static_cast<int64_t>(x.size());
  fs::relu_forward(n, relu.data());
  fs::ref::relu_forward(n, relu_plain.data());
  fs::gelu_forward(n - 2, gelu.data());  // gelu(+-inf) involves inf * 0 in the erf form: skip
  fs::ref::gelu_forward(n - 2, gelu_plain.data());
  fs::tanh_forward(n, tanh.data());
  fs::ref::tanh_forward(n, tanh_plain.data());
  check_close(relu, relu_plain, 0);
  check_close(gelu, gelu_plain, 1e-6);
  check_close(tanh, tanh_plain, 1e-6);
  BOOST_TEST(std::isnan(relu[200]));  // a NaN from a perturbed weight must reach the logits
  BOOST_TEST(relu[201] == inf);
  BOOST_TEST(relu[202] == 0.0f);
}

BOOST_AUTO_TEST_CASE(pooling_matches_reference) {
  const Window2d windows[] = {{3, 8, 8, 2, 2, 2, 0}, {2, 7, 9, 3, 3, 1, 0}, {1, 9, 7, 3, 3, 2, 0}};
  uint32_t seed = 40;
  for (const Window2d& w : windows) {
    const int64_t n = 2, out = n * w.channels * w.out_height() * w.out_width();
    auto x = random_values(n * w.channels * w.height * w.width, ++seed);
    x[5] = std::numeric_limits<float>::quiet_NaN();  // propagates through max pooling like PyTorch
    std::vector<float> fast(out), plain(out);
    fs::maxpool2d_forward(n, w, x.data(), fast.data());
    fs::ref::maxpool2d_forward(n, w, x.data(), plain.data());
    check_close(fast, plain, 0);
    BOOST_TEST(std::count_if(fast.begin(), fast.end(), [](float v) { return std::isnan(v); }) >= 1);
    fs::avgpool2d_forward(n, w, x.data(), fast.data());
    fs::ref::avgpool2d_forward(n, w, x.data(), plain.data());
    check_close(fast, plain, 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(softmax_matches_reference) {
  const int64_t n = 5, features = 13;
  const auto x = random_values(n * features, 50, -20.0f, 20.0f);
  auto soft = x, soft_plain = x, log_soft = x, log_soft_plain = x;
  fs::softmax_forward(n, features, soft.data());
  fs::ref::softmax_forward(n, features, soft_plain.data());
  fs::log_softmax_forward(n, features, log_soft.data());
  fs::ref::log_softmax_forward(n, features, log_soft_plain.data());
  check_close(soft, soft_plain, 1e-6);
  check_close(log_soft, log_soft_plain, 1e-6);
}

// --- a whole network: JSON + safetensors -> model -> forward, against the twins composed here

namespace {

// conv(2->4, 3x3, pad 1) -> batchnorm -> relu -> maxpool 2 -> conv(4->3, 2x2, stride 2) -> gelu
// -> avgpool 1 -> flatten -> dropout -> linear(12->6) -> tanh -> batchnorm1d -> linear(6->5)
// -> log_softmax, on (2, 8, 8) inputs.
const char* network_json = R"({
  "format": "fracsweep-sequential/1",
  "weights": "net.safetensors",
  "input": {"shape": [2, 8, 8]},
  "classes": 5,
  "layers": [
    {"type": "conv2d", "weight": "c1.w", "bias": "c1.b", "padding": 1},
    {"type": "batchnorm", "weight": "bn.g", "bias": "bn.b", "running_mean": "bn.m", "running_var": "bn.v", "eps": 0.001},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "weight": "c2.w", "stride": 2},
    {"type": "gelu"},
    {"type": "avgpool2d", "kernel": 1},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.5},
    {"type": "linear", "weight": "fc1.w", "bias": "fc1.b"},
    {"type": "tanh"},
    {"type": "batchnorm", "running_mean": "bn1d.m", "running_var": "bn1d.v"},
    {"type": "linear", "weight": "fc2.w", "bias": "fc2.b"},
    {"type": "log_softmax"}
  ]
})";

std::vector<Tensor> network_tensors() {
  return {
      {"c1.w", {4, 2, 3, 3}, random_values(72, 60)},
      {"c1.b", {4}, random_values(4, 61)},
      {"bn.g", {4}, random_values(4, 62)},
      {"bn.b", {4}, random_values(4, 63)},
      {"bn.m", {4}, random_values(4, 64)},
      {"bn.v", {4}, random_values(4, 65, 0.5f, 2.0f)},
      {"c2.w", {3, 4, 2, 2}, random_values(48, 66)},
      {"fc1.w", {6, 12}, random_values(72, 67)},
      {"fc1.b", {6}, random_values(6, 68)},
      {"bn1d.m", {6}, random_values(6, 69)},
      {"bn1d.v", {6}, random_values(6, 70, 0.5f, 2.0f)},
      {"fc2.w", {5, 6}, random_values(30, 71)},
      {"fc2.b", {5}, random_values(5, 72)},
      {"unused", {3}, {1, 2, 3}},
  };
}

// The same network composed from the twins.
std::vector<float> reference_forward(const std::map<std::string, std::vector<float>>& t,
                                     std::vector<float> x, int64_t n, bool final_log_softmax) {
  const Window2d conv1{2, 8, 8, 3, 3, 1, 1}, pool{4, 8, 8, 2, 2, 2, 0}, conv2{4, 4, 4, 2, 2, 2, 0};
  std::vector<float> a(n * 4 * 64), b(n * 4 * 16), c(n * 12), d(n * 6), e(n * 5);
  fs::ref::conv2d_forward(n, conv1, 4, x.data(), t.at("c1.w").data(), t.at("c1.b").data(),
                          a.data());
  fs::ref::batchnorm_forward(n, 4, 64, t.at("bn.g").data(), t.at("bn.b").data(),
                             t.at("bn.m").data(), t.at("bn.v").data(), 0.001, a.data());
  fs::ref::relu_forward(n * 256, a.data());
  fs::ref::maxpool2d_forward(n, pool, a.data(), b.data());
  fs::ref::conv2d_forward(n, conv2, 3, b.data(), t.at("c2.w").data(), nullptr, c.data());
  fs::ref::gelu_forward(n * 12, c.data());
  fs::ref::linear_forward(n, 12, 6, c.data(), t.at("fc1.w").data(), t.at("fc1.b").data(), d.data());
  fs::ref::tanh_forward(n * 6, d.data());
  fs::ref::batchnorm_forward(n, 6, 1, nullptr, nullptr, t.at("bn1d.m").data(),
                             t.at("bn1d.v").data(), 1e-5, d.data());
  fs::ref::linear_forward(n, 6, 5, d.data(), t.at("fc2.w").data(), t.at("fc2.b").data(), e.data());
  if (final_log_softmax) fs::ref::log_softmax_forward(n, 5, e.data());
  return e;
}

struct WrittenNetwork {
  TempDir dir;
  std::string json;
  std::map<std::string, std::vector<float>> tensors;
  WrittenNetwork(const std::string& json_text = network_json,
                 const std::vector<Tensor>& list = network_tensors()) {
    json = dir.file("net.json");
    write_text(json, json_text);
    write_safetensors(dir.file("net.safetensors"), list);
    for (const Tensor& t : list) tensors[t.name] = t.values;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(network_forward_matches_composed_twins) {
  const WrittenNetwork written;
  const fs::SequentialSpec spec = fs::read_sequential_spec(written.json);
  const fs::Model model = fs::load_sequential_model(spec);
  BOOST_TEST(model.format == "sequential");
  BOOST_TEST(model.tensors.size() == 13u);  // "unused" is not loaded
  BOOST_TEST(model.tensors.front().name == "c1.w");
  BOOST_TEST(model.tensors.back().name == "fc2.b");
  BOOST_TEST(model.n_values() == 72 + 4 * 5 + 48 + 72 + 6 + 6 + 6 + 30 + 5);
  BOOST_TEST(model.n_buffer_values() == 4 + 4 + 6 + 6);  // bn.m, bn.v, bn1d.m, bn1d.v
  BOOST_TEST(model.n_parameters() == model.n_values() - model.n_buffer_values());
  const fs::SequentialNetwork network = fs::build_network(spec, model);
  BOOST_TEST(network.scored_layers == 13u);  // the trailing log_softmax is left to the metrics
  BOOST_TEST(network.layers[4].out_shape == (std::vector<int64_t>{3, 2, 2}));

  const int64_t n = 7;
  const auto inputs = random_values(n * 128, 80);
  const auto expected = reference_forward(written.tensors, inputs, n, true);
  std::vector<float> full(n * 5), logits(n * 5), chunked(n * 5);
  fs::SequentialWorkspace workspace(network, n);
  BOOST_TEST(workspace.max_examples() == n);
  fs::sequential_forward(network, model, inputs.data(), n, network.layers.size(), workspace,
                         full.data());
  check_close(full, expected, 2e-5);
  fs::sequential_forward(network, model, inputs.data(), n, network.scored_layers, workspace,
                         logits.data());
  check_close(logits, reference_forward(written.tensors, inputs, n, false), 2e-5);

  // A workspace too small for all examples runs the same computation in chunks.
  fs::SequentialWorkspace small(network, n, 4096);
  BOOST_TEST(small.max_examples() < n);
  fs::sequential_forward(network, model, inputs.data(), n, network.scored_layers, small,
                         chunked.data());
  BOOST_TEST(std::memcmp(chunked.data(), logits.data(), logits.size() * sizeof(float)) == 0);
}

BOOST_AUTO_TEST_CASE(evaluator_scores_against_the_unperturbed_model) {
  const WrittenNetwork written;
  const fs::SequentialSpec spec = fs::read_sequential_spec(written.json);
  fs::Model model = fs::load_sequential_model(spec);
  const int64_t n = 9;
  fs::ClassifierData data;
  data.examples = n;
  data.inputs = random_values(n * 128, 90);
  const auto logits = reference_forward(written.tensors, data.inputs, n, false);
  // Labels: the reference argmax for even examples, (argmax + 1) mod 5 for odd ones.
  double nll = 0;
  for (int64_t e = 0; e < n; ++e) {
    const float* row = logits.data() + e * 5;
    const auto argmax = static_cast<int32_t>(std::max_element(row, row + 5) - row);
    const int32_t label = e % 2 == 0 ? argmax : (argmax + 1) % 5;
    data.labels.push_back(label);
    double sum = 0;
    for (int k = 0; k < 5; ++k) sum += std::exp(static_cast<double>(row[k]));
    nll += std::log(sum) - row[label];
  }
  fs::ClassifierEvaluator evaluator(model, fs::build_network(spec, model), data);
  const fs::TrialMetrics& base = evaluator.baseline().metrics;
  BOOST_TEST(base.positions == n);
  BOOST_TEST(base.accuracy == 5.0 / 9.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(base.mean_nll == nll / 9.0, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(base.top1_agreement == 1.0);
  BOOST_TEST(base.mean_kl < 1e-9);
  BOOST_TEST(base.sdc_rate == 0.0);
  BOOST_TEST(evaluator.forward_flops() == 2.0 * n * (64 * 4 * 18 + 4 * 3 * 16 + 72 + 30));

  // A NaN in the last bias reaches every example's logits: all non-finite, all corrupted.
  const fs::TensorInfo& bias = model.tensor("fc2.b");
  model.values[static_cast<size_t>(bias.offset)] = std::numeric_limits<float>::quiet_NaN();
  const fs::TrialMetrics broken = evaluator.evaluate(model);
  BOOST_TEST(broken.nonfinite_positions == n);
  BOOST_TEST(broken.accuracy == 0.0);
  BOOST_TEST(broken.sdc_rate == 5.0 / 9.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(std::isnan(broken.mean_kl));
}

// --- bad descriptions: one InputError naming the JSON file, the layer and the field

namespace {

void expect_rejected(const std::string& json_text, std::initializer_list<std::string> fragments,
                     const std::vector<Tensor>& tensors = network_tensors()) {
  BOOST_TEST_CONTEXT(json_text) {
    const WrittenNetwork written(json_text, tensors);
    try {
      const fs::SequentialSpec spec = fs::read_sequential_spec(written.json);
      const fs::Model model = fs::load_sequential_model(spec);
      BOOST_ERROR("accepted");
    } catch (const fs::InputError& error) {
      const std::string message = error.what();
      BOOST_TEST(contains(message, written.json), message);
      for (const std::string& fragment : fragments) {
        BOOST_TEST(contains(message, fragment), "'" << fragment << "' not in: " << message);
      }
    }
  }
}

std::string mlp_json(const std::string& layers, const std::string& input = "[12]",
                     const std::string& extra = "") {
  return R"({"format": "fracsweep-sequential/1", "weights": "net.safetensors", "input": {"shape": )" +
         input + R"(}, "classes": 6, "layers": [)" + layers + "]" + extra + "}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(bad_descriptions_are_rejected) {
  const std::string fc1 = R"({"type": "linear", "weight": "fc1.w", "bias": "fc1.b"})";
  expect_rejected(mlp_json(fc1 + R"(, {"type": "swish"})"),
                  {"layers[1]", "unknown layer type 'swish'"});
  expect_rejected(mlp_json(R"({"type": "linear", "weight": "fc9.w"})"),
                  {"layers[0] (linear)", "'weight'", "fc9.w", "is not in"});
  expect_rejected(mlp_json(R"({"type": "linear", "weight": "fc1.w", "bias": "c1.b"})"),
                  {"'bias'", "c1.b", "has shape 4, expected 6"});
  expect_rejected(mlp_json(fc1, "[13]"),
                  {"layers[0] (linear)", "fc1.w", "has shape 6x12, expected 6x13"});
  expect_rejected(mlp_json(fc1, "[1, 3, 4]"), {"layers[0] (linear)", "1-D", "flatten"});
  expect_rejected(mlp_json(R"({"type": "linear"})"), {"layers[0]", "missing key 'weight'"});
  expect_rejected(mlp_json(R"({"type": "linear", "weight": "fc1.w", "stride": 2})"),
                  {"unknown key 'stride'"});
  // (6) does not chain to 12; the bias (6) says fc1.w is (out, in), not a transposed (in, out).
  expect_rejected(
      mlp_json(fc1 +
               R"(, {"type": "relu"}, {"type": "linear", "weight": "fc1.w", "bias": "fc1.b"})"),
      {"layers[2] (linear)", "fc1.w", "has shape 6x12, expected 6x6"});
  expect_rejected(mlp_json(fc1 + R"(, {"type": "relu"}, {"type": "linear", "weight": "fc2.w"})"),
                  {"the last layer produces 5 per example", "(classes) = 6"});
  expect_rejected(mlp_json(fc1 + R"(, {"type": "conv2d", "weight": "c1.w"})"),
                  {"layers[1] (conv2d)", "3-D"});
  expect_rejected(
      mlp_json(R"({"type": "maxpool2d", "kernel": 9}, {"type": "flatten"})", "[2, 8, 8]"),
      {"layers[0] (maxpool2d)", "kernel 9"});
  expect_rejected(mlp_json(R"({"type": "conv2d", "weight": "c1.w", "stride": 0})", "[2, 8, 8]"),
                  {"stride", "1..65536"});
  expect_rejected(mlp_json(fc1, "[12]", R"(, "colour": "red")"), {"unknown key 'colour'"});
  expect_rejected(
      R"({"format": "keras", "weights": "net.safetensors", "input": {"shape": [12]}, "classes": 6, "layers": []})",
      {"'format'", "fracsweep-sequential/1"});
  expect_rejected(mlp_json(""), {"'layers'", "no layers"});
  expect_rejected(mlp_json(R"({"type": "flatten"})", "[2, 3]"), {"input.shape", "2 dimensions"});
  expect_rejected(
      R"({"format": "fracsweep-sequential/1", "weights": "net.safetensors", "input": {"shape": [12]}, "classes": 5, "layers": [)" +
          fc1 + "]}",
      {"the last layer produces 6 per example", "(classes) = 5"});
  expect_rejected(mlp_json(fc1 + ","), {"net.json"});  // JSON syntax
}

BOOST_AUTO_TEST_CASE(batchnorm_running_statistics_are_buffers) {
  const WrittenNetwork written;
  const fs::SequentialSpec spec = fs::read_sequential_spec(written.json);
  const fs::Model model = fs::load_sequential_model(spec);
  for (const fs::TensorInfo& t : model.tensors) {
    // The JSON field decides, not the name: bn.m / bn1d.v are running_mean / running_var.
    const bool buffer =
        t.name == "bn.m" || t.name == "bn.v" || t.name == "bn1d.m" || t.name == "bn1d.v";
    BOOST_TEST(t.is_buffer() == buffer, t.name);
    BOOST_TEST(std::string(fs::tensor_role_name(t.role)) == (buffer ? "buffer" : "parameter"),
               t.name);
  }
  // The plan (what check_sequential_model sees before loading) carries the same roles.
  const fs::NetworkLayout layout =
      fs::plan_network(spec, [&](const std::string& name) -> const std::vector<int64_t>* {
        for (const fs::TensorInfo& t : model.tensors) {
          if (t.name == name) return &t.shape;
        }
        return nullptr;
      });
  BOOST_TEST(layout.tensor_roles.size() == layout.tensor_names.size());
  for (size_t i = 0; i < layout.tensor_names.size(); ++i) {
    BOOST_TEST((layout.tensor_roles[i] == model.tensor(layout.tensor_names[i]).role),
               layout.tensor_names[i]);
  }
  // A tensor read both as a learned parameter and as a running statistic is a parameter.
  const WrittenNetwork shared(mlp_json(
      R"({"type": "linear", "weight": "fc1.w", "bias": "fc1.b"},
         {"type": "batchnorm", "weight": "fc1.b", "running_mean": "fc1.b", "running_var": "bn1d.v"})"));
  const fs::Model both = fs::load_sequential_model(fs::read_sequential_spec(shared.json));
  BOOST_TEST(!both.tensor("fc1.b").is_buffer());
  BOOST_TEST(both.tensor("bn1d.v").is_buffer());
}

BOOST_AUTO_TEST_CASE(transposed_linear_weight_is_named_as_such) {
  std::vector<Tensor> tensors = network_tensors();
  tensors.push_back({"fcT.w", {12, 6}, random_values(72, 73)});  // (in, out), as some exporters
  tensors.push_back({"fcT.b", {6}, random_values(6, 74)});
  const std::string transposed = R"({"type": "linear", "weight": "fcT.w", "bias": "fcT.b"})";
  expect_rejected(mlp_json(transposed),
                  {"layers[0] (linear)", "field 'weight'", "tensor 'fcT.w'", "net.safetensors",
                   "is (in, out) = (12, 6); this layer expects (out, in) = (6, 12): transpose it"},
                  tensors);
  expect_rejected(mlp_json(R"({"type": "linear", "weight": "fcT.w"})"),
                  {"(in, out) = (12, 6)", "transpose it"}, tensors);  // no bias to contradict
  // Transposing would not fit either (input 13): the plain shape message.
  expect_rejected(mlp_json(transposed, "[13]"),
                  {"layers[0] (linear)", "fcT.w", "has shape 12x6, expected 12x13"}, tensors);
}

BOOST_AUTO_TEST_CASE(integer_weights_are_rejected) {
  std::vector<Tensor> tensors = network_tensors();
  for (Tensor& t : tensors) {
    if (t.name == "fc1.w") t.dtype = "I32";
  }
  const WrittenNetwork written(
      mlp_json(R"({"type": "linear", "weight": "fc1.w", "bias": "fc1.b"})"), tensors);
  try {
    fs::load_sequential_model(fs::read_sequential_spec(written.json));
    BOOST_ERROR("accepted I32 weights");
  } catch (const fs::InputError& error) {
    BOOST_TEST(
        contains(
            error.what(),
            "net.safetensors: tensor 'fc1.w', field 'dtype': expected F32, F16 or BF16, found I32"),
        error.what());
  }
}
