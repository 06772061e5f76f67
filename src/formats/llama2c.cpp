#include "fracsweep/formats/llama2c.hpp"

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>

#include "fracsweep/formats/llama_config.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// Tensors are read as raw little-endian float32.
static_assert(std::endian::native == std::endian::little,
              "llama2.c loading assumes a little-endian host");

constexpr int64_t header_bytes = 7 * 4;
// Token ids 0, 1 and 2 are <unk>, BOS and EOS in llama2.c; generation starts and stops at BOS.
constexpr int64_t llama2c_min_vocab_size = 3;

// Element counts of the llama2.c v0 tensors, in file order.
struct Llama2cLayout {
  int64_t tok_embeddings, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis,
      classifier;
  // Total floats after the header (checked: a hostile header must not overflow the sum).
  int64_t floats_in_file(const std::string& path) const {
    int64_t total = 0;
    for (int64_t part : {tok_embeddings, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
                         freq_cis, classifier}) {
      check_input(!__builtin_add_overflow(total, part, &total),
                  in_file(path, "llama2.c header implies more than 2^63 floats"));
    }
    return total;
  }
};

// Products of header fields can overflow int64 for hostile headers: multiply checked.
int64_t checked_product(std::initializer_list<int64_t> factors, const std::string& path) {
  int64_t product = 1;
  for (int64_t f : factors) {
    check_input(!__builtin_mul_overflow(product, f, &product),
                in_file(path, "llama2.c header dimensions overflow a 64-bit element count"));
  }
  return product;
}

Llama2cLayout layout_of(const LlamaConfig& c, const std::string& path) {
  const int64_t L = c.n_layers, d = c.dim, h = c.hidden_dim, kv = c.kv_dim();
  auto n = [&](std::initializer_list<int64_t> f) { return checked_product(f, path); };
  Llama2cLayout l{};
  l.tok_embeddings = n({c.vocab_size, d});
  l.rms_att = n({L, d});
  l.wq = n({L, d, d});
  l.wk = n({L, kv, d});
  l.wv = n({L, kv, d});
  l.wo = n({L, d, d});
  l.rms_ffn = n({L, d});
  l.w1 = n({L, h, d});
  l.w2 = n({L, d, h});
  l.w3 = n({L, h, d});
  l.rms_final = d;
  l.freq_cis = n({c.seq_len, c.head_dim()});  // real and imag halves, seq_len x head_dim/2 each
  l.classifier = c.shared_classifier ? 0 : l.tok_embeddings;
  return l;
}

int32_t read_le_int32(const unsigned char* bytes) {
  uint32_t v = uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 |
               uint32_t{bytes[3]} << 24;
  int32_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

int64_t file_size_of(const std::string& path) {
  std::error_code ec;
  check_input(std::filesystem::is_regular_file(path, ec),
              in_file(path, "model file does not exist or is not a regular file"));
  const auto size = std::filesystem::file_size(path, ec);
  check_input(!ec, in_file(path, "cannot read model file size: " + ec.message()));
  return static_cast<int64_t>(size);
}

}  // namespace

