// GPT-2 (GPT2LMHeadModel directories): a small randomly initialised GPT-2 written by the test as
// safetensors in Hugging Face's layout (Conv1D weights input-major) is loaded and run by
// fracsweep, and checked against a plain double-precision implementation written here from the
// architecture's definition, working directly on the HF arrays.
#define BOOST_TEST_MODULE gpt2
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/eval/metrics.hpp"
#include "fracsweep/formats/hf.hpp"
#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/util/error.hpp"
#include "model_writers.hpp"
#include "random_gpt2.hpp"

using namespace fracsweep;

namespace {

constexpr test::Gpt2Shape model_shape{};
constexpr int64_t n_embd = model_shape.n_embd, n_layer = model_shape.n_layer,
                  n_head = model_shape.n_head, n_positions = model_shape.n_positions,
                  vocab = model_shape.vocab, n_inner = model_shape.n_inner;
static_assert(n_inner == 4 * n_embd, "config.json leaves n_inner null: the default 4 n_embd");

// HF GPT-2 arrays by HF name (without prefix), row-major as HF stores them.
using Arrays = test::Gpt2Arrays;

Arrays random_gpt2(uint32_t seed) {
  return test::random_gpt2(seed, model_shape);
}

std::string gpt2_config_json(const std::string& extra = "") {
  return "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_embd\": " +
         std::to_string(n_embd) + ", \"n_layer\": " + std::to_string(n_layer) +
         ", \"n_head\": " + std::to_string(n_head) +
         ", \"n_positions\": " + std::to_string(n_positions) +
         ", \"n_ctx\": " + std::to_string(n_positions) +
         ", \"vocab_size\": " + std::to_string(vocab) +
         ", \"n_inner\": null, \"layer_norm_epsilon\": 1e-05, "
         "\"activation_function\": \"gelu_new\", \"bos_token_id\": 0, \"eos_token_id\": 0" +
         extra + "}";
}

// Writes `arrays` as a GPT-2 directory; names get `prefix`; dtype "F32" or "BF16" (then the
// arrays are rounded in place to what the file holds).
void write_gpt2(const std::string& dir, Arrays& arrays, const std::string& prefix,
                const std::string& dtype, const std::string& config_extra = "") {
  std::filesystem::create_directories(dir);
  test::write_text(dir + "/config.json", gpt2_config_json(config_extra));
  std::vector<test::SafetensorsEntry> entries;
  for (auto& [name, array] : arrays) {
    auto& [shape, values] = array;
    if (dtype == "F32") {
      entries.push_back({prefix + name, dtype, shape,
                         test::float_bytes(values.data(), static_cast<int64_t>(values.size()))});
    } else {
      std::vector<uint16_t> bits;
      for (float& v : values) {
        bits.push_back(float_to_bf16(v));
        v = bf16_to_float(bits.back());
      }
      entries.push_back({prefix + name, dtype, shape, test::u16_bytes(bits)});
    }
  }
  // Causal-mask buffers some checkpoints carry: not parameters, ignored.
  entries.push_back({prefix + "h.0.attn.bias", "F32", {1}, {0, 0, 0, 0}});
  test::write_safetensors(dir + "/model.safetensors", entries);
}

// The plain reference: GPT-2 from its definition in double, on the HF arrays. logits (T, vocab).
std::vector<double> reference_logits(const Arrays& arrays, const std::vector<int32_t>& tokens) {
  auto get = [&](const std::string& name) -> const std::vector<float>& {
    return arrays.at(name).second;
  };
  const auto T = static_cast<int64_t>(tokens.size()), d = n_embd, hd = n_embd / n_head;
  std::vector<std::vector<double>> x(static_cast<size_t>(T), std::vector<double>(d));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < d; ++i) {
      x[t][i] = get("wte.weight")[tokens[t] * d + i] + get("wpe.weight")[t * d + i];
    }
  }
  auto layernorm = [&](const std::vector<double>& v, const std::string& name) {
    double mean = 0, var = 0;
    for (double e : v) mean += e;
    mean /= static_cast<double>(v.size());
    for (double e : v) var += (e - mean) * (e - mean);
    var /= static_cast<double>(v.size());
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      out[i] =
          (v[i] - mean) / std::sqrt(var + 1e-5) * get(name + ".weight")[i] + get(name + ".bias")[i];
    }
    return out;
  };
  // Conv1D: y = v W + b with W (in, out).
  auto conv1d = [&](const std::vector<double>& v, const std::string& name) {
    const auto& [shape, w] = arrays.at(name + ".weight");
    std::vector<double> out(static_cast<size_t>(shape[1]));
    for (int64_t o = 0; o < shape[1]; ++o) {
      double sum = get(name + ".bias")[o];
      for (int64_t i = 0; i < shape[0]; ++i) sum += v[i] * w[i * shape[1] + o];
      out[o] = sum;
    }
    return out;
  };
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    std::vector<std::vector<double>> qkv;
    for (int64_t t = 0; t < T; ++t)
      qkv.push_back(conv1d(layernorm(x[t], h + "ln_1"), h + "attn.c_attn"));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> attended(static_cast<size_t>(d), 0.0);
      for (int64_t head = 0; head < n_head; ++head) {
        std::vector<double> scores;
        double top = -1e300;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += qkv[t][head * hd + i] * qkv[s][d + head * hd + i];
          scores.push_back(dot / std::sqrt(static_cast<double>(hd)));
          top = std::max(top, scores.back());
        }
        double total = 0;
        for (double& score : scores) total += (score = std::exp(score - top));
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t i = 0; i < hd; ++i)
            attended[head * hd + i] += scores[s] / total * qkv[s][2 * d + head * hd + i];
        }
      }
      const auto projected = conv1d(attended, h + "attn.c_proj");
      for (int64_t i = 0; i < d; ++i) x[t][i] += projected[i];
    }
    for (int64_t t = 0; t < T; ++t) {
      auto hidden = conv1d(layernorm(x[t], h + "ln_2"), h + "mlp.c_fc");
      for (double& v : hidden)
        v = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      const auto out = conv1d(hidden, h + "mlp.c_proj");
      for (int64_t i = 0; i < d; ++i) x[t][i] += out[i];
    }
  }
  std::vector<double> logits;
  for (int64_t t = 0; t < T; ++t) {
    const auto final_x = layernorm(x[t], "ln_f");
    for (int64_t v = 0; v < vocab; ++v) {
      double sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += final_x[i] * get("wte.weight")[v * d + i];
      logits.push_back(sum);
    }
  }
  return logits;
}

