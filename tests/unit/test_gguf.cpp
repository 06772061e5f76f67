// GGUF reader and GGUF Llama loader: the real stories260K.gguf against the llama2.c .bin of the
// same model (values, logits, tokenization), F16/BF16 files written by the test, and every kind
// of bad input (one clear InputError each, no crash, no giant allocation).
#define BOOST_TEST_MODULE gguf
#include <algorithm>
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/gguf.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"
#include "model_writers.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace utf = boost::unit_test;

namespace {

const std::string gguf_path = "models/stories260K/stories260K.gguf";
const std::string bin_path = "models/stories260K/stories260K.bin";

std::vector<std::vector<int32_t>> eval_sequences(const Tokenizer& tokenizer, int64_t seq_len) {
  const std::string eval_text = test::shared_file("data/tinystories/tinystories_val.txt");
  return encode_paragraphs(tokenizer, read_paragraphs(eval_text, 50), seq_len, eval_text);
}

// The llama2.c model written as GGUF with its tensors in `type` (0 F32, 1 F16, 30 BF16).
std::vector<unsigned char> stories_as_gguf(const Model& bin, uint32_t type, uint32_t version = 3) {
  const LlamaConfig& c = bin.config;
  test::GgufWriter writer(version);
  writer.kv_string("general.architecture", "llama");
  writer.kv_u32("llama.context_length", static_cast<uint32_t>(c.seq_len));
  writer.kv_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  writer.kv_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  writer.kv_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  writer.kv_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  writer.kv_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  writer.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  auto gguf_name = [](const std::string& name) {
    static const std::pair<std::string, std::string> names[] = {
        {"attn_norm", "attn_norm"}, {"attn.wq", "attn_q"},      {"attn.wk", "attn_k"},
        {"attn.wv", "attn_v"},      {"attn.wo", "attn_output"}, {"ffn_norm", "ffn_norm"},
        {"ffn.w1", "ffn_gate"},     {"ffn.w2", "ffn_down"},     {"ffn.w3", "ffn_up"}};
    if (name == "tok_embeddings") return std::string("token_embd.weight");
    if (name == "norm_final") return std::string("output_norm.weight");
    const size_t dot = name.find('.', 7);
    for (const auto& [ours, theirs] : names) {
      if (name.substr(dot + 1) == ours)
        return "blk." + name.substr(7, dot - 7) + "." + theirs + ".weight";
    }
    return std::string("?");
  };
  for (const TensorInfo& t : bin.tensors) {
    std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());
    const float* values = bin.values.data() + t.offset;
    if (type == 0) {
      writer.tensor(gguf_name(t.name), dims, type, test::float_bytes(values, t.count));
    } else {
      std::vector<uint16_t> bits(static_cast<size_t>(t.count));
      for (int64_t i = 0; i < t.count; ++i) {
        bits[static_cast<size_t>(i)] =
            type == 1 ? float_to_half(values[i]) : float_to_bf16(values[i]);
      }
      writer.tensor(gguf_name(t.name), dims, type, test::u16_bytes(bits));
    }
  }
  return writer.bytes();
}

// A tiny valid Llama GGUF (dim 4, 1 layer, 2 heads, vocab 3) whose parts a test can break.
struct TinyLlama {
  std::function<void(test::GgufWriter&)> extra_metadata = [](test::GgufWriter&) {};
  std::string architecture = "llama";
  uint32_t head_count = 2;
  uint32_t context_length = 16;
  float rms_epsilon = 1e-5f;
  uint32_t q_type = 0;
  bool with_ffn_up = true;
  bool with_extra_tensor = false;
  int64_t q_offset = -1;  // -1: placed by the writer
  std::vector<uint64_t> q_dims = {4, 4};

