#pragma once
// llama2.c legacy v0 checkpoints: a 28-byte header of 7 little-endian int32 (dim, hidden_dim,
// n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an unshared
// classifier follows), then float32 tensors: tok_embeddings, rms_att, wq, wk, wv, wo, rms_ffn,
// w1, w2, w3, rms_final, the legacy freq_cis real/imag block (skipped), [classifier].
#include <string>
#include <vector>

#include "fracsweep/model/model.hpp"

namespace fracsweep {

// Reads and validates the header only (dims positive, vocab_size at least 3 for <unk>, BOS and
// EOS, heads divide dim, kv heads divide heads, file size equals what the header implies). Throws
// InputError naming the file and field.
LlamaConfig read_llama2c_header(const std::string& path);

// Named tensors of a llama2.c model in file order (parameters only, freq_cis excluded), with
// offsets into the flat parameter array; see load_llama2c for the names.
std::vector<TensorInfo> llama2c_tensor_table(const LlamaConfig& config);

// Loads and validates the whole model; tensors are named per layer:
//   tok_embeddings, layers.L.attn_norm, layers.L.attn.{wq,wk,wv,wo}, layers.L.ffn_norm,
//   layers.L.ffn.{w1,w2,w3}, norm_final, and output when the classifier is unshared.
Model load_llama2c(const std::string& path, const WeightsSource& weights = private_weights());

}  // namespace fracsweep
