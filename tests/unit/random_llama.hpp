#pragma once
// Random in-memory Llama models and token sequences for the forward and backward tests.
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/model/model.hpp"

namespace fracsweep::test {

// A model with the llama2.c tensor names and random weights of a trained model's scale:
// matrices uniform in +-1/sqrt(fan_in), norm weights around 1.
inline Model random_model(const LlamaConfig& config, uint32_t seed) {
  Model model;
  model.path = "<random model>";
  model.format = "test";
  model.config = config;
  std::mt19937 generator(seed);
  const auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    const int64_t count =
        std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
    const bool is_norm = shape.size() == 1;
    const float half_width = is_norm ? 0.2f : 1.0f / std::sqrt(static_cast<float>(shape.back()));
    std::uniform_real_distribution<float> distribution(-half_width, half_width);
    const int64_t offset = model.n_parameters();
    for (int64_t i = 0; i < count; ++i) {
      model.values.push_back((is_norm ? 1.0f : 0.0f) + distribution(generator));
    }
    model.tensors.push_back({name, std::move(shape), offset, count});
  };
  const int64_t dim = config.dim;
  add("tok_embeddings", {config.vocab_size, dim});
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    add(prefix + "attn_norm", {dim});
    add(prefix + "attn.wq", {dim, dim});
    add(prefix + "attn.wk", {config.kv_dim(), dim});
    add(prefix + "attn.wv", {config.kv_dim(), dim});
    add(prefix + "attn.wo", {dim, dim});
    add(prefix + "ffn_norm", {dim});
    add(prefix + "ffn.w1", {config.hidden_dim, dim});
    add(prefix + "ffn.w2", {dim, config.hidden_dim});
    add(prefix + "ffn.w3", {config.hidden_dim, dim});
  }
  add("norm_final", {dim});
  if (!config.shared_classifier) add("output", {config.vocab_size, dim});
  // The embedding rows double as the shared classifier: scale them up like a trained model's.
  for (int64_t i = 0; i < config.vocab_size * dim; ++i) model.values[i] *= 8.0f;
  return model;
}

inline LlamaConfig config_of(int64_t dim, int64_t hidden, int64_t layers, int64_t heads,
                             int64_t kv_heads, int64_t vocab, bool shared) {
  LlamaConfig config;
  config.dim = dim;
  config.hidden_dim = hidden;
  config.n_layers = layers;
  config.n_heads = heads;
  config.n_kv_heads = kv_heads;
  config.vocab_size = vocab;
  config.seq_len = 128;
  config.shared_classifier = shared;
  return config;
}

inline std::vector<int32_t> random_tokens(int64_t len, int64_t vocab, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int32_t> distribution(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(len));
  for (int32_t& token : tokens) token = distribution(generator);
  return tokens;
}

}  // namespace fracsweep::test