  std::vector<unsigned char> bytes() const {
    test::GgufWriter writer;
    writer.kv_string("general.architecture", architecture);
    writer.kv_u32("llama.context_length", context_length);
    writer.kv_u32("llama.embedding_length", 4);
    writer.kv_u32("llama.feed_forward_length", 6);
    writer.kv_u32("llama.block_count", 1);
    writer.kv_u32("llama.attention.head_count", head_count);
    writer.kv_f32("llama.attention.layer_norm_rms_epsilon", rms_epsilon);
    extra_metadata(writer);
    auto zeros = [](int64_t n, int64_t element = 4) {
      return std::vector<unsigned char>(static_cast<size_t>(n * element), 0);
    };
    writer.tensor("token_embd.weight", {4, 3}, 0, zeros(12));
    writer.tensor("blk.0.attn_norm.weight", {4}, 0, zeros(4));
    writer.tensor("blk.0.attn_q.weight", q_dims, q_type, zeros(16, q_type == 0 ? 4 : 2), q_offset);
    writer.tensor("blk.0.attn_k.weight", {4, 4}, 0, zeros(16));
    writer.tensor("blk.0.attn_v.weight", {4, 4}, 0, zeros(16));
    writer.tensor("blk.0.attn_output.weight", {4, 4}, 0, zeros(16));
    writer.tensor("blk.0.ffn_norm.weight", {4}, 0, zeros(4));
    writer.tensor("blk.0.ffn_gate.weight", {4, 6}, 0, zeros(24));
    writer.tensor("blk.0.ffn_down.weight", {6, 4}, 0, zeros(24));
    if (with_ffn_up) writer.tensor("blk.0.ffn_up.weight", {4, 6}, 0, zeros(24));
    writer.tensor("output_norm.weight", {4}, 0, zeros(4));
    if (with_extra_tensor) writer.tensor("rope_freqs.weight", {2}, 0, zeros(2));
    return writer.bytes();
  }
};

// Loading `bytes` as a GGUF Llama model fails with one InputError naming the file and containing
// every one of `needles`.
void expect_rejected(const std::vector<unsigned char>& bytes,
                     const std::vector<std::string>& needles) {
  const test::TempPath file("bad.gguf");
  test::write_bytes(file.path, bytes);
  try {
    load_gguf_llama(file.path);
    BOOST_FAIL("accepted a bad GGUF file; expected an error containing " << needles.front());
  } catch (const InputError& error) {
    const std::string message = error.what();
    BOOST_TEST_INFO("message: " << message);
    BOOST_TEST(message.find(file.path) != std::string::npos);
    for (const std::string& needle : needles)
      BOOST_TEST(message.find(needle) != std::string::npos, needle);
  }
}

