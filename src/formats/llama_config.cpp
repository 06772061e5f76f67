#include "fracsweep/formats/llama_config.hpp"

#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// "GGUF metadata key 'llama.embedding_length'", "llama2.c header field dim".
std::string key_named(const LlamaConfigKeys& keys, const std::string& key) {
  return keys.key_kind + " " + (keys.quote_keys ? "'" + key + "'" : key);
}

}  // namespace

void check_llama_config(const LlamaConfig& c, const LlamaConfigKeys& keys) {
  const std::pair<const std::string&, int64_t> dimensions[] = {
      {keys.dim, c.dim},         {keys.hidden_dim, c.hidden_dim}, {keys.n_layers, c.n_layers},
      {keys.n_heads, c.n_heads}, {keys.n_kv_heads, c.n_kv_heads}, {keys.vocab_size, c.vocab_size},
      {keys.seq_len, c.seq_len}};
  for (const auto& [key, value] : dimensions) {
    check_input(value > 0 && value <= llama_max_dimension,
                in_file(keys.path, key_named(keys, key) + ": expected 1.." +
                                       std::to_string(llama_max_dimension) + ", found " +
                                       std::to_string(value)));
  }
  check_input(c.seq_len <= keys.max_seq_len,
              in_file(keys.path, key_named(keys, keys.seq_len) + ": expected at most " +
                                     std::to_string(keys.max_seq_len) + ", found " +
                                     std::to_string(c.seq_len)));
  check_input(
      c.dim % c.n_heads == 0,
      in_file(keys.path, key_named(keys, keys.n_heads) + " (" + std::to_string(c.n_heads) +
                             ") must divide " + keys.dim + " (" + std::to_string(c.dim) + ")"));
  check_input(c.n_heads % c.n_kv_heads == 0,
              in_file(keys.path, key_named(keys, keys.n_kv_heads) + " (" +
                                     std::to_string(c.n_kv_heads) + ") must divide " +
                                     keys.n_heads + " (" + std::to_string(c.n_heads) + ")"));
  check_input(!keys.rotary || c.head_dim() % 2 == 0,
              in_file(keys.path, "head dimension " + keys.dim + " / " + keys.n_heads + " = " +
                                     std::to_string(c.head_dim()) + " must be even for RoPE"));
}

}  // namespace fracsweep

namespace fracsweep {

void check_layer_tensors(int64_t n_layers, int64_t stored_tensors, int64_t tensors_per_layer,
                         const std::string& path, const std::string& key) {
  // Only counts no checkpoint could hold fail here (not even one tensor per layer); a layer or
  // two short is reported by name as the first missing tensor.
  check_input(
      n_layers <= stored_tensors,
      in_file(path,
              "key '" + key + "' (" + std::to_string(n_layers) + ") needs " +
                  std::to_string(tensors_per_layer) + " tensors per layer, the checkpoint holds " +
                  std::to_string(stored_tensors) + " tensors in all (layer tensors missing?)"));
}

}  // namespace fracsweep