LlamaConfig read_llama2c_header(const std::string& path) {
  const int64_t size = file_size_of(path);
  check_input(size >= header_bytes,
              in_file(path, "truncated llama2.c model: expected a 28-byte header, file has " +
                                std::to_string(size) + " bytes"));
  std::ifstream in(path, std::ios::binary);
  check_input(static_cast<bool>(in), in_file(path, "cannot open model file"));
  unsigned char raw[header_bytes];
  in.read(reinterpret_cast<char*>(raw), header_bytes);
  check_input(in.gcount() == header_bytes, in_file(path, "cannot read the 28-byte header"));

  LlamaConfig c;
  c.dim = read_le_int32(raw + 0);
  c.hidden_dim = read_le_int32(raw + 4);
  c.n_layers = read_le_int32(raw + 8);
  c.n_heads = read_le_int32(raw + 12);
  c.n_kv_heads = read_le_int32(raw + 16);
  const int64_t signed_vocab = read_le_int32(raw + 20);
  c.seq_len = read_le_int32(raw + 24);
  c.shared_classifier = signed_vocab > 0;
  c.vocab_size = signed_vocab < 0 ? -signed_vocab : signed_vocab;

  // seq_len sizes the freq_cis block, so the file size bounds it: no separate context cap.
  check_llama_config(c, {.path = path,
                         .key_kind = "llama2.c header field",
                         .quote_keys = false,
                         .dim = "dim",
                         .hidden_dim = "hidden_dim",
                         .n_layers = "n_layers",
                         .n_heads = "n_heads",
                         .n_kv_heads = "n_kv_heads",
                         .vocab_size = "vocab_size (absolute value)",
                         .seq_len = "seq_len"});
  check_input(
      c.vocab_size >= llama2c_min_vocab_size,
      in_file(path, "llama2.c header field vocab_size (absolute value): expected at least " +
                        std::to_string(llama2c_min_vocab_size) +
                        " (<unk>, BOS 1 and EOS 2 by llama2.c's convention), found " +
                        std::to_string(c.vocab_size)));

  // Each count was multiplied with overflow checks; the sum and the byte size are checked too.
  const int64_t floats = layout_of(c, path).floats_in_file(path);
  check_input(floats <= (std::numeric_limits<int64_t>::max() - header_bytes) / 4,
              in_file(path, "llama2.c header implies more than 2^63 bytes"));
  const int64_t expected = header_bytes + floats * 4;
  check_input(
      size == expected,
      in_file(path, "file size " + std::to_string(size) + " bytes disagrees with the header (dim=" +
                        std::to_string(c.dim) + " hidden_dim=" + std::to_string(c.hidden_dim) +
                        " n_layers=" + std::to_string(c.n_layers) + " n_heads=" +
                        std::to_string(c.n_heads) + " n_kv_heads=" + std::to_string(c.n_kv_heads) +
                        " vocab_size=" + std::to_string(signed_vocab) +
                        " seq_len=" + std::to_string(c.seq_len) + "), which implies " +
                        std::to_string(expected) + " bytes"));
  return c;
}

std::vector<TensorInfo> llama2c_tensor_table(const LlamaConfig& c) {
  std::vector<TensorInfo> tensors;
  // Named per-layer views. Stacked tensors (one block per kind for all layers) are split.
  const int64_t L = c.n_layers, d = c.dim, h = c.hidden_dim, kv = c.kv_dim();
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    append_tensor(tensors, name, std::move(shape));
  };
  auto add_stacked = [&](const std::string& suffix, std::vector<int64_t> shape) {
    for (int64_t l = 0; l < L; ++l) add("layers." + std::to_string(l) + "." + suffix, shape);
  };
  add("tok_embeddings", {c.vocab_size, d});
  add_stacked("attn_norm", {d});
  add_stacked("attn.wq", {d, d});
  add_stacked("attn.wk", {kv, d});
  add_stacked("attn.wv", {kv, d});
  add_stacked("attn.wo", {d, d});
  add_stacked("ffn_norm", {d});
  add_stacked("ffn.w1", {h, d});
  add_stacked("ffn.w2", {d, h});
  add_stacked("ffn.w3", {h, d});
  add("norm_final", {d});
  if (!c.shared_classifier) add("output", {c.vocab_size, d});
  return tensors;
}

Model load_llama2c(const std::string& path, const WeightsSource& weights) {
  Model model;
  model.path = path;
  model.format = "llama2c-v0";
  model.config = read_llama2c_header(path);
  const LlamaConfig& c = model.config;
  const Llama2cLayout layout = layout_of(c, path);

  // Parameters are every float of the file except the legacy freq_cis block.
  const int64_t before_freq = layout.floats_in_file(path) - layout.freq_cis - layout.classifier;
  ProvidedValues provided =
      weights.values_for(path, static_cast<size_t>(before_freq + layout.classifier));
  model.values = std::move(provided.buffer);
  model.tensors = llama2c_tensor_table(c);
  check_invariant(model.tensors.back().offset + model.tensors.back().count == model.n_values(),
                  "llama2.c tensor table does not cover values");
  if (provided.filled) return model;
  std::ifstream in(path, std::ios::binary);
  check_input(static_cast<bool>(in), in_file(path, "cannot open model file"));
  in.seekg(header_bytes);
  auto read_floats = [&](float* dst, int64_t count) {
    in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(count * 4));
    check_input(in.gcount() == count * 4, in_file(path, "truncated while reading tensors"));
  };
  read_floats(model.values.data(), before_freq);
  if (layout.classifier > 0) {
    in.seekg(layout.freq_cis * 4, std::ios::cur);
    read_floats(model.values.data() + before_freq, layout.classifier);
  }
  return model;
}

}  // namespace fracsweep