std::vector<unsigned char> raw_u32(uint32_t type, std::vector<unsigned char> value) {
  std::vector<unsigned char> out;
  test::GgufWriter::put(out, type);
  out.insert(out.end(), value.begin(), value.end());
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(real_file_structure, *utf::precondition(test::needs_shared())) {
  const GgufFile file(test::shared_file(gguf_path));
  BOOST_TEST(file.version() == 3u);
  BOOST_TEST(file.tensors().size() == 48u);
  BOOST_TEST(file.metadata().size() == 19u);
  BOOST_TEST(file.alignment() == 32);
  BOOST_TEST(file.data_offset() == 14176);  // tensor infos end at byte 14152, aligned up to 32
  BOOST_TEST(file.get_int("llama.block_count") == 5);
  BOOST_TEST(file.get_int("tokenizer.ggml.padding_token_id") == 4294967295);  // u32 kept exact
  BOOST_TEST(file.get_float("llama.attention.layer_norm_rms_epsilon") == double{1e-5f});
  const auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  BOOST_TEST(tokens.size() == 512u);
  BOOST_TEST(tokens[1] == "<s>");
  const GgufValue* types = file.find("tokenizer.ggml.token_type");
  BOOST_TEST_REQUIRE(types != nullptr);
  BOOST_TEST((types->element_type == GgufValueType::i32));
  BOOST_TEST(types->items[0].integer == 2u);  // <unk> is "unknown" (2), <s> control (3)
  BOOST_TEST(types->items[1].integer == 3u);
  const GgufTensor* q = file.find_tensor("blk.0.attn_k.weight");
  BOOST_TEST_REQUIRE(q != nullptr);
  BOOST_TEST((q->shape == std::vector<int64_t>{32, 64}));  // dims [64, 32] reversed
  BOOST_TEST(q->begin == 14176 + 278784);
}

BOOST_AUTO_TEST_CASE(gguf_and_bin_agree, *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model bin = load_llama2c(test::shared_file(bin_path));
  const Model gguf = load_gguf_llama(test::shared_file(gguf_path));
  BOOST_TEST(gguf.format == "gguf-v3");
  BOOST_TEST(gguf.config.dim == bin.config.dim);
  BOOST_TEST(gguf.config.hidden_dim == bin.config.hidden_dim);
  BOOST_TEST(gguf.config.n_layers == bin.config.n_layers);
  BOOST_TEST(gguf.config.n_heads == bin.config.n_heads);
  BOOST_TEST(gguf.config.n_kv_heads == bin.config.n_kv_heads);
  BOOST_TEST(gguf.config.vocab_size == bin.config.vocab_size);
  BOOST_TEST(gguf.config.seq_len == 2048);  // llama.context_length; the .bin header says 512
  BOOST_TEST(!gguf.config.shared_classifier);
  // output.weight is stored apart from token_embd.weight: 512 x 64 more parameters.
  BOOST_TEST(bin.n_parameters() == 260032);
  BOOST_TEST(gguf.n_parameters() == 260032 + 512 * 64);
  for (const TensorInfo& t : bin.tensors) {
    const TensorInfo& g = gguf.tensor(t.name);
    BOOST_TEST(g.offset == t.offset, t.name);  // same llama2.c layout, output appended
    BOOST_TEST((g.stored == StoredType::f32));
    BOOST_TEST(std::equal(bin.values.begin() + t.offset, bin.values.begin() + t.offset + t.count,
                          gguf.values.begin() + g.offset),
               t.name << " differs");
  }
  const TensorInfo& output = gguf.tensor("output");
  BOOST_TEST(std::equal(bin.values.begin(), bin.values.begin() + output.count,
                        gguf.values.begin() + output.offset));

  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"), 512);
  const auto sequences = eval_sequences(tokenizer, bin.config.seq_len);
  const float difference = test::max_abs_difference(test::llama_logits(bin, sequences),
                                                    test::llama_logits(gguf, sequences));
  BOOST_TEST_MESSAGE("max |logit(.bin) - logit(.gguf)| over the eval set = " << difference);
  BOOST_TEST(difference <= 1e-5f);
}

BOOST_AUTO_TEST_CASE(gguf_tokenizer_matches_tokenizer_bin,
                     *utf::precondition(test::needs_shared())) {
  const GgufFile file(test::shared_file(gguf_path));
  const Tokenizer from_gguf = gguf_tokenizer(file, 512);
  const Tokenizer from_bin =
      Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"), 512);
  BOOST_TEST(from_gguf.bos_id() == 1);
  BOOST_TEST(from_gguf.eos_id() == 2);
  const auto expected = eval_sequences(from_bin, 512);
  const auto actual = eval_sequences(from_gguf, 512);
  BOOST_TEST_REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    BOOST_TEST(actual[i] == expected[i], "paragraph " << i);
  // Decoding agrees too (BOS itself is spelt differently: "<s>" in GGUF, "\n<s>\n" in tok512.bin).
  const std::vector<int32_t> text_ids(expected[0].begin() + 1, expected[0].end());
  BOOST_TEST(from_gguf.decode(text_ids) == from_bin.decode(text_ids));
}

BOOST_AUTO_TEST_CASE(f16_and_bf16_files_load_exactly, *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model bin = load_llama2c(test::shared_file(bin_path));
  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"), 512);
  const auto sequences = eval_sequences(tokenizer, bin.config.seq_len);
  for (const auto& [type, stored] :
       {std::pair{1u, StoredType::f16}, std::pair{30u, StoredType::bf16}}) {
    const test::TempPath file("stories-" + std::string(stored_type_name(stored)) + ".gguf");
    test::write_bytes(file.path, stories_as_gguf(bin, type));
    const Model loaded = load_gguf_llama(file.path);
    // The reference: the .bin's values rounded to the 16-bit type by the plain conversions.
    Model rounded = bin;
    for (float& w : rounded.values)
      w = type == 1 ? half_to_float(float_to_half(w)) : bf16_to_float(float_to_bf16(w));
    BOOST_TEST_REQUIRE(loaded.n_parameters() == rounded.n_parameters());
    BOOST_TEST(
        std::memcmp(loaded.values.data(), rounded.values.data(), rounded.values.size() * 4) == 0);
    for (const TensorInfo& t : loaded.tensors) BOOST_TEST((t.stored == stored), t.name);
    const float difference = test::max_abs_difference(test::llama_logits(rounded, sequences),
                                                      test::llama_logits(loaded, sequences));
    BOOST_TEST(difference == 0.0f);
    // Rounding to 16 bits moves the logits, but not far: the file is the model.
    const float to_f32 = test::max_abs_difference(test::llama_logits(bin, sequences),
                                                  test::llama_logits(loaded, sequences));
    BOOST_TEST_MESSAGE(stored_type_name(stored) << " vs f32 max logit difference " << to_f32);
    BOOST_TEST(to_f32 > 0.0f);
    BOOST_TEST(to_f32 < 1.0f);
    // Perturbation acts on the stored 16-bit patterns: a bit flip changes exactly one of them.
    Model model = loaded;
    Perturber perturber(model, 3, "stories");
    std::vector<Touched> undo;
    std::vector<SiteRecord> record;
    perturber.apply(model, parse_strategy("bitflip bits=exponent", "t"), 1000, 0, undo, &record);
    for (const SiteRecord& site : record) {
      const auto before = float_to_stored16(stored, site.old_value),
                 after = float_to_stored16(stored, site.new_value);
      BOOST_TEST_REQUIRE(std::popcount(static_cast<unsigned>(before ^ after)) == 1);
      BOOST_TEST_REQUIRE(site.new_value == stored16_to_float(stored, after));
      const int bit = std::countr_zero(static_cast<unsigned>(before ^ after));
      BOOST_TEST_REQUIRE(bit >= (stored == StoredType::bf16 ? 7 : 10));
      BOOST_TEST_REQUIRE(bit <= 14);
    }
    Perturber::restore(model, undo);
    BOOST_TEST(std::memcmp(model.values.data(), loaded.values.data(), loaded.values.size() * 4) ==
               0);
  }
}

BOOST_AUTO_TEST_CASE(version_2_is_read, *utf::precondition(test::needs_shared())) {
  const Model bin = load_llama2c(test::shared_file(bin_path));
  const test::TempPath file("v2.gguf");
  test::write_bytes(file.path, stories_as_gguf(bin, 0, 2));
  const Model loaded = load_gguf_llama(file.path);
  BOOST_TEST(loaded.format == "gguf-v2");
  BOOST_TEST(loaded.values == bin.values);
  BOOST_TEST(loaded.config.shared_classifier);
}

BOOST_AUTO_TEST_CASE(tiny_model_is_valid) {
  const test::TempPath file("tiny.gguf");
  test::write_bytes(file.path, TinyLlama{}.bytes());
  const Model model = load_gguf_llama(file.path);
  BOOST_TEST(model.n_parameters() == 12 + 4 + 4 * 16 + 4 + 3 * 24 + 4);
  BOOST_TEST(model.config.n_kv_heads == 2);  // head_count_kv defaults to head_count
  BOOST_TEST(model.config.rope_theta == 10000.0f);
}

// --- bad input: each one InputError naming the file and the part at fault ----------------------

BOOST_AUTO_TEST_CASE(rejects_bad_magic_version_and_empty_file) {
  std::vector<unsigned char> bytes = TinyLlama{}.bytes();
  bytes[0] = 'X';
  expect_rejected(bytes, {"not a GGUF file"});
  bytes = TinyLlama{}.bytes();
  bytes[4] = 1;
  expect_rejected(bytes, {"GGUF version: expected 2 or 3, found 1"});
  expect_rejected({}, {"truncated GGUF"});
}

BOOST_AUTO_TEST_CASE(rejects_truncated_files) {
  const std::vector<unsigned char> bytes = TinyLlama{}.bytes();
  // Cut inside the header, the metadata, the tensor infos and the data.
  for (size_t keep : {size_t{10}, size_t{60}, size_t{500}, bytes.size() - 1}) {
    BOOST_TEST_CONTEXT("truncated to " << keep << " of " << bytes.size() << " bytes") {
      const std::vector<unsigned char> cut(bytes.begin(), bytes.begin() + static_cast<long>(keep));
      expect_rejected(cut, {"truncated"});
    }
  }
}

BOOST_AUTO_TEST_CASE(rejects_offsets_past_the_end_and_misaligned) {
  TinyLlama tiny;
  tiny.q_offset = 1 << 20;
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "extends past the end"});
  tiny.q_offset = 4;
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "not a multiple of the alignment 32"});
}

