// Hugging Face LlamaForCausalLM directories: stories260K converted by the test to the HF layout
// (rotate-half q/k row order, HF names, config.json), single-file F32 and sharded BF16, must give
// the llama2.c model's values and logits; and every kind of bad directory is refused clearly.
#define BOOST_TEST_MODULE hf_model
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/hf.hpp"
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

// HF name of each llama2.c tensor, written independently of the loader's table.
std::string hf_name(const std::string& name) {
  if (name == "tok_embeddings") return "model.embed_tokens.weight";
  if (name == "norm_final") return "model.norm.weight";
  if (name == "output") return "lm_head.weight";
  const size_t dot = name.find('.', 7);
  const std::string prefix = "model.layers." + name.substr(7, dot - 7) + ".",
                    suffix = name.substr(dot + 1);
  if (suffix == "attn_norm") return prefix + "input_layernorm.weight";
  if (suffix == "ffn_norm") return prefix + "post_attention_layernorm.weight";
  if (suffix == "attn.wq") return prefix + "self_attn.q_proj.weight";
  if (suffix == "attn.wk") return prefix + "self_attn.k_proj.weight";
  if (suffix == "attn.wv") return prefix + "self_attn.v_proj.weight";
  if (suffix == "attn.wo") return prefix + "self_attn.o_proj.weight";
  if (suffix == "ffn.w1") return prefix + "mlp.gate_proj.weight";
  if (suffix == "ffn.w2") return prefix + "mlp.down_proj.weight";
  return prefix + "mlp.up_proj.weight";
}

// What HF's conversion script does to Meta/llama2.c q and k: per head, the adjacent rotation
// pair (2i, 2i+1) moves to rows (i, head_dim/2 + i). w: (n_heads * head_dim, width).
std::vector<float> to_rotate_half(const float* w, int64_t n_heads, int64_t head_dim,
                                  int64_t width) {
  std::vector<float> out(static_cast<size_t>(n_heads * head_dim * width));
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const float* from = w + (h * head_dim + 2 * i + j) * width;
        std::copy(from, from + width, out.begin() + (h * head_dim + j * head_dim / 2 + i) * width);
      }
    }
  }
  return out;
}

std::string llama_config_json(const LlamaConfig& c, bool tied, const std::string& extra = "") {
  return "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
         "\"hidden_size\": " +
         std::to_string(c.dim) + ", \"intermediate_size\": " + std::to_string(c.hidden_dim) +
         ", \"num_hidden_layers\": " + std::to_string(c.n_layers) +
         ", \"num_attention_heads\": " + std::to_string(c.n_heads) +
         ", \"num_key_value_heads\": " + std::to_string(c.n_kv_heads) +
         ", \"vocab_size\": " + std::to_string(c.vocab_size) +
         ", \"max_position_embeddings\": " + std::to_string(c.seq_len) +
         ", \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", "
         "\"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\", "
         "\"tie_word_embeddings\": " +
         (tied ? "true" : "false") + extra + "}";
}

// stories260K's tensors as HF entries in `dtype` ("F32", "F16" or "BF16").
std::vector<test::SafetensorsEntry> hf_entries(const Model& bin, const std::string& dtype) {
  const LlamaConfig& c = bin.config;
  std::vector<test::SafetensorsEntry> entries;
  for (const TensorInfo& t : bin.tensors) {
    std::vector<float> values(bin.values.begin() + t.offset,
                              bin.values.begin() + t.offset + t.count);
    if (t.name.ends_with("attn.wq"))
      values = to_rotate_half(values.data(), c.n_heads, c.head_dim(), c.dim);
    if (t.name.ends_with("attn.wk"))
      values = to_rotate_half(values.data(), c.n_kv_heads, c.head_dim(), c.dim);
    std::vector<unsigned char> bytes;
    if (dtype == "F32") {
      bytes = test::float_bytes(values.data(), t.count);
    } else {
      std::vector<uint16_t> bits;
      for (float v : values) bits.push_back(dtype == "F16" ? float_to_half(v) : float_to_bf16(v));
      bytes = test::u16_bytes(bits);
    }
    entries.push_back({hf_name(t.name), dtype, t.shape, std::move(bytes)});
  }
  return entries;
}

std::vector<float> eval_logits(const Model& model) {
  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"), 512);
  const std::string eval_text = test::shared_file("data/tinystories/tinystories_val.txt");
  const auto paragraphs = read_paragraphs(eval_text, 50);
  return test::llama_logits(model, encode_paragraphs(tokenizer, paragraphs, 512, eval_text));
}

// A tiny valid Llama directory (dim 4, 1 layer, 2 heads, vocab 3) a test can break.
struct TinyDirectory {
  test::TempPath dir{"hf-tiny"};
  std::string config_extra;
  std::string architecture = "LlamaForCausalLM";
  int64_t seq_len = 8;
  std::function<void(std::vector<test::SafetensorsEntry>&)> edit = [](auto&) {};

