#define BOOST_TEST_MODULE llama2c
// llama2.c v0 loading: the real stories260K checkpoint against expected.json and against
// values read independently with python's struct.unpack at the file offsets; small synthetic
// files (written to a temporary directory) for the layout, the unshared classifier and every
// kind of bad header.
#include <unistd.h>

#include <array>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using fracsweep::InputError;
using fracsweep::LlamaConfig;
using fracsweep::load_llama2c;
using fracsweep::Model;
using fracsweep::read_llama2c_header;
using fracsweep::TensorInfo;

namespace {

// dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
using Header = std::array<int32_t, 7>;

// A small valid model: head_dim 2, kv_dim 2.
constexpr Header toy_header = {4, 6, 2, 2, 1, 5, 3};
// Its floats, written out by hand from the llama2.c layout:
//   tok 5*4=20, rms_att 2*4=8, wq 2*4*4=32, wk 2*2*4=16, wv 16, wo 32, rms_ffn 8,
//   w1 2*6*4=48, w2 48, w3 48, rms_final 4  -> 280 parameters;
//   freq_cis seq_len * head_dim = 3*2 = 6; classifier (unshared only) 20.
constexpr int64_t toy_parameters = 280, toy_freq_cis = 6, toy_classifier = 20;

using fracsweep::test::TempDir;

// Writes the 7 header ints and `n_floats` floats whose value is their position (0, 1, ...).
std::string write_model(const TempDir& dir, const std::string& name, const Header& header,
                        int64_t n_floats) {
  const std::string path = dir.file(name);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), sizeof(int32_t) * header.size());
  for (int64_t i = 0; i < n_floats; ++i) {
    const auto value = static_cast<float>(i);
    out.write(reinterpret_cast<const char*>(&value), sizeof value);
  }
  BOOST_TEST_REQUIRE(static_cast<bool>(out), "could not write " << path);
  return path;
}

// Runs `load` and requires an InputError whose message names the file and contains `fragment`.
template <class Load>
void expect_input_error(const std::string& path, const std::string& fragment, Load load) {
  try {
    load();
    BOOST_ERROR("no InputError for " << path << " (expected one mentioning '" << fragment << "')");
  } catch (const InputError& e) {
    const std::string message = e.what();
    BOOST_TEST(message.find(path) != std::string::npos,
               "message does not name the file: " << message);
    BOOST_TEST(message.find(fragment) != std::string::npos,
               "message lacks '" << fragment << "': " << message);
  }
}

void expect_load_error(const std::string& path, const std::string& fragment) {
  expect_input_error(path, fragment, [&] { load_llama2c(path); });
  expect_input_error(path, fragment, [&] { read_llama2c_header(path); });
}

float value_at(const Model& model, const std::string& tensor, int64_t index) {
  return model.data(tensor)[index];
}

}  // namespace

// --- stories260K --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(stories260k_header_and_parameter_count,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const fracsweep::test::Fixture fixture;
  const std::string path = fracsweep::test::shared_file("models/stories260K/stories260K.bin");
  const LlamaConfig header = read_llama2c_header(path);
  BOOST_TEST(header.dim == fixture.number("model.header.dim"));
  BOOST_TEST(header.hidden_dim == fixture.number("model.header.hidden_dim"));
  BOOST_TEST(header.n_layers == fixture.number("model.header.n_layers"));
  BOOST_TEST(header.n_heads == fixture.number("model.header.n_heads"));
  BOOST_TEST(header.n_kv_heads == fixture.number("model.header.n_kv_heads"));
  BOOST_TEST(header.vocab_size == fixture.number("model.header.vocab_size"));
  BOOST_TEST(header.seq_len == fixture.number("model.header.seq_len"));
  BOOST_TEST(header.shared_classifier);
  BOOST_TEST(fixture.text("model.shared_classifier") == "True");
  BOOST_TEST(header.head_dim() == 8);
  BOOST_TEST(header.kv_dim() == 32);

  const Model model = load_llama2c(path);
  BOOST_TEST(model.path == path);
  BOOST_TEST(model.format == "llama2c-v0");
  BOOST_TEST(model.n_parameters() == 260032);
  BOOST_TEST(model.n_parameters() == fixture.number("model.n_parameters"));
  BOOST_TEST(model.config.dim == header.dim);
}

