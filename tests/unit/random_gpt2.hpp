#pragma once
// Random GPT-2 models for the forward and backward tests: the arrays as Hugging Face stores them
// (Conv1D weights input-major), for writing checkpoints and for references written on the HF
// layout, and the same values as an in-memory fracsweep Model (gpt2.hpp's layout).
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/gpt2.hpp"

namespace fracsweep::test {

// Dimensions of a test GPT-2 (the defaults are test_gpt2.cpp's model).
struct Gpt2Shape {
  int64_t n_embd = 16;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_positions = 32;
  int64_t vocab = 50;
  int64_t n_inner = 64;
};

// HF GPT-2 arrays by HF name (without prefix): shape and values, row-major as HF stores them.
using Gpt2Arrays = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

// Normal random weights: gains around 1, biases around 0, matrices with a spread that shrinks
// like 1/sqrt(fan-in) (the factor is 1 at the default shape).
inline Gpt2Arrays random_gpt2(uint32_t seed, const Gpt2Shape& shape = {}) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Gpt2Arrays arrays;
  auto add = [&](const std::string& name, std::vector<int64_t> dims, float mean, float sigma) {
    int64_t count = 1;
    for (int64_t s : dims) count *= s;
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = mean + sigma * normal(engine);
    arrays[name] = {std::move(dims), std::move(values)};
  };
  const int64_t d = shape.n_embd, inner = shape.n_inner;
  const float spread = std::sqrt(16.0f / static_cast<float>(d));
  const float inner_spread = std::sqrt(64.0f / static_cast<float>(inner));
  add("wte.weight", {shape.vocab, d}, 0, 0.5f * spread);
  add("wpe.weight", {shape.n_positions, d}, 0, 0.2f * spread);
  for (int64_t l = 0; l < shape.n_layer; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    add(h + "ln_1.weight", {d}, 1, 0.1f);
    add(h + "ln_1.bias", {d}, 0, 0.1f);
    add(h + "attn.c_attn.weight", {d, 3 * d}, 0, 0.3f * spread);  // Conv1D: (in, out)
    add(h + "attn.c_attn.bias", {3 * d}, 0, 0.1f);
    add(h + "attn.c_proj.weight", {d, d}, 0, 0.3f * spread);
    add(h + "attn.c_proj.bias", {d}, 0, 0.1f);
    add(h + "ln_2.weight", {d}, 1, 0.1f);
    add(h + "ln_2.bias", {d}, 0, 0.1f);
    add(h + "mlp.c_fc.weight", {d, inner}, 0, 0.3f * spread);
    add(h + "mlp.c_fc.bias", {inner}, 0, 0.1f);
    add(h + "mlp.c_proj.weight", {inner, d}, 0, 0.2f * inner_spread);
    add(h + "mlp.c_proj.bias", {d}, 0, 0.1f);
  }
  add("ln_f.weight", {d}, 1, 0.1f);
  add("ln_f.bias", {d}, 0, 0.1f);
  return arrays;
}

// The model config.json of `shape` describes, as the HF loader reads it (gpt2.hpp).
inline LlamaConfig gpt2_config(const Gpt2Shape& shape) {
  LlamaConfig config;
  config.dim = shape.n_embd;
  config.hidden_dim = shape.n_inner;
  config.n_layers = shape.n_layer;
  config.n_heads = shape.n_head;
  config.n_kv_heads = shape.n_head;
  config.vocab_size = shape.vocab;
  config.seq_len = shape.n_positions;
  config.norm_eps = 1e-5f;
  config.shared_classifier = true;
  return config;
}

// `arrays` as the fracsweep Model load_hf_model builds from them (Conv1D weights transposed to
// (out, in)), without a file.
inline Model gpt2_model(const Gpt2Arrays& arrays, const Gpt2Shape& shape = {}) {
  Model model;
  model.path = "<random gpt2>";
  model.format = "test";
  model.architecture = "gpt2";
  model.config = gpt2_config(shape);
  model.tensors = gpt2_tensor_table(model.config);
  for (const TensorInfo& tensor : model.tensors) {
    const std::string hf_name = tensor.name == "wte" || tensor.name == "wpe"
                                    ? tensor.name + ".weight"
                                : tensor.name.starts_with("layers.") ? "h." + tensor.name.substr(7)
                                                                     : tensor.name;
    const std::vector<float>& values = arrays.at(hf_name).second;
    const bool conv1d = tensor.shape.size() == 2 && hf_name.starts_with("h.");
    for (int64_t e = 0; e < tensor.count; ++e) {
      if (conv1d) {  // ours (out, in) entry (o, i) is the file's (i, o)
        const int64_t out = tensor.shape[0], in = tensor.shape[1];
        model.values.push_back(values[static_cast<size_t>((e % in) * out + e / in)]);
      } else {
        model.values.push_back(values[static_cast<size_t>(e)]);
      }
    }
  }
  return model;
}

}  // namespace fracsweep::test