const std::vector<std::vector<int32_t>> sequences = {
    {3, 17, 42, 8,  8,  0, 49, 21, 5,  30, 11, 2,  7,  19, 33, 44,
     1, 6,  28, 40, 12, 9, 14, 25, 36, 47, 38, 27, 16, 4,  10, 31},
    {5, 6, 7},
    {48, 12, 12, 12, 9, 1, 0, 33}};

double compare_with_reference(const Model& model, const Arrays& arrays) {
  TokenBatch batch;
  for (const auto& s : sequences) batch.append(s);
  Gpt2Workspace workspace(model.config, batch.n_tokens(), n_positions);
  std::vector<float> logits(static_cast<size_t>(batch.n_tokens() * vocab));
  gpt2_forward(model, batch, workspace, logits.data());
  double worst = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const auto expected = reference_logits(arrays, sequences[static_cast<size_t>(s)]);
    const float* actual = logits.data() + batch.seq_start[static_cast<size_t>(s)] * vocab;
    for (size_t i = 0; i < expected.size(); ++i)
      worst = std::max(worst, std::fabs(actual[i] - expected[i]));
  }
  return worst;
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_matches_the_plain_reference) {
  gemm_init(GemmSetup{});
  for (const std::string prefix : {"", "transformer."}) {
    Arrays arrays = random_gpt2(7);
    const test::TempPath dir("gpt2");
    write_gpt2(dir.path, arrays, prefix, "F32");
    const Model model = load_hf_model(dir.path);
    BOOST_TEST(model.architecture == "gpt2");
    BOOST_TEST(model.format == "hf-gpt2");
    BOOST_TEST(model.config.hidden_dim == n_inner);
    int64_t parameters = 0;
    for (const auto& [name, array] : arrays)
      parameters += static_cast<int64_t>(array.second.size());
    BOOST_TEST(model.n_parameters() == parameters);
    // The in-memory builder the gradient tests use holds exactly what the loader built.
    const Model in_memory = test::gpt2_model(arrays, model_shape);
    BOOST_TEST((in_memory.values == model.values));
    BOOST_TEST(same_dimensions(in_memory.config, model.config));
    BOOST_TEST(in_memory.config.seq_len == model.config.seq_len);
    BOOST_TEST(in_memory.config.norm_eps == model.config.norm_eps);
    BOOST_TEST(in_memory.tensors.size() == model.tensors.size());
    for (size_t t = 0; t < std::min(in_memory.tensors.size(), model.tensors.size()); ++t) {
      BOOST_TEST(in_memory.tensors[t].name == model.tensors[t].name);
      BOOST_TEST((in_memory.tensors[t].shape == model.tensors[t].shape), model.tensors[t].name);
    }
    // Conv1D weights are held transposed: element (o, i) is the file's (i, o).
    const TensorInfo& c_fc = model.tensor("layers.1.mlp.c_fc.weight");
    BOOST_TEST((c_fc.shape == std::vector<int64_t>{n_inner, n_embd}));
    BOOST_TEST(model.values[static_cast<size_t>(c_fc.offset + 5 * n_embd + 3)] ==
               arrays.at("h.1.mlp.c_fc.weight").second[3 * n_inner + 5]);
    const double difference = compare_with_reference(model, arrays);
    BOOST_TEST_MESSAGE("GPT-2 (prefix '" << prefix
                                         << "') max |logit - reference| = " << difference);
    BOOST_TEST(difference < 1e-4);
  }
}

