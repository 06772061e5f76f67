#pragma once
// GGUF files (versions 2 and 3), as written by llama.cpp. Layout, all little-endian:
//   "GGUF", uint32 version, uint64 tensor_count, uint64 metadata_kv_count,
//   metadata: per key a string (uint64 length + UTF-8 bytes), uint32 value type, value
//     (types 0..12: u8 i8 u16 i16 u32 i32 f32 bool string array u64 i64 f64; an array is
//     uint32 element type, uint64 count, elements),
//   tensor infos: name string, uint32 n_dims (<= 4), uint64 dims[n_dims] (dims[0] varies
//     fastest), uint32 ggml type, uint64 offset relative to the data section,
//   padding to `general.alignment` (uint32, a power of two, default 32), the data section.
// Untrusted input: every length, count, offset and size is checked against the file before it
// is used or allocated; tensors must be aligned, inside the file and disjoint. The file is
// mapped read-only. Errors throw InputError naming the file, the key or tensor, what was
// expected and what was found.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/model/model.hpp"

namespace fracsweep {

enum class GgufValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12
};
const char* gguf_value_type_name(GgufValueType type);

// One metadata value. Integers keep their exact value (signed or unsigned 64-bit), floats are
// widened to double; arrays hold their elements.
struct GgufValue {
  GgufValueType type = GgufValueType::u8;
  bool is_negative = false;  // integers: the value is below zero (then `integer` is signed)
  uint64_t integer = 0;      // integer types and bool: the bits of the value
  double real = 0;           // f32, f64
  std::string text;          // string
  GgufValueType element_type = GgufValueType::u8;  // array
  std::vector<GgufValue> items;                    // array: (count) elements
};

// ggml tensor types fracsweep reads (the rest are named in errors).
enum class GgmlType : uint32_t { f32 = 0, f16 = 1, bf16 = 30 };

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<int64_t> shape;  // row-major (dims reversed), e.g. token_embd {vocab, dim}
  int64_t count = 0;           // product of shape (overflow-checked)
  int64_t begin = 0;           // byte offset in the file
  int64_t bytes = 0;           // count * element size
};

class GgufFile {
 public:
  // Maps and validates the whole structure (header, metadata, tensor infos, data placement).
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  int64_t alignment() const { return alignment_; }
  int64_t data_offset() const { return data_offset_; }  // first byte of the data section
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }  // in file order

  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  const GgufTensor* find_tensor(const std::string& name) const;

  // Typed metadata access; InputError naming the file and key when absent or of another type.
  int64_t get_int(const std::string& key) const;  // any integer type, within int64
  int64_t get_int(const std::string& key, int64_t fallback) const;  // fallback when absent
  double get_float(const std::string& key) const;                   // f32 or f64
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;

  // The tensor's elements as float32, exactly (F32, F16, BF16 widen without rounding; 16-bit
  // NaN payloads are kept so the stored bits can be recovered). out: (count).
  void read_as_float(const GgufTensor& tensor, float* out) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  int64_t alignment_ = 32;
  int64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;  // in file order
  std::vector<GgufTensor> tensors_;
  // Name -> position in metadata_ / tensors_: duplicate checks and look-ups in O(1), so a file
  // with many entries costs linear time, not quadratic.
  std::unordered_map<std::string, size_t> metadata_index_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// "F32", "F16", "BF16", else "ggml type N (Q4_0)" style names.
std::string ggml_type_name(uint32_t type);

// --- Llama models in GGUF (gguf_model.cpp) ---------------------------------------------------
// general.architecture must be "llama". Hyper-parameters come from llama.* keys: context_length
// (seq_len), embedding_length, block_count, feed_forward_length, attention.head_count,
// attention.head_count_kv (default head_count), rope.freq_base (default 10000),
// rope.dimension_count (default and only supported value: the head dimension),
// attention.layer_norm_rms_epsilon; vocab_size is token_embd's row count. Tensors map onto the
// llama2.c names (token_embd -> tok_embeddings, blk.L.attn_q -> layers.L.attn.wq, attn_k/v/
// output -> wk/wv/wo, ffn_gate/down/up -> ffn.w1/w2/w3, attn_norm/ffn_norm, output_norm ->
// norm_final, output -> output) in the llama2.c order; GGUF Llama q/k rows are already in the
// adjacent-pair RoPE layout llama2.c uses, so they are taken as stored.
LlamaConfig gguf_llama_config(const GgufFile& file);
// The parameter table (names, shapes, offsets, stored types) after checking every tensor's
// presence, shape and type against the config; extra tensors are an error.
std::vector<TensorInfo> gguf_llama_tensor_table(const GgufFile& file, const LlamaConfig& config);
Model load_gguf_llama(const std::string& path, const WeightsSource& weights = private_weights());
Model load_gguf_llama(const GgufFile& file, const WeightsSource& weights = private_weights());
// The vocabulary of tokenizer.ggml.* (model "llama": SentencePiece pieces, U+2581 read as a
// space; scores; bos/eos ids, defaults 1 and 2) as the llama2.c BPE encoder.
Tokenizer gguf_tokenizer(const GgufFile& file, int64_t vocab_size);

}  // namespace fracsweep
