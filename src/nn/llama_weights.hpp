#pragma once
// Internal to the nn layer: the Llama parameters as pointers into Model::values (shape-checked),
// and the batch checks and embedding lookup shared by the forward (llama.cpp) and backward
// (llama_backward.cpp) passes.
#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/kv_cache.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep::llama_detail {

// Pointer to the values of tensor `name`, after checking it has the shape the forward pass
// assumes (the loader validated the file; this guards against a model built otherwise).
inline const float* weights(const Model& model, const std::string& name,
                            std::initializer_list<int64_t> shape) {
  const TensorInfo& info = model.tensor(name);
  if (!std::equal(info.shape.begin(), info.shape.end(), shape.begin(), shape.end())) {
    throw InputError(in_file(model.path, "tensor " + name + " has shape " + shape_text(info.shape) +
                                             ", expected " +
                                             shape_text(std::vector<int64_t>(shape))));
  }
  return model.values.data() + info.offset;
}

struct LayerWeights {
  const float* attn_norm;  // (dim)
  const float* wq;         // (dim, dim)
  const float* wk;         // (kv_dim, dim)
  const float* wv;         // (kv_dim, dim)
  const float* wo;         // (dim, dim)
  const float* ffn_norm;   // (dim)
  const float* w1;         // (hidden_dim, dim)
  const float* w2;         // (dim, hidden_dim)
  const float* w3;         // (hidden_dim, dim)
};

struct LlamaWeights {
  const float* tok_embeddings;  // (vocab, dim)
  std::vector<LayerWeights> layers;
  const float* norm_final;  // (dim)
  const float* classifier;  // (vocab, dim): tok_embeddings when shared
};

inline LlamaWeights llama_weights(const Model& model) {
  const LlamaConfig& c = model.config;
  LlamaWeights w;
  w.tok_embeddings = weights(model, "tok_embeddings", {c.vocab_size, c.dim});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    w.layers.push_back({weights(model, prefix + "attn_norm", {c.dim}),
                        weights(model, prefix + "attn.wq", {c.dim, c.dim}),
                        weights(model, prefix + "attn.wk", {c.kv_dim(), c.dim}),
                        weights(model, prefix + "attn.wv", {c.kv_dim(), c.dim}),
                        weights(model, prefix + "attn.wo", {c.dim, c.dim}),
                        weights(model, prefix + "ffn_norm", {c.dim}),
                        weights(model, prefix + "ffn.w1", {c.hidden_dim, c.dim}),
                        weights(model, prefix + "ffn.w2", {c.dim, c.hidden_dim}),
                        weights(model, prefix + "ffn.w3", {c.hidden_dim, c.dim})});
  }
  w.norm_final = weights(model, "norm_final", {c.dim});
  w.classifier =
      c.shared_classifier ? w.tok_embeddings : weights(model, "output", {c.vocab_size, c.dim});
  return w;
}

// Checks that `batch` is well formed for `config` (sequence bounds, positions, token ids);
// returns its longest sequence.
inline int64_t check_batch(const LlamaConfig& config, const TokenBatch& batch) {
  const int64_t n_tokens = batch.n_tokens();
  if (batch.positions.size() != batch.tokens.size() || batch.seq_start.empty() ||
      batch.seq_start.front() != 0 || batch.seq_start.back() != n_tokens) {
    throw InputError("token batch: positions must match tokens (" +
                     std::to_string(batch.positions.size()) + " vs " + std::to_string(n_tokens) +
                     ") and seq_start must run from 0 to the token count");
  }
  int64_t longest = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t len = batch.seq_start[s + 1] - batch.seq_start[s];
    if (len < 0)
      throw InputError("token batch: seq_start decreases at sequence " + std::to_string(s));
    longest = std::max(longest, len);
  }
  for (int64_t r = 0; r < n_tokens; ++r) {
    if (batch.tokens[r] < 0 || batch.tokens[r] >= config.vocab_size) {
      throw InputError("token batch: token id " + std::to_string(batch.tokens[r]) + " at row " +
                       std::to_string(r) + " is outside the vocabulary of " +
                       std::to_string(config.vocab_size));
    }
    if (batch.positions[r] < 0 || batch.positions[r] >= config.seq_len) {
      throw InputError("token batch: position " + std::to_string(batch.positions[r]) + " at row " +
                       std::to_string(r) + " is outside the model's seq_len " +
                       std::to_string(config.seq_len));
    }
  }
  return longest;
}

// Checks a decoding step (LanguageModelForward::decode): tokens[0 .. n) in the vocabulary, at
// positions start .. start + n - 1 within the model's seq_len, the KV cache's capacity and
// kv_dim, and n rows within the workspace's max_tokens.
inline void check_decode(const LlamaConfig& config, const int32_t* tokens, int64_t n, int64_t start,
                         int64_t max_tokens, const KvCache& cache) {
  const int64_t end = start + n;
  if (n < 1 || n > max_tokens || start < 0 || end > cache.capacity() || end > config.seq_len ||
      cache.kv_dim() != config.kv_dim()) {
    throw RunError("internal error: decoding " + std::to_string(n) + " tokens at position " +
                   std::to_string(start) + " with room for " + std::to_string(max_tokens) +
                   " rows, a KV cache of " + std::to_string(cache.capacity()) +
                   " positions and seq_len " + std::to_string(config.seq_len));
  }
  for (int64_t r = 0; r < n; ++r) {
    if (tokens[r] < 0 || tokens[r] >= config.vocab_size) {
      throw InputError("decoding: token id " + std::to_string(tokens[r]) +
                       " is outside the vocabulary of " + std::to_string(config.vocab_size));
    }
  }
}

// x[r, :] = embedding row of tokens[r]; x (n_tokens, dim).
inline void embed_tokens(const float* tok_embeddings, const TokenBatch& batch, int64_t dim,
                         float* x) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * batch.n_tokens() * dim))
  for (int64_t r = 0; r < batch.n_tokens(); ++r) {
    std::copy_n(tok_embeddings + batch.tokens[r] * dim, dim, x + r * dim);
  }
}

}  // namespace fracsweep::llama_detail