BOOST_AUTO_TEST_CASE(bf16_gpt2_matches_the_reference_on_the_stored_values) {
  gemm_init(GemmSetup{});
  Arrays arrays = random_gpt2(11);
  const test::TempPath dir("gpt2-bf16");
  write_gpt2(dir.path, arrays, "", "BF16");  // arrays now hold the bf16 values
  const Model model = load_hf_model(dir.path);
  for (const TensorInfo& t : model.tensors) BOOST_TEST((t.stored == StoredType::bf16), t.name);
  const double difference = compare_with_reference(model, arrays);
  BOOST_TEST_MESSAGE("bf16 GPT-2 max |logit - reference| = " << difference);
  BOOST_TEST(difference < 1e-4);
}

BOOST_AUTO_TEST_CASE(evaluator_baseline_matches_the_reference) {
  gemm_init(GemmSetup{});
  Arrays arrays = random_gpt2(3);
  const test::TempPath dir("gpt2-eval");
  write_gpt2(dir.path, arrays, "", "F32");
  const Model model = load_hf_model(dir.path);
  EvalInputs inputs;
  inputs.sequences = sequences;
  inputs.greedy_prompt = {0};
  inputs.greedy_tokens = 10;
  inputs.greedy_stop_id = -1;
  LanguageModelEvaluator evaluator(model, inputs, make_gpt2_forward);
  // Reference mean NLL over every predicted position, and the reference greedy continuation.
  double nll = 0;
  int64_t positions = 0;
  for (const auto& s : sequences) {
    const auto logits = reference_logits(arrays, s);
    for (size_t t = 0; t + 1 < s.size(); ++t) {
      double top = -1e300, total = 0;
      for (int64_t v = 0; v < vocab; ++v) top = std::max(top, logits[t * vocab + v]);
      for (int64_t v = 0; v < vocab; ++v) total += std::exp(logits[t * vocab + v] - top);
      nll += top + std::log(total) - logits[t * vocab + static_cast<size_t>(s[t + 1])];
      ++positions;
    }
  }
  BOOST_TEST(evaluator.baseline().metrics.positions == positions);
  BOOST_TEST(std::fabs(evaluator.baseline().metrics.mean_nll -
                       nll / static_cast<double>(positions)) < 1e-5);
  std::vector<int32_t> greedy = {0};
  for (int step = 0; step < 10; ++step) {
    const auto logits = reference_logits(arrays, greedy);
    const double* last = logits.data() + (greedy.size() - 1) * vocab;
    greedy.push_back(static_cast<int32_t>(std::max_element(last, last + vocab) - last));
  }
  BOOST_TEST(evaluator.baseline().greedy_ids ==
             std::vector<int32_t>(greedy.begin() + 1, greedy.end()));
  // Unperturbed against itself: full agreement, no divergence.
  Model same = model;
  const TrialMetrics metrics = evaluator.evaluate(same);
  BOOST_TEST(metrics.top1_agreement == 1.0);
  BOOST_TEST(metrics.greedy_match == 10);
}

BOOST_AUTO_TEST_CASE(rejects_bad_gpt2_directories) {
  Arrays arrays = random_gpt2(1);
  const test::TempPath dir("gpt2-bad");
  write_gpt2(dir.path, arrays, "", "F32", ", \"activation_function\": \"relu\"");
  // Duplicate key in config.json is refused by the JSON reader; a wrong activation is refused here.
  BOOST_CHECK_THROW(load_hf_model(dir.path), InputError);
  test::write_text(dir.path + "/config.json",
                   gpt2_config_json().replace(gpt2_config_json().find("gelu_new"), 8, "relu"));
  try {
    load_hf_model(dir.path);
    BOOST_FAIL("relu GPT-2 accepted");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what())
                   .find("'activation_function': expected \"gelu_new\" or \"gelu_pytorch_tanh\", "
                         "found \"relu\"") != std::string::npos);
  }
  test::write_text(
      dir.path + "/config.json",
      gpt2_config_json().replace(gpt2_config_json().find("\"n_head\": 4"), 11, "\"n_head\": 3"));
  try {
    load_hf_model(dir.path);
    BOOST_FAIL("n_head 3 accepted");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what()).find("'n_head' (3) must divide n_embd (16)") !=
               std::string::npos);
  }
  test::write_text(dir.path + "/config.json",
                   gpt2_config_json().replace(gpt2_config_json().find("\"n_positions\": 32"), 17,
                                              "\"n_positions\": 64"));
  try {
    load_hf_model(dir.path);
    BOOST_FAIL("n_positions 64 accepted with a 32-row wpe");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what())
                   .find("'wpe.weight': expected shape 64x16 from config.json, found 32x16") !=
               std::string::npos);
  }
}