BOOST_AUTO_TEST_CASE(stories260k_tensors_are_the_fixture_stacks_split_per_layer,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const fracsweep::test::Fixture fixture;
  const Model model =
      load_llama2c(fracsweep::test::shared_file("models/stories260K/stories260K.bin"));
  // Fixture (stacked) name -> our per-layer suffix; in file order.
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"tok_embeddings", "tok_embeddings"},
      {"rms_att", "attn_norm"},
      {"wq", "attn.wq"},
      {"wk", "attn.wk"},
      {"wv", "attn.wv"},
      {"wo", "attn.wo"},
      {"rms_ffn", "ffn_norm"},
      {"w1", "ffn.w1"},
      {"w2", "ffn.w2"},
      {"w3", "ffn.w3"},
      {"rms_final", "norm_final"}};
  std::vector<TensorInfo> expected;
  int64_t offset = 0;
  auto push = [&](const std::string& name, const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    expected.push_back(TensorInfo{name, shape, offset, count});
    offset += count;
  };
  for (const auto& [stacked, suffix] : kinds) {
    const std::string key = "model.tensors." + stacked;
    std::vector<int64_t> shape;
    for (int i = 0; i < std::stoi(fixture.text(key + "#")); ++i) {
      shape.push_back(std::stoll(fixture.text(key + "." + std::to_string(i))));
    }
    const bool per_layer = stacked != "tok_embeddings" && stacked != "rms_final";
    if (!per_layer) {
      push(suffix, shape);
      continue;
    }
    BOOST_TEST_REQUIRE(shape[0] == model.config.n_layers);
    const std::vector<int64_t> layer_shape(shape.begin() + 1, shape.end());
    for (int64_t layer = 0; layer < shape[0]; ++layer) {
      push("layers." + std::to_string(layer) + "." + suffix, layer_shape);
    }
  }
  BOOST_TEST(offset == model.n_parameters());
  BOOST_TEST_REQUIRE(model.tensors.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    BOOST_TEST(model.tensors[i].name == expected[i].name);
    BOOST_TEST(model.tensors[i].shape == expected[i].shape, "tensor " << expected[i].name);
    BOOST_TEST(model.tensors[i].offset == expected[i].offset, "tensor " << expected[i].name);
    BOOST_TEST(model.tensors[i].count == expected[i].count, "tensor " << expected[i].name);
  }
  const std::vector<TensorInfo> table = fracsweep::llama2c_tensor_table(model.config);
  BOOST_TEST_REQUIRE(table.size() == model.tensors.size());
  for (size_t i = 0; i < table.size(); ++i) {
    BOOST_TEST(table[i].name == model.tensors[i].name);
    BOOST_TEST(table[i].offset == model.tensors[i].offset);
  }
  // A per-layer slice of a stacked [5, 64, 64] tensor is [64, 64].
  BOOST_TEST(model.tensor("layers.3.attn.wq").shape == (std::vector<int64_t>{64, 64}));
}

BOOST_AUTO_TEST_CASE(stories260k_values_match_python_struct_reads,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  // Read with python: struct.unpack('<f') at 28 + 4 * (float position in file); stacked
  // tensor kinds are consecutive in the file, layer after layer.
  const Model model =
      load_llama2c(fracsweep::test::shared_file("models/stories260K/stories260K.bin"));
  const int64_t last_of_64x64 = 64 * 64 - 1;
  BOOST_TEST(value_at(model, "tok_embeddings", 0) == -0.29474878311157227f);
  BOOST_TEST(value_at(model, "tok_embeddings", 512 * 64 - 1) == -0.424032598733902f);
  BOOST_TEST(value_at(model, "layers.0.attn_norm", 0) == 0.9722429513931274f);
  BOOST_TEST(value_at(model, "layers.4.attn_norm", 63) == 1.0649559497833252f);
  BOOST_TEST(value_at(model, "layers.0.attn.wq", 0) == 0.04439278692007065f);
  BOOST_TEST(value_at(model, "layers.3.attn.wq", 0) == -0.01660505123436451f);
  BOOST_TEST(value_at(model, "layers.3.attn.wq", 54 * 64 + 36) == 1.8515630960464478f);
  BOOST_TEST(value_at(model, "layers.3.attn.wq", last_of_64x64) == 0.19094227254390717f);
  BOOST_TEST(value_at(model, "layers.4.attn.wq", last_of_64x64) == -0.18901382386684418f);
  BOOST_TEST(value_at(model, "layers.0.attn.wk", 0) == 0.2161301076412201f);
  BOOST_TEST(value_at(model, "layers.2.attn.wk", 0) == 0.05322672799229622f);
  BOOST_TEST(value_at(model, "layers.2.attn.wk", 32 * 64 - 1) == 0.018669389188289642f);
  BOOST_TEST(value_at(model, "layers.4.attn.wk", 32 * 64 - 1) == -0.2651301622390747f);
  BOOST_TEST(value_at(model, "layers.0.attn.wv", 0) == 0.09112543612718582f);
  BOOST_TEST(value_at(model, "layers.0.attn.wo", 0) == 0.017344146966934204f);
  BOOST_TEST(value_at(model, "layers.4.attn.wo", last_of_64x64) == 0.0062035913579165936f);
  BOOST_TEST(value_at(model, "layers.0.ffn_norm", 0) == 0.7367770671844482f);
  BOOST_TEST(value_at(model, "layers.1.ffn_norm", 0) == 0.878699779510498f);
  BOOST_TEST(value_at(model, "layers.1.ffn_norm", 63) == 0.7612276673316956f);
  BOOST_TEST(value_at(model, "layers.0.ffn.w1", 0) == 0.21368665993213654f);
  BOOST_TEST(value_at(model, "layers.0.ffn.w2", 0) == 0.13498419523239136f);
  BOOST_TEST(value_at(model, "layers.4.ffn.w2", 0) == -0.04791264981031418f);
  BOOST_TEST(value_at(model, "layers.4.ffn.w2", 64 * 172 - 1) == -0.0035068716388195753f);
  BOOST_TEST(value_at(model, "layers.0.ffn.w3", 0) == 0.07037118822336197f);
  BOOST_TEST(value_at(model, "layers.4.ffn.w3", 172 * 64 - 1) == 0.10603193938732147f);
  BOOST_TEST(value_at(model, "norm_final", 0) == 2.4583089351654053f);
  BOOST_TEST(value_at(model, "norm_final", 5) == 4.425094127655029f);
  BOOST_TEST(value_at(model, "norm_final", 63) == 1.7077769041061401f);
  // The last parameter is the last of norm_final: freq_cis is not part of the parameters.
  BOOST_TEST(model.values[model.values.size() - 1] == 1.7077769041061401f);
  BOOST_CHECK_THROW(model.tensor("output"), InputError);  // shared classifier: no copy
}