  void write() {
    std::filesystem::create_directories(dir.path);
    LlamaConfig c;
    c.dim = 4, c.hidden_dim = 6, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.vocab_size = 3,
    c.seq_len = seq_len;
    std::string config = llama_config_json(c, true, config_extra);
    config.replace(config.find("LlamaForCausalLM"), 16, architecture);
    test::write_text(dir.path + "/config.json", config);
    std::vector<test::SafetensorsEntry> entries;
    for (const TensorInfo& t : llama2c_tensor_table(c)) {
      entries.push_back({hf_name(t.name), "F32", t.shape,
                         std::vector<unsigned char>(static_cast<size_t>(t.count * 4), 0)});
    }
    edit(entries);
    test::write_safetensors(dir.path + "/model.safetensors", entries);
  }
};

void expect_rejected(const std::string& directory, const std::vector<std::string>& needles) {
  try {
    load_hf_model(directory);
    BOOST_FAIL("accepted a bad model directory; expected an error containing " << needles.front());
  } catch (const InputError& error) {
    const std::string message = error.what();
    BOOST_TEST_INFO("message: " << message);
    BOOST_TEST(message.find(directory) != std::string::npos);
    for (const std::string& needle : needles)
      BOOST_TEST(message.find(needle) != std::string::npos, needle);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(hf_layout_stories260K_matches_llama2c,
                     *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model bin = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const test::TempPath dir("hf-stories");
  std::filesystem::create_directories(dir.path);
  test::write_text(dir.path + "/config.json",
                   llama_config_json(bin.config, true, ", \"rope_scaling\": null"));
  const auto entries = hf_entries(bin, "F32");
  test::write_safetensors(dir.path + "/model.safetensors", entries);

  // The conversion really reorders rows (head_dim 8: pairs move), so a loader that ignored the
  // rotate-half convention would not match.
  const TensorInfo& wq = bin.tensor("layers.0.attn.wq");
  BOOST_TEST_REQUIRE(std::memcmp(entries[static_cast<size_t>(1 + bin.config.n_layers)].bytes.data(),
                                 bin.values.data() + wq.offset,
                                 static_cast<size_t>(wq.count * 4)) != 0);

  const Model hf = load_hf_model(dir.path);
  BOOST_TEST(hf.format == "hf-llama");
  BOOST_TEST(hf.config.shared_classifier);
  BOOST_TEST(hf.n_parameters() == bin.n_parameters());
  BOOST_TEST(hf.values == bin.values);  // q/k rows back in llama2.c order, bit for bit
  const float difference = test::max_abs_difference(eval_logits(bin), eval_logits(hf));
  BOOST_TEST_MESSAGE("max |logit(.bin) - logit(HF layout)| = " << difference);
  BOOST_TEST(difference == 0.0f);
}

BOOST_AUTO_TEST_CASE(sharded_bf16_directory_loads_exactly,
                     *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model bin = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const test::TempPath dir("hf-stories-sharded");
  std::filesystem::create_directories(dir.path);
  // An untied checkpoint: lm_head.weight stored separately (a copy of the embeddings).
  test::write_text(dir.path + "/config.json", llama_config_json(bin.config, false));
  auto entries = hf_entries(bin, "BF16");
  entries.push_back({"lm_head.weight", "BF16", entries[0].shape, entries[0].bytes});
  const size_t half = entries.size() / 2;
  std::string weight_map;
  for (size_t i = 0; i < entries.size(); ++i) {
    weight_map += (i ? ", \"" : "\"") + entries[i].name + "\": \"model-0000" +
                  (i < half ? "1" : "2") + "-of-00002.safetensors\"";
  }
  test::write_text(dir.path + "/model.safetensors.index.json",
                   "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {" + weight_map + "}}");
  test::write_safetensors(dir.path + "/model-00001-of-00002.safetensors",
                          {entries.begin(), entries.begin() + static_cast<long>(half)});
  test::write_safetensors(dir.path + "/model-00002-of-00002.safetensors",
                          {entries.begin() + static_cast<long>(half), entries.end()});

  const Model hf = load_hf_model(dir.path);
  BOOST_TEST(!hf.config.shared_classifier);
  Model rounded = bin;  // the reference: the .bin rounded to bf16, with the copied head appended
  for (float& w : rounded.values) w = bf16_to_float(float_to_bf16(w));
  rounded.values.insert(rounded.values.end(), rounded.values.begin(),
                        rounded.values.begin() + bin.tensors[0].count);
  BOOST_TEST(hf.values == rounded.values);
  for (const TensorInfo& t : hf.tensors) BOOST_TEST((t.stored == StoredType::bf16), t.name);

  // A bf16 bit flip on the loaded model flips exactly one bf16 bit of each site.
  Model model = hf;
  Perturber perturber(model, 1, "hf");
  std::vector<Touched> undo;
  std::vector<SiteRecord> record;
  perturber.apply(model, parse_strategy("bitflip bits=any", "t"), 500, 0, undo, &record);
  for (const SiteRecord& site : record) {
    const uint32_t changed =
        std::bit_cast<uint32_t>(site.old_value) ^ std::bit_cast<uint32_t>(site.new_value);
    BOOST_TEST_REQUIRE((changed & 0xFFFFu) == 0u);
    BOOST_TEST_REQUIRE(std::popcount(changed) == 1);
  }
  Perturber::restore(model, undo);
  BOOST_TEST(model.values == hf.values);
}

BOOST_AUTO_TEST_CASE(tiny_directory_is_valid) {
  TinyDirectory tiny;
  tiny.write();
  const Model model = load_hf_model(tiny.dir.path);
  BOOST_TEST(model.n_parameters() == 12 + 4 + 4 * 16 + 4 + 3 * 24 + 4);
  BOOST_TEST(model.config.norm_eps == 1e-5f);
}

BOOST_AUTO_TEST_CASE(rejects_missing_files) {
  const test::TempPath empty("hf-empty");
  std::filesystem::create_directories(empty.path);
  expect_rejected(empty.path, {"config.json is missing"});
  expect_rejected(empty.path + "/nothing-here", {"Hugging Face model directory"});
  TinyDirectory tiny;
  tiny.write();
  std::filesystem::remove(tiny.dir.path + "/model.safetensors");
  expect_rejected(tiny.dir.path, {"neither model.safetensors nor model.safetensors.index.json"});
}

BOOST_AUTO_TEST_CASE(rejects_unknown_architecture_and_unsupported_config) {
  TinyDirectory falcon;
  falcon.architecture = "FalconForCausalLM";
  falcon.write();
  expect_rejected(falcon.dir.path, {"config.json", "'architectures'", "\"FalconForCausalLM\""});
  TinyDirectory scaled;
  scaled.config_extra = ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}";
  scaled.write();
  expect_rejected(scaled.dir.path, {"config.json", "'rope_scaling': expected null"});
  TinyDirectory context;  // no tensor depends on it, but the rotary table would be sized by it
  context.seq_len = int64_t{1} << 24;
  context.write();
  expect_rejected(context.dir.path,
                  {"'max_position_embeddings': expected at most 1048576, found 16777216"});
  TinyDirectory heads;
  heads.config_extra = ", \"head_dim\": 4";
  heads.write();
  expect_rejected(heads.dir.path,
                  {"'head_dim'", "expected hidden_size / num_attention_heads = 2", "found 4"});
}

BOOST_AUTO_TEST_CASE(rejects_tensors_that_disagree_with_the_config) {
  TinyDirectory shape;
  shape.edit = [](auto& entries) {
    entries[2].shape = {2, 8};  // q_proj of 4x4 stored as 2x8 (same bytes)
  };
  shape.write();
  expect_rejected(shape.dir.path,
                  {"'model.layers.0.self_attn.q_proj.weight'", "expected shape 4x4", "found 2x8"});
  TinyDirectory missing;
  missing.edit = [](auto& entries) { entries.pop_back(); };  // model.norm.weight
  missing.write();
  expect_rejected(missing.dir.path, {"'model.norm.weight' is missing"});
  TinyDirectory extra;
  extra.edit = [](auto& entries) {
    entries.push_back({"model.layers.0.adapter.weight", "F32", {1}, {0, 0, 0, 0}});
  };
  extra.write();
  expect_rejected(extra.dir.path,
                  {"'model.layers.0.adapter.weight' is not part of the LlamaForCausalLM"});
  TinyDirectory dtype;
  dtype.edit = [](auto& entries) { entries[1].dtype = "I32"; };
  dtype.write();
  expect_rejected(dtype.dir.path, {"'model.layers.0.input_layernorm.weight'", "'dtype'",
                                   "expected F32, F16 or BF16", "I32"});
}

BOOST_AUTO_TEST_CASE(rejects_bad_shard_indexes) {
  TinyDirectory tiny;
  tiny.write();
  const std::string index = tiny.dir.path + "/model.safetensors.index.json";
  test::write_text(index, "{\"weight_map\": {\"model.norm.weight\": \"../escape.safetensors\"}}");
  expect_rejected(tiny.dir.path, {"model.safetensors.index.json", "'model.norm.weight'",
                                  "'../escape.safetensors'"});
  test::write_text(index, "{\"weight_map\": {\"model.norm.weight\": \"model-2.safetensors\"}}");
  expect_rejected(tiny.dir.path, {"model-2.safetensors"});  // the shard does not exist
  test::write_text(index, "{\"weight_map\": {\"model.nrm.weight\": \"model.safetensors\"}}");
  expect_rejected(tiny.dir.path, {"'model.nrm.weight'", "does not hold it"});
  test::write_text(index, "{\"weight_map\": {\"model.norm.weight\": \"model.safetensors\"}}");
  expect_rejected(tiny.dir.path, {"'model.embed_tokens.weight' is not assigned to this shard"});
}

BOOST_AUTO_TEST_CASE(rejects_truncated_and_hostile_safetensors) {
  TinyDirectory tiny;
  tiny.write();
  const std::string file = tiny.dir.path + "/model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 3);
  expect_rejected(tiny.dir.path, {"model.safetensors"});
  std::vector<unsigned char> huge_header;
  test::GgufWriter::put(huge_header, uint64_t{1} << 60);
  test::write_bytes(file, huge_header);
  expect_rejected(tiny.dir.path, {"model.safetensors", "header length"});
}