BOOST_AUTO_TEST_CASE(rejects_overlapping_tensors) {
  TinyLlama tiny;
  tiny.q_offset = 0;  // on top of token_embd.weight
  expect_rejected(tiny.bytes(), {"'token_embd.weight'", "'blk.0.attn_q.weight'", "overlap"});
}

BOOST_AUTO_TEST_CASE(rejects_shape_products_that_overflow) {
  TinyLlama tiny;
  tiny.q_dims = {uint64_t{1} << 32, uint64_t{1} << 32};
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "overflow"});
  tiny.q_dims = {uint64_t{1} << 62, 1};  // fits as a count, not as bytes
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "overflow"});
}

BOOST_AUTO_TEST_CASE(rejects_unknown_tensor_and_value_types) {
  TinyLlama tiny;
  tiny.q_type = 2;
  expect_rejected(tiny.bytes(),
                  {"'blk.0.attn_q.weight'", "unsupported tensor type ggml type 2 (Q4_0)"});
  tiny.q_type = 77;
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "ggml type 77 (unknown)"});
  TinyLlama bad_value;
  bad_value.extra_metadata = [](test::GgufWriter& w) {
    w.kv_raw("general.weird", raw_u32(13, {0, 0, 0, 0}));
  };
  expect_rejected(bad_value.bytes(), {"'general.weird'", "unknown value type 13"});
}