// --- synthetic files: layout -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(shared_classifier_layout_skips_freq_cis) {
  const TempDir dir;
  const std::string path = write_model(dir, "toy.bin", toy_header, toy_parameters + toy_freq_cis);
  const Model model = load_llama2c(path);
  BOOST_TEST(model.config.shared_classifier);
  BOOST_TEST(model.config.vocab_size == 5);
  BOOST_TEST_REQUIRE(model.n_parameters() == toy_parameters);
  for (int64_t i = 0; i < toy_parameters; ++i) {
    BOOST_TEST_REQUIRE(model.values[static_cast<size_t>(i)] == static_cast<float>(i));
  }
  // Offsets written out by hand: tok 0, attn_norm 20/24, wq 28/44, wk 60/68, wv 76/84,
  // wo 92/108, ffn_norm 124/128, w1 132/156, w2 180/204, w3 228/252, norm_final 276.
  const std::vector<std::pair<std::string, int64_t>> offsets = {
      {"tok_embeddings", 0},      {"layers.0.attn_norm", 20}, {"layers.1.attn_norm", 24},
      {"layers.0.attn.wq", 28},   {"layers.1.attn.wq", 44},   {"layers.0.attn.wk", 60},
      {"layers.1.attn.wk", 68},   {"layers.1.attn.wv", 84},   {"layers.1.attn.wo", 108},
      {"layers.0.ffn_norm", 124}, {"layers.1.ffn.w1", 156},   {"layers.0.ffn.w2", 180},
      {"layers.1.ffn.w3", 252},   {"norm_final", 276}};
  for (const auto& [name, offset] : offsets) {
    BOOST_TEST(model.tensor(name).offset == offset, name);
    BOOST_TEST(value_at(model, name, 0) == static_cast<float>(offset), name);
  }
  BOOST_TEST(model.tensor("layers.1.attn.wk").shape == (std::vector<int64_t>{2, 4}));
  BOOST_TEST(model.tensor("layers.0.ffn.w2").shape == (std::vector<int64_t>{4, 6}));
  BOOST_TEST(model.tensor("layers.0.ffn.w1").shape == (std::vector<int64_t>{6, 4}));
}

BOOST_AUTO_TEST_CASE(negative_vocab_loads_an_unshared_output_after_freq_cis) {
  const TempDir dir;
  Header header = toy_header;
  header[5] = -5;
  const std::string path =
      write_model(dir, "unshared.bin", header, toy_parameters + toy_freq_cis + toy_classifier);
  const Model model = load_llama2c(path);
  BOOST_TEST(!model.config.shared_classifier);
  BOOST_TEST(model.config.vocab_size == 5);
  BOOST_TEST(model.n_parameters() == toy_parameters + toy_classifier);
  const TensorInfo& output = model.tensor("output");
  BOOST_TEST(output.shape == (std::vector<int64_t>{5, 4}));
  BOOST_TEST(output.offset == toy_parameters);
  BOOST_TEST(model.tensors.back().name == "output");
  // The classifier is the file's last 20 floats (positions 286..305), not the freq_cis block.
  for (int64_t i = 0; i < toy_classifier; ++i) {
    BOOST_TEST(value_at(model, "output", i) ==
               static_cast<float>(toy_parameters + toy_freq_cis + i));
  }
  BOOST_TEST(value_at(model, "norm_final", 3) == 279.0f);

  // The same header without the classifier is one tok_embeddings short.
  expect_load_error(write_model(dir, "unshared-short.bin", header, toy_parameters + toy_freq_cis),
                    "file size");
}

