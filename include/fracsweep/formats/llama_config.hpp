#pragma once
// One validation of the Llama/GPT-2 hyper-parameters (LlamaConfig) read from any file format
// (llama2.c header, GGUF metadata, Hugging Face config.json): limits, divisibility, and
// messages that name the file and the format's own key.
#include <cstdint>
#include <string>

#include "fracsweep/model/model.hpp"

namespace fracsweep {

// Generous upper bound on any one dimension: rejects absurd hyper-parameters early.
inline constexpr int64_t llama_max_dimension = int64_t{1} << 24;
// Where the context length sizes the rotary table (seq_len x head_dim floats) and is tied to no
// tensor (GGUF, config.json), a hostile file could ask for gigabytes with it: 1M positions.
inline constexpr int64_t llama_max_context = int64_t{1} << 20;

// How one file format names the LlamaConfig fields. A field is named in messages as
// "<key_kind> 'key'" (or "<key_kind> key" when !quote_keys), e.g. "GGUF metadata key
// 'llama.embedding_length'", "key 'hidden_size'", "llama2.c header field dim".
struct LlamaConfigKeys {
  std::string path;      // the file every message names first
  std::string key_kind;  // "GGUF metadata key", "key", "llama2.c header field"
  bool quote_keys = true;
  std::string dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  // Rotary (Llama) models need an even head dimension; GPT-2 has learned positions.
  bool rotary = true;
  int64_t max_seq_len = llama_max_dimension;  // llama_max_context where nothing ties seq_len
};

// Throws InputError unless every dimension is in 1..llama_max_dimension, seq_len is at most
// keys.max_seq_len, n_heads divides dim, n_kv_heads divides n_heads and (rotary) the head
// dimension is even. Checks run in field order, so no division by an unchecked value.
void check_llama_config(const LlamaConfig& config, const LlamaConfigKeys& keys);

}  // namespace fracsweep

namespace fracsweep {

// A layer count (`key` in `path`) beyond the checkpoint's `stored_tensors` (it cannot hold even
// one tensor per layer; a real layer holds `tensors_per_layer`) is an InputError before any table
// of that many layers is built (a hostile count would otherwise cost seconds and gigabytes first).
void check_layer_tensors(int64_t n_layers, int64_t stored_tensors, int64_t tensors_per_layer,
                         const std::string& path, const std::string& key);

}  // namespace fracsweep