BOOST_AUTO_TEST_CASE(rejects_huge_declared_lengths_without_allocating) {
  // A string of 2^62 bytes, an array of 2^60 elements, 2^40 tensors: refused before allocation.
  TinyLlama huge_string;
  huge_string.extra_metadata = [](test::GgufWriter& w) {
    std::vector<unsigned char> value;
    test::GgufWriter::put(value, uint64_t{1} << 62);
    w.kv_raw("general.name", raw_u32(8, value));
  };
  expect_rejected(huge_string.bytes(),
                  {"'general.name'", "declared string length 4611686018427387904"});
  TinyLlama huge_array;
  huge_array.extra_metadata = [](test::GgufWriter& w) {
    std::vector<unsigned char> value;
    test::GgufWriter::put(value, uint32_t{6});
    test::GgufWriter::put(value, uint64_t{1} << 60);
    w.kv_raw("tokenizer.ggml.scores", raw_u32(9, value));
  };
  expect_rejected(huge_array.bytes(),
                  {"'tokenizer.ggml.scores'", "declared array of 1152921504606846976 f32"});
  std::vector<unsigned char> many_tensors = test::GgufWriter().bytes(int64_t{1} << 40);
  expect_rejected(many_tensors, {"1099511627776 tensors; at most 1048576"});
  std::vector<unsigned char> more_tensors_than_bytes = test::GgufWriter().bytes(1000);
  expect_rejected(more_tensors_than_bytes, {"declared tensor count 1000 cannot fit"});
  std::vector<unsigned char> huge_key = {'G', 'G', 'U', 'F'};
  test::GgufWriter::put(huge_key, uint32_t{3});
  test::GgufWriter::put(huge_key, uint64_t{0});        // tensors
  test::GgufWriter::put(huge_key, uint64_t{1});        // metadata pairs
  test::GgufWriter::put(huge_key, uint64_t{1} << 50);  // the key's length
  huge_key.resize(64, 0);
  expect_rejected(huge_key, {"metadata key 0", "declared string length 1125899906842624"});
}

BOOST_AUTO_TEST_CASE(rejects_wrong_architecture_and_metadata_types) {
  TinyLlama tiny;
  tiny.architecture = "falcon";
  expect_rejected(tiny.bytes(), {"'general.architecture'", "expected \"llama\"", "\"falcon\""});
  TinyLlama string_count;
  string_count.extra_metadata = [](test::GgufWriter& w) {
    w.kv_string("llama.attention.head_count_kv", "two");
  };
  expect_rejected(string_count.bytes(),
                  {"'llama.attention.head_count_kv'", "expected an integer, found string"});
  TinyLlama twice;
  twice.extra_metadata = [](test::GgufWriter& w) { w.kv_u32("llama.block_count", 1); };
  expect_rejected(twice.bytes(), {"'llama.block_count' appears twice"});
  TinyLlama alignment;
  alignment.extra_metadata = [](test::GgufWriter& w) { w.kv_u32("general.alignment", 24); };
  expect_rejected(alignment.bytes(), {"'general.alignment'", "power of two, found 24"});
}

