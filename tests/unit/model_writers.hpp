#pragma once
// Writers of model files for tests, written from the format descriptions (not by fracsweep):
// GGUF v2/v3 byte by byte, safetensors (8-byte header length + JSON + data), and a llama2.c
// model converted to either.
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/nn/llama.hpp"

namespace fracsweep::test {

// A GGUF file built in memory. Values are appended in the order given.
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  void kv_string(const std::string& key, const std::string& value) {
    key_header(key, 8);
    put_string(metadata_, value);
  }
  void kv_u32(const std::string& key, uint32_t value) {
    key_header(key, 4);
    put(metadata_, value);
  }
  void kv_f32(const std::string& key, float value) {
    key_header(key, 6);
    put(metadata_, value);
  }
  void kv_string_array(const std::string& key, const std::vector<std::string>& values) {
    key_header(key, 9);
    put(metadata_, uint32_t{8});
    put(metadata_, uint64_t{values.size()});
    for (const std::string& v : values) put_string(metadata_, v);
  }
  void kv_f32_array(const std::string& key, const std::vector<float>& values) {
    key_header(key, 9);
    put(metadata_, uint32_t{6});
    put(metadata_, uint64_t{values.size()});
    for (float v : values) put(metadata_, v);
  }
  // Raw metadata bytes after a key (for hostile values): the caller writes type and value.
  void kv_raw(const std::string& key, const std::vector<unsigned char>& type_and_value) {
    put_string(metadata_, key);
    metadata_.insert(metadata_.end(), type_and_value.begin(), type_and_value.end());
    ++n_kv_;
  }
  // A tensor: dims in GGUF order (dims[0] fastest), ggml type, raw element bytes. Its offset is
  // the next aligned position unless `offset` is given.
  void tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t type,
              const std::vector<unsigned char>& bytes, int64_t offset = -1) {
    data_.resize((data_.size() + alignment - 1) / alignment * alignment);
    const uint64_t at = offset >= 0 ? static_cast<uint64_t>(offset) : data_.size();
    if (offset < 0) data_.insert(data_.end(), bytes.begin(), bytes.end());
    put_string(infos_, name);
    put(infos_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(infos_, d);
    put(infos_, type);
    put(infos_, at);
    ++n_tensors_;
  }

  std::vector<unsigned char> bytes(int64_t tensor_count_override = -1) const {
    std::vector<unsigned char> out = {'G', 'G', 'U', 'F'};
    put(out, version_);
    put(out,
        tensor_count_override >= 0 ? static_cast<uint64_t>(tensor_count_override) : n_tensors_);
    put(out, n_kv_);
    out.insert(out.end(), metadata_.begin(), metadata_.end());
    out.insert(out.end(), infos_.begin(), infos_.end());
    out.resize((out.size() + alignment - 1) / alignment * alignment);
    out.insert(out.end(), data_.begin(), data_.end());
    return out;
  }

  static constexpr uint64_t alignment = 32;

  template <typename T>
  static void put(std::vector<unsigned char>& out, T value) {
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
  }
  static void put_string(std::vector<unsigned char>& out, const std::string& text) {
    put(out, uint64_t{text.size()});
    out.insert(out.end(), text.begin(), text.end());
  }

 private:
  void key_header(const std::string& key, uint32_t type) {
    put_string(metadata_, key);
    put(metadata_, type);
    ++n_kv_;
  }
  uint32_t version_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
  std::vector<unsigned char> metadata_, infos_, data_;
};

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<unsigned char> float_bytes(const float* values, int64_t count) {
  std::vector<unsigned char> out(static_cast<size_t>(count) * 4);
  std::memcpy(out.data(), values, out.size());
  return out;
}

inline std::vector<unsigned char> u16_bytes(const std::vector<uint16_t>& values) {
  std::vector<unsigned char> out(values.size() * 2);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// One tensor of a safetensors file: dtype name ("F32", "BF16", ...), shape, raw bytes.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

// Writes a safetensors file: 8-byte little-endian header length, JSON header, data buffer.
inline void write_safetensors(const std::string& path,
                              const std::vector<SafetensorsEntry>& tensors) {
  std::string header = "{";
  uint64_t offset = 0;
  for (const SafetensorsEntry& t : tensors) {
    std::string shape;
    for (int64_t s : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(s);
    header += (header.size() > 1 ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" +
              t.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(offset) +
              "," + std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t header_length = header.size();
  out.write(reinterpret_cast<const char*>(&header_length), 8);
  out << header;
  for (const SafetensorsEntry& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  }
}

// Writes `model` (llama2.c tensor names, e.g. random_llama.hpp's random_model) as a llama2.c v0
// checkpoint: the 7 int32 header fields, the tensors stacked per kind over the layers, a zero
// freq_cis block (unused by fracsweep), then the classifier when it is not shared.
inline void write_llama2c(const std::string& path, const Model& model) {
  const LlamaConfig& c = model.config;
  const int32_t header[7] = {
      static_cast<int32_t>(c.dim),
      static_cast<int32_t>(c.hidden_dim),
      static_cast<int32_t>(c.n_layers),
      static_cast<int32_t>(c.n_heads),
      static_cast<int32_t>(c.n_kv_heads),
      static_cast<int32_t>(c.shared_classifier ? c.vocab_size : -c.vocab_size),
      static_cast<int32_t>(c.seq_len)};
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  const auto put = [&](const std::string& name) {
    const TensorInfo& t = model.tensor(name);
    out.write(reinterpret_cast<const char*>(model.values.data() + t.offset),
              static_cast<std::streamsize>(t.count * 4));
  };
  put("tok_embeddings");
  for (const char* kind : {"attn_norm", "attn.wq", "attn.wk", "attn.wv", "attn.wo", "ffn_norm",
                           "ffn.w1", "ffn.w2", "ffn.w3"}) {
    for (int64_t l = 0; l < c.n_layers; ++l) put("layers." + std::to_string(l) + "." + kind);
  }
  put("norm_final");
  // (seq_len, head_dim) the legacy RoPE table, zeros
  const std::vector<float> freq_cis(static_cast<size_t>(c.seq_len * c.head_dim()));
  out.write(reinterpret_cast<const char*>(freq_cis.data()),
            static_cast<std::streamsize>(freq_cis.size() * 4));
  if (!c.shared_classifier) put("output");
  BOOST_TEST_REQUIRE(out.good(), "cannot write " << path);
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A unique scratch path in the system temp directory, removed (recursively) by the destructor.
struct TempPath {
  std::string path;
  explicit TempPath(const std::string& name)
      : path((std::filesystem::temp_directory_path() /
              ("fracsweep-test-" + std::to_string(::getpid()) + "-" + name))
                 .string()) {}
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
};

// Logits (n_tokens, vocab) of a Llama `model` on `sequences` stacked into one batch.
inline std::vector<float> llama_logits(const Model& model,
                                       const std::vector<std::vector<int32_t>>& sequences) {
  TokenBatch batch;
  int64_t longest = 0;
  for (const auto& sequence : sequences) {
    batch.append(sequence);
    longest = std::max(longest, static_cast<int64_t>(sequence.size()));
  }
  LlamaWorkspace workspace(model.config, batch.n_tokens(), longest);
  std::vector<float> logits(static_cast<size_t>(batch.n_tokens() * model.config.vocab_size));
  llama_forward(model, batch, workspace, logits.data());
  return logits;
}

// Largest |a_i - b_i| of two equally long vectors.
inline float max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  BOOST_TEST_REQUIRE(a.size() == b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

}  // namespace fracsweep::test
