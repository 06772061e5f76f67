#define BOOST_TEST_MODULE fuzz_regressions
// Findings of the fuzz targets (fuzz/) that are about resources rather than crashes, each
// rebuilt here from its description: a hostile count or size must fail fast with an InputError
// that names the field and what was expected, before anything of the declared size is built.
// (Crash findings are replayed byte for byte from tests/fuzz_regressions/.)
#include <zlib.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/formats/gguf.hpp"
#include "fracsweep/formats/hf.hpp"
#include "fracsweep/formats/image_data.hpp"
#include "fracsweep/util/error.hpp"
#include "model_writers.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;

namespace {

using fracsweep::test::GgufWriter;
using fracsweep::test::TempDir;

std::string as_string(const std::vector<unsigned char>& bytes) {
  return {bytes.begin(), bytes.end()};
}

// Runs `body`, which must throw InputError; returns its message.
template <typename Body>
std::string input_error_of(Body&& body) {
  try {
    body();
  } catch (const fs::InputError& error) {
    return error.what();
  }
  BOOST_FAIL("no InputError");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};

// Writes `bytes` gzip-compressed to `path`; returns the path.
std::string write_gzip(const std::string& path, const std::string& bytes) {
  {
    const std::unique_ptr<gzFile_s, GzCloser> out(gzopen(path.c_str(), "wb"));
    BOOST_TEST_REQUIRE(out != nullptr);
    BOOST_TEST_REQUIRE(gzwrite(out.get(), bytes.data(), static_cast<unsigned>(bytes.size())) ==
                       static_cast<int>(bytes.size()));
  }
  return path;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A GGUF Llama header (dim 8, 2 heads) with `block_count` layers but only the embeddings stored.
std::vector<unsigned char> gguf_with_block_count(uint32_t block_count) {
  GgufWriter writer;
  writer.kv_string("general.architecture", "llama");
  writer.kv_u32("llama.embedding_length", 8);
  writer.kv_u32("llama.feed_forward_length", 16);
  writer.kv_u32("llama.block_count", block_count);
  writer.kv_u32("llama.attention.head_count", 2);
  writer.kv_u32("llama.context_length", 16);
  writer.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  const std::vector<float> embeddings(4 * 8, 0.5f);  // (vocab 4, dim 8)
  writer.tensor("token_embd.weight", {8, 4}, 0, fs::test::float_bytes(embeddings.data(), 32));
  return writer.bytes();
}

}  // namespace

// Before: 2^24-1 layers built a 151M-entry tensor table (40 s, 1.9 GB) and then bad_alloc.
BOOST_AUTO_TEST_CASE(gguf_block_count_beyond_the_stored_tensors_fails_fast) {
  const TempDir dir;
  const std::string path = dir.write("huge.gguf", as_string(gguf_with_block_count((1u << 24) - 1)));
  const fs::GgufFile file(path);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = input_error_of([&] { fs::gguf_llama_config(file); });
  BOOST_TEST(contains(message, "'llama.block_count' (16777215)"), message);
  BOOST_TEST(contains(message, "9 tensors per layer, the checkpoint holds 1 tensors"), message);
  BOOST_TEST(contains(message, path), message);
  BOOST_TEST(seconds_since(start) < 1.0);
}

// Before: num_hidden_layers = 2^24-1 built the table of every layer before any tensor lookup.
BOOST_AUTO_TEST_CASE(hf_layer_count_beyond_the_stored_tensors_fails_fast) {
  const TempDir dir;
  dir.write("config.json", R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 16777215, "num_attention_heads": 2,
    "vocab_size": 4, "max_position_embeddings": 16})");
  const std::vector<float> embeddings(4 * 8, 0.5f);  // (vocab 4, dim 8)
  fs::test::write_safetensors(
      dir.file("model.safetensors"),
      {{"model.embed_tokens.weight", "F32", {4, 8}, fs::test::float_bytes(embeddings.data(), 32)}});
  const fs::HfCheckpoint checkpoint(dir.path().string());
  const std::string message = input_error_of([&] { fs::hf_tensor_table(checkpoint); });
  BOOST_TEST(contains(message, "key 'num_hidden_layers' (16777215) needs 9 tensors per layer"),
             message);
  BOOST_TEST(contains(message, "config.json"), message);
}

// Before: the declared 4 GiB were allocated and zero-filled before the first data byte was read.
BOOST_AUTO_TEST_CASE(idx_header_claiming_more_than_the_file_holds_fails_before_allocating) {
  const TempDir dir;
  // u8, 3 dimensions 65536 x 256 x 256 = 4 GiB, then 4 data bytes: 20 bytes in all.
  const std::string claim("\0\0\x08\x03\0\x01\0\0\0\0\x01\0\0\0\x01\0\x01\x02\x03\x04", 20);
  for (const bool compressed : {false, true}) {
    const std::string path =
        compressed ? write_gzip(dir.file("claim.idx.gz"), claim) : dir.write("claim.idx", claim);
    const auto start = std::chrono::steady_clock::now();
    const std::string message = input_error_of([&] { fs::read_example_array(path); });
    BOOST_TEST(contains(message, "file ends inside the data (the header says 65536x256x256 of u8)"),
               message);
    BOOST_TEST(seconds_since(start) < 1.0);
  }
}

// Seconds to open a GGUF file of `n_keys` distinct u32 metadata keys.
double seconds_to_open_keys(const TempDir& dir, int n_keys) {
  GgufWriter writer;
  for (int i = 0; i < n_keys; ++i)
    writer.kv_u32("key." + std::to_string(i), static_cast<uint32_t>(i));
  const std::string path =
      dir.write("keys-" + std::to_string(n_keys) + ".gguf", as_string(writer.bytes()));
  const auto start = std::chrono::steady_clock::now();
  const fs::GgufFile file(path);
  const double seconds = seconds_since(start);
  BOOST_TEST(file.metadata().size() == static_cast<size_t>(n_keys));
  BOOST_TEST(file.get_int("key." + std::to_string(n_keys - 1)) == n_keys - 1);
  return seconds;
}

// Before: each key was checked against all earlier ones (51,200 keys: 14 s). Measured as
// scaling, not as a wall-clock bound, so that slow builds (Debug, sanitizers) and busy machines
// do not matter: 4x the keys must cost well under the 16x of a quadratic check.
BOOST_AUTO_TEST_CASE(gguf_metadata_keys_are_checked_for_duplicates_in_linear_time) {
  const TempDir dir;
  const double small = seconds_to_open_keys(dir, 12800);
  const double large = seconds_to_open_keys(dir, 51200);
  BOOST_TEST(large < 8 * small, "51,200 keys: " << large << " s, 12,800 keys: " << small << " s");

  GgufWriter writer;
  for (int i = 0; i < 100; ++i) writer.kv_u32("key." + std::to_string(i), static_cast<uint32_t>(i));
  writer.kv_u32("key.50", 1);
  const std::string duplicate = dir.write("duplicate.gguf", as_string(writer.bytes()));
  const std::string message = input_error_of([&] { fs::GgufFile{duplicate}; });
  BOOST_TEST(contains(message, "GGUF metadata key 'key.50' appears twice"), message);
}