// --- synthetic files: bad input ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(missing_file_and_short_header) {
  const TempDir dir;
  expect_load_error(dir.file("does-not-exist.bin"), "does not exist");
  expect_load_error(dir.file(""), "not a regular file");  // the directory itself

  const std::string short_path = dir.file("short.bin");
  {
    std::ofstream out(short_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(toy_header.data()), 27);  // one byte short
  }
  expect_load_error(short_path, "28-byte header");
  expect_load_error(write_model(dir, "empty.bin", toy_header, 0), "file size");
}

BOOST_AUTO_TEST_CASE(zero_and_negative_dimensions_name_the_field) {
  const TempDir dir;
  const std::array<const char*, 7> fields = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                             "n_kv_heads", "vocab_size", "seq_len"};
  for (size_t field = 0; field < fields.size(); ++field) {
    for (int32_t bad : {0, -4}) {
      if (field == 5 && bad < 0) continue;  // negative vocab means an unshared classifier
      Header header = toy_header;
      header[field] = bad;
      const std::string name = std::string(fields[field]) + "-" + std::to_string(bad) + ".bin";
      expect_load_error(write_model(dir, name, header, toy_parameters + toy_freq_cis),
                        std::string("field ") + fields[field]);
    }
  }
}

BOOST_AUTO_TEST_CASE(vocabulary_holds_at_least_unk_bos_and_eos) {
  const TempDir dir;
  for (int32_t vocab : {1, 2, -2}) {
    Header header = toy_header;
    header[5] = vocab;
    expect_load_error(write_model(dir, "vocab" + std::to_string(vocab) + ".bin", header, 300),
                      "vocab_size (absolute value): expected at least 3 (<unk>, BOS 1 and EOS 2");
  }
  // Three tokens (a character-level vocabulary can be this small): 8 embedding floats fewer.
  Header three = toy_header;
  three[5] = 3;
  const Model model =
      load_llama2c(write_model(dir, "vocab3.bin", three, toy_parameters - 8 + toy_freq_cis));
  BOOST_TEST(model.config.vocab_size == 3);
  BOOST_TEST(model.n_parameters() == toy_parameters - 8);
}

BOOST_AUTO_TEST_CASE(head_counts_must_divide_and_head_dim_must_be_even) {
  const TempDir dir;
  // n_heads 4 does not divide dim 6.
  expect_load_error(write_model(dir, "heads.bin", {6, 6, 1, 4, 2, 5, 3}, 400), "must divide dim");
  // n_kv_heads 3 does not divide n_heads 4.
  expect_load_error(write_model(dir, "kv.bin", {8, 6, 1, 4, 3, 5, 3}, 400), "must divide n_heads");
  // head_dim = 6 / 2 = 3 is odd.
  expect_load_error(write_model(dir, "odd.bin", {6, 6, 1, 2, 1, 5, 3}, 400), "must be even");
}

BOOST_AUTO_TEST_CASE(file_one_float_too_long_or_too_short) {
  const TempDir dir;
  const int64_t exact = toy_parameters + toy_freq_cis;
  BOOST_CHECK_NO_THROW(load_llama2c(write_model(dir, "exact.bin", toy_header, exact)));
  expect_load_error(write_model(dir, "long.bin", toy_header, exact + 1), "file size");
  expect_load_error(write_model(dir, "short.bin", toy_header, exact - 1), "file size");
}

BOOST_AUTO_TEST_CASE(hostile_headers_are_rejected_without_huge_allocations) {
  const TempDir dir;
  const int32_t big = 1 << 24;
  // Every field at 2^24 (head_dim 2): n_layers * dim * dim = 2^72 overflows int64.
  expect_load_error(
      write_model(dir, "overflow.bin", {big, big, big, big / 2, big / 2, big, big}, 16),
      "llama2.c header");
  // Fields far beyond any real model, and the most negative vocab.
  const int32_t max32 = INT32_MAX;
  expect_load_error(
      write_model(dir, "max.bin", {max32, max32, max32, max32, max32, max32, max32}, 16), "dim");
  expect_load_error(write_model(dir, "min-vocab.bin", {4, 6, 2, 2, 1, INT32_MIN, 3}, 16),
                    "vocab_size");
  // Representable but enormous (~2^46 floats): rejected by the size check before reading.
  expect_load_error(
      write_model(dir, "huge.bin", {1 << 14, 1 << 14, 1 << 10, 1 << 12, 1 << 12, 1 << 14, 1 << 14},
                  16),
      "file size");
}