BOOST_AUTO_TEST_CASE(rejects_config_that_disagrees_with_tensors) {
  TinyLlama tiny;
  tiny.q_dims = {4, 3};
  expect_rejected(tiny.bytes(), {"'blk.0.attn_q.weight'", "expected shape 4x4", "found 3x4"});
  TinyLlama heads;
  heads.head_count = 3;
  expect_rejected(heads.bytes(), {"'llama.attention.head_count' (3) must divide"});
  TinyLlama rope;
  rope.extra_metadata = [](test::GgufWriter& w) { w.kv_u32("llama.rope.dimension_count", 1); };
  expect_rejected(rope.bytes(),
                  {"'llama.rope.dimension_count'", "expected the head dimension 2", "found 1"});
  TinyLlama context;  // no tensor depends on it, but the rotary table would be sized by it
  context.context_length = 1u << 24;
  expect_rejected(context.bytes(),
                  {"'llama.context_length': expected at most 1048576, found 16777216"});
  TinyLlama vocab;
  vocab.extra_metadata = [](test::GgufWriter& w) { w.kv_u32("llama.vocab_size", 5); };
  expect_rejected(vocab.bytes(), {"'llama.vocab_size' (5)", "3 rows"});
  for (const float epsilon : {std::numeric_limits<float>::infinity(), -1e-5f, 0.0f,
                              std::numeric_limits<float>::quiet_NaN()}) {
    TinyLlama norm;
    norm.rms_epsilon = epsilon;
    expect_rejected(norm.bytes(),
                    {"'llama.attention.layer_norm_rms_epsilon'", "must be positive and finite"});
  }
}

BOOST_AUTO_TEST_CASE(rejects_missing_and_extra_tensors) {
  TinyLlama missing;
  missing.with_ffn_up = false;
  expect_rejected(missing.bytes(), {"'blk.0.ffn_up.weight' is missing", "expected shape 6x4"});
  TinyLlama extra;
  extra.with_extra_tensor = true;
  expect_rejected(extra.bytes(), {"'rope_freqs.weight' is not part of the Llama architecture"});
  test::GgufWriter writer;
  writer.kv_string("general.architecture", "llama");
  writer.tensor("token_embd.weight", {4, 3}, 0, std::vector<unsigned char>(48, 0));
  expect_rejected(writer.bytes(), {"'llama.embedding_length' is missing"});
}

BOOST_AUTO_TEST_CASE(corrupted_real_file_never_crashes, *utf::precondition(test::needs_shared())) {
  // Random byte changes in the header, metadata and tensor infos of the real file, and random
  // truncations: each load either succeeds or throws InputError (never another exception, a
  // crash or a hang). Deterministic: a fixed linear congruential sequence picks the bytes.
  std::ifstream in(test::shared_file(gguf_path), std::ios::binary);
  const std::vector<unsigned char> original((std::istreambuf_iterator<char>(in)),
                                            std::istreambuf_iterator<char>());
  const test::TempPath file("fuzz.gguf");
  uint64_t state = 12345;
  auto next = [&] { return (state = state * 6364136223846793005u + 1442695040888963407u) >> 33; };
  int rejected = 0, accepted = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<unsigned char> bytes = original;
    if (round % 4 == 3) {
      bytes.resize(next() % bytes.size());
    } else {
      for (int change = 0; change < 1 + round % 3; ++change)
        bytes[next() % 14176] = static_cast<unsigned char>(next());
    }
    test::write_bytes(file.path, bytes);
    try {
      load_gguf_llama(file.path);
      ++accepted;
    } catch (const InputError& error) {
      BOOST_TEST_REQUIRE(std::string(error.what()).starts_with(file.path));
      ++rejected;
    }
  }
  BOOST_TEST_MESSAGE("corrupted files: " << rejected << " rejected, " << accepted << " accepted");
  BOOST_TEST(rejected > 100);
}
