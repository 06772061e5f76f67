// Hugging Face model directories (config.json + safetensors, single or sharded):
// LlamaForCausalLM onto the Llama forward pass, GPT2LMHeadModel onto the GPT-2 forward pass;
// and the job-level loader entry points.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "fracsweep/formats/hf.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/llama_config.hpp"
#include "fracsweep/models/language_eval.hpp"
#include "fracsweep/models/model_loaders.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

HfCheckpoint::HfCheckpoint(const std::string& directory) : directory_(directory) {
  std::error_code ec;
  check_input(std::filesystem::is_directory(directory, ec),
              in_file(directory,
                      "a Hugging Face model directory (config.json + safetensors) was expected"));
  const std::string config_file = config_path();
  check_input(std::filesystem::is_regular_file(config_file, ec),
              in_file(config_file, "config.json is missing"));
  config_ = parse_json_file(config_file);
  config_.as_object(config_file);
  const JsonValue& architectures = config_.at("architectures", config_file);
  const auto& list = architectures.as_array(config_file + ": key 'architectures'");
  check_input(!list.empty(),
              in_file(config_file, "key 'architectures': expected one architecture, found none"));
  architecture_ = list[0].as_string(config_file + ": key 'architectures'[0]");

  // Shard file -> the tensors the index assigns to it (empty for a single model.safetensors).
  std::vector<std::pair<std::string, std::vector<std::string>>> shard_names;
  const std::string index_file = directory + "/model.safetensors.index.json";
  const bool sharded = std::filesystem::exists(index_file, ec);
  if (sharded) {
    const JsonValue index = parse_json_file(index_file);
    const auto& weight_map =
        index.at("weight_map", index_file).as_object(index_file + ": key 'weight_map'");
    for (const auto& [tensor, shard_value] : weight_map) {
      const std::string& shard =
          shard_value.as_string(index_file + ": weight_map '" + tensor + "'");
      check_input(
          is_plain_file_name(shard),
          in_file(index_file, "weight_map '" + tensor +
                                  "': expected a file name in the model directory, found '" +
                                  shard + "'"));
      auto it = std::find_if(shard_names.begin(), shard_names.end(),
                             [&](const auto& s) { return s.first == shard; });
      if (it == shard_names.end()) it = shard_names.insert(shard_names.end(), {shard, {}});
      it->second.push_back(tensor);
    }
    check_input(!shard_names.empty(), in_file(index_file, "weight_map lists no tensor"));
  } else {
    check_input(std::filesystem::exists(directory + "/model.safetensors", ec),
                in_file(directory,
                        "neither model.safetensors nor model.safetensors.index.json is present"));
    shard_names.push_back({"model.safetensors", {}});
  }
  for (const auto& [shard, listed] : shard_names) {
    shards_.push_back(std::make_unique<SafetensorsFile>(directory + "/" + shard));
    const SafetensorsFile& file = *shards_.back();
    for (const std::string& name : listed) {
      check_input(file.find(name) != nullptr,
                  in_file(index_file, "weight_map puts tensor '" + name + "' in " + shard +
                                          ", which does not hold it"));
    }
    for (const SafetensorsTensor& tensor : file.tensors()) {
      check_input(find(tensor.name) == nullptr,
                  in_file(file.path(), "tensor '" + tensor.name + "' is also in another shard"));
      if (sharded) {
        check_input(std::find(listed.begin(), listed.end(), tensor.name) != listed.end(),
                    in_file(file.path(), "tensor '" + tensor.name +
                                             "' is not assigned to this shard by " + index_file));
      }
      tensors_.push_back({tensor.name, Entry{&file, &tensor}});
    }
  }
}

const HfCheckpoint::Entry* HfCheckpoint::find(const std::string& name) const {
  for (const auto& [tensor_name, entry] : tensors_) {
    if (tensor_name == name) return &entry;
  }
  return nullptr;
}

StoredType HfCheckpoint::stored_type(const Entry& entry) const {
  return stored_type_of(entry.tensor->dtype, entry.file->path(), entry.tensor->name);
}

void HfCheckpoint::read_as_float(const Entry& entry, float* out) const {
  const StoredType type = stored_type(entry);
  const unsigned char* source = entry.file->bytes(*entry.tensor);
  if (type == StoredType::f32) {
    copy_bytes(source, static_cast<size_t>(entry.tensor->bytes), out);
    return;
  }
  widen_16bit(source, entry.tensor->count, out, stored16_widener(type == StoredType::f16));
}

int64_t HfCheckpoint::config_int(const std::string& key) const {
  return config_.at(key, config_path()).as_int64(config_path() + ": key '" + key + "'");
}

int64_t HfCheckpoint::config_int(const std::string& key, int64_t fallback) const {
  const JsonValue* value = config_.find(key);
  return value == nullptr || value->is_null() ? fallback : config_int(key);
}

double HfCheckpoint::config_number(const std::string& key, double fallback) const {
  const JsonValue* value = config_.find(key);
  return value == nullptr || value->is_null()
             ? fallback
             : value->as_double(config_path() + ": key '" + key + "'");
}

bool HfCheckpoint::config_bool(const std::string& key, bool fallback) const {
  const JsonValue* value = config_.find(key);
  return value == nullptr || value->is_null()
             ? fallback
             : value->as_bool(config_path() + ": key '" + key + "'");
}

namespace {

void check_string_key(const HfCheckpoint& hf, const std::string& key,
                      const std::vector<std::string>& allowed) {
  const JsonValue* value = hf.config().find(key);
  if (value == nullptr || value->is_null()) return;
  const std::string& text = value->as_string(hf.config_path() + ": key '" + key + "'");
  std::string expected;
  for (const std::string& a : allowed) expected += (expected.empty() ? "\"" : " or \"") + a + "\"";
  check_input(std::find(allowed.begin(), allowed.end(), text) != allowed.end(),
              in_file(hf.config_path(),
                      "key '" + key + "': expected " + expected + ", found \"" + text + "\""));
}

// HF name of the tensor fracsweep calls `name` (llama2.c naming).
std::string hf_llama_name_of(const std::string& name) {
  if (name == "tok_embeddings") return "model.embed_tokens.weight";
  if (name == "norm_final") return "model.norm.weight";
  if (name == "output") return "lm_head.weight";
  static const std::pair<const char*, const char*> per_layer[] = {
      {"attn_norm", "input_layernorm"}, {"attn.wq", "self_attn.q_proj"},
      {"attn.wk", "self_attn.k_proj"},  {"attn.wv", "self_attn.v_proj"},
      {"attn.wo", "self_attn.o_proj"},  {"ffn_norm", "post_attention_layernorm"},
      {"ffn.w1", "mlp.gate_proj"},      {"ffn.w2", "mlp.down_proj"},
      {"ffn.w3", "mlp.up_proj"}};
  const size_t dot = name.find('.', 7);  // "layers.L.<suffix>"
  const std::string layer = name.substr(7, dot - 7), suffix = name.substr(dot + 1);
  for (const auto& [ours, theirs] : per_layer) {
    if (suffix == ours) return "model.layers." + layer + "." + theirs + ".weight";
  }
  throw RunError("no Hugging Face name for tensor " + name);
}

bool is_conv1d_weight(const std::string& name) {
  return (name.find(".attn.c_") != std::string::npos ||
          name.find(".mlp.c_") != std::string::npos) &&
         name.ends_with(".weight");
}

// Entries that are buffers, not parameters, in some saved checkpoints.
bool is_ignored_buffer(const std::string& name) {
  return name.ends_with(".rotary_emb.inv_freq") || name.ends_with(".attn.bias") ||
         name.ends_with(".attn.masked_bias");
}

// Rows of one head in HF rotate-half order -> llama2.c adjacent-pair order, in place.
// values: (n_heads * head_dim, width).
void rotate_half_to_adjacent_pairs(float* values, int64_t n_heads, int64_t head_dim,
                                   int64_t width) {
  std::vector<float> head(static_cast<size_t>(head_dim * width));  // (head_dim, width) one head
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* rows = values + h * head_dim * width;
    std::copy(rows, rows + head_dim * width, head.begin());
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        std::copy_n(head.begin() + (j * half + i) * width, width, rows + (2 * i + j) * width);
      }
    }
  }
}

// Checks presence, shape and dtype of every expected tensor against `table` (names in our
// naming, HF names by `hf_name_of`) and refuses tensors that belong to no parameter.
void check_tensors(const HfCheckpoint& hf, std::vector<TensorInfo>& table,
                   const std::function<std::string(const std::string&)>& hf_name_of,
                   const std::vector<std::string>& also_allowed) {
  for (TensorInfo& t : table) {
    const std::string name = hf_name_of(t.name);
    const HfCheckpoint::Entry* entry = hf.find(name);
    check_input(entry != nullptr,
                in_file(hf.directory(), "tensor '" + name + "' is missing (expected shape " +
                                            shape_text(t.shape) + " from config.json)"));
    std::vector<int64_t> expected = t.shape;
    if (is_conv1d_weight(t.name)) std::swap(expected[0], expected[1]);  // Conv1D: stored (in, out)
    check_input(entry->tensor->shape == expected,
                in_file(entry->file->path(),
                        "tensor '" + name + "': expected shape " + shape_text(expected) +
                            " from config.json, found " + shape_text(entry->tensor->shape)));
    t.stored = hf.stored_type(*entry);
  }
  for (const auto& [name, entry] : hf.tensors()) {
    const std::string& hf_name = name;  // clang 14 lambdas cannot capture structured bindings
    const bool known =
        is_ignored_buffer(name) ||
        std::find(also_allowed.begin(), also_allowed.end(), name) != also_allowed.end() ||
        std::any_of(table.begin(), table.end(),
                    [&](const TensorInfo& t) { return hf_name_of(t.name) == hf_name; });
    check_input(
        known, in_file(entry.file->path(), "tensor '" + name + "' is not part of the " +
                                               hf.architecture() + " architecture fracsweep runs"));
  }
}

// HF name of a GPT-2 tensor (gpt2.hpp naming); `prefix` is "transformer." or "" as in the file.
std::string hf_gpt2_name_of(const std::string& prefix, const std::string& name) {
  if (name == "wte" || name == "wpe") return prefix + name + ".weight";
  if (name.starts_with("layers.")) return prefix + "h." + name.substr(7);
  return prefix + name;
}

std::string gpt2_prefix(const HfCheckpoint& hf) {
  return hf.find("transformer.wte.weight") != nullptr ? "transformer." : "";
}

}  // namespace

LlamaConfig hf_gpt2_config(const HfCheckpoint& hf) {
  LlamaConfig c;
  c.dim = hf.config_int("n_embd");
  c.n_layers = hf.config_int("n_layer");
  // ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj: weight and bias each
  check_layer_tensors(c.n_layers, static_cast<int64_t>(hf.tensors().size()), 12, hf.config_path(),
                      "n_layer");
  c.n_heads = hf.config_int("n_head");
  c.n_kv_heads = c.n_heads;
  // 4 n_embd by default (n_embd clamped only so that an absurd one cannot overflow here; the
  // check below rejects it first).
  c.hidden_dim = hf.config_int("n_inner", 4 * std::clamp(c.dim, int64_t{0}, llama_max_dimension));
  c.vocab_size = hf.config_int("vocab_size");
  c.seq_len = hf.config_int("n_positions");
  check_llama_config(c, {.path = hf.config_path(),
                         .key_kind = "key",
                         .dim = "n_embd",
                         .hidden_dim = "n_inner",
                         .n_layers = "n_layer",
                         .n_heads = "n_head",
                         .n_kv_heads = "n_head",
                         .vocab_size = "vocab_size",
                         .seq_len = "n_positions",  // sizes the wpe tensor: no context cap
                         .rotary = false});
  c.norm_eps = static_cast<float>(hf.config_number("layer_norm_epsilon", 1e-5));
  c.shared_classifier = true;
  check_input(positive_finite(c.norm_eps),
              in_file(hf.config_path(),
                      "key 'layer_norm_epsilon' must be positive and finite in "
                      "float32, found " +
                          shortest_number_text(c.norm_eps)));
  check_string_key(hf, "activation_function", {"gelu_new", "gelu_pytorch_tanh"});
  check_input(
      !hf.config_bool("scale_attn_by_inverse_layer_idx", false) &&
          !hf.config_bool("reorder_and_upcast_attn", false),
      in_file(
          hf.config_path(),
          "keys 'scale_attn_by_inverse_layer_idx' / 'reorder_and_upcast_attn' are not supported"));
  return c;
}

std::vector<TensorInfo> hf_gpt2_tensor_table(const HfCheckpoint& hf, const LlamaConfig& config) {
  std::vector<TensorInfo> table = gpt2_tensor_table(config);
  const std::string prefix = gpt2_prefix(hf);
  // The head is tied to wte; a saved lm_head.weight (a copy) is not used.
  check_tensors(hf, table, [&](const std::string& name) { return hf_gpt2_name_of(prefix, name); },
                {"lm_head.weight"});
  return table;
}

LlamaConfig hf_llama_config(const HfCheckpoint& hf) {
  LlamaConfig c;
  c.dim = hf.config_int("hidden_size");
  c.hidden_dim = hf.config_int("intermediate_size");
  c.n_layers = hf.config_int("num_hidden_layers");
  // input/post-attention norms, q/k/v/o and gate/down/up projections
  check_layer_tensors(c.n_layers, static_cast<int64_t>(hf.tensors().size()), 9, hf.config_path(),
                      "num_hidden_layers");
  c.n_heads = hf.config_int("num_attention_heads");
  c.n_kv_heads = hf.config_int("num_key_value_heads", c.n_heads);
  c.vocab_size = hf.config_int("vocab_size");
  c.seq_len = hf.config_int("max_position_embeddings");
  check_llama_config(c, {.path = hf.config_path(),
                         .key_kind = "key",
                         .dim = "hidden_size",
                         .hidden_dim = "intermediate_size",
                         .n_layers = "num_hidden_layers",
                         .n_heads = "num_attention_heads",
                         .n_kv_heads = "num_key_value_heads",
                         .vocab_size = "vocab_size",
                         .seq_len = "max_position_embeddings",
                         .max_seq_len = llama_max_context});
  c.norm_eps = static_cast<float>(hf.config_number("rms_norm_eps", 1e-6));
  c.rope_theta = static_cast<float>(hf.config_number("rope_theta", 10000.0));
  c.shared_classifier = hf.config_bool("tie_word_embeddings", false);
  check_input(
      positive_finite(c.norm_eps) && positive_finite(c.rope_theta),
      in_file(hf.config_path(),
              "keys 'rms_norm_eps' and 'rope_theta' must be positive "
              "and finite in float32, found " +
                  shortest_number_text(c.norm_eps) + " and " + shortest_number_text(c.rope_theta)));
  const JsonValue* scaling = hf.config().find("rope_scaling");
  check_input(scaling == nullptr || scaling->is_null(),
              in_file(hf.config_path(),
                      "key 'rope_scaling': expected null (scaled RoPE is not supported)"));
  check_string_key(hf, "hidden_act", {"silu"});
  check_input(
      hf.config_int("head_dim", c.head_dim()) == c.head_dim(),
      in_file(hf.config_path(), "key 'head_dim': expected hidden_size / num_attention_heads = " +
                                    std::to_string(c.head_dim()) + ", found " +
                                    std::to_string(hf.config_int("head_dim", c.head_dim()))));
  return c;
}

std::vector<TensorInfo> hf_llama_tensor_table(const HfCheckpoint& hf, const LlamaConfig& config) {
  std::vector<TensorInfo> table = llama2c_tensor_table(config);
  // A tied checkpoint may still carry lm_head.weight (a copy of the embeddings); it is not used.
  check_tensors(hf, table, hf_llama_name_of,
                config.shared_classifier ? std::vector<std::string>{"lm_head.weight"}
                                         : std::vector<std::string>{});
  return table;
}

std::vector<TensorInfo> hf_tensor_table(const HfCheckpoint& hf) {
  if (hf.architecture() == "LlamaForCausalLM")
    return hf_llama_tensor_table(hf, hf_llama_config(hf));
  if (hf.architecture() == "GPT2LMHeadModel") return hf_gpt2_tensor_table(hf, hf_gpt2_config(hf));
  throw InputError(in_file(hf.config_path(),
                           "key 'architectures': expected \"LlamaForCausalLM\" or "
                           "\"GPT2LMHeadModel\", found \"" +
                               hf.architecture() + "\""));
}

namespace {

// Hyper-parameters of the directory's architecture (checked by hf_tensor_table first).
LlamaConfig config_of(const HfCheckpoint& hf) {
  return hf.architecture() == "LlamaForCausalLM" ? hf_llama_config(hf) : hf_gpt2_config(hf);
}

}  // namespace

Model load_hf_model(const std::string& directory, const WeightsSource& weights) {
  return load_hf_model(HfCheckpoint(directory), weights);
}

Model load_hf_model(const HfCheckpoint& hf, const WeightsSource& weights) {
  Model model;
  model.path = hf.directory();
  model.tensors = hf_tensor_table(hf);  // checks the architecture name first
  const bool llama = hf.architecture() == "LlamaForCausalLM";
  model.architecture = llama ? "llama" : "gpt2";
  model.format = llama ? "hf-llama" : "hf-gpt2";
  model.config = config_of(hf);
  const TensorInfo& last = model.tensors.back();
  ProvidedValues provided =
      weights.values_for(model.path, static_cast<size_t>(last.offset + last.count));
  model.values = std::move(provided.buffer);
  if (provided.filled) return model;
  const LlamaConfig& c = model.config;
  for (const TensorInfo& t : model.tensors) {
    float* values = model.values.data() + t.offset;
    if (llama) {
      hf.read_as_float(*hf.find(hf_llama_name_of(t.name)), values);
      if (t.name.ends_with("attn.wq"))
        rotate_half_to_adjacent_pairs(values, c.n_heads, c.head_dim(), c.dim);
      if (t.name.ends_with("attn.wk"))
        rotate_half_to_adjacent_pairs(values, c.n_kv_heads, c.head_dim(), c.dim);
    } else {
      const HfCheckpoint::Entry& entry = *hf.find(hf_gpt2_name_of(gpt2_prefix(hf), t.name));
      hf.read_as_float(entry, values);
      if (is_conv1d_weight(t.name)) {  // (in, out) as stored -> (out, in)
        const std::vector<float> stored(values, values + t.count);  // (in, out)
        const int64_t out_features = t.shape[0], in_features = t.shape[1];
        for (int64_t o = 0; o < out_features; ++o) {
          for (int64_t i = 0; i < in_features; ++i)
            values[o * in_features + i] = stored[static_cast<size_t>(i * out_features + o)];
        }
      }
    }
  }
  return model;
}

namespace {

// A token id from config.json (bos_token_id, eos_token_id) inside the vocabulary.
int32_t token_id(const HfCheckpoint& hf, const std::string& key, int64_t vocab_size,
                 std::optional<int64_t> fallback = {}) {
  const int64_t id = fallback ? hf.config_int(key, *fallback) : hf.config_int(key);
  check_input(id >= 0 && id < vocab_size,
              in_file(hf.config_path(), "key '" + key + "': expected a token id in 0.." +
                                            std::to_string(vocab_size - 1) + ", found " +
                                            std::to_string(id)));
  return static_cast<int32_t>(id);
}

// The greedy continuation starts from bos_token_id (needed only when it runs).
int32_t greedy_start(const JobConfig& job, const HfCheckpoint& hf, int64_t vocab_size) {
  return job.greedy_tokens == 0 ? 0 : token_id(hf, "bos_token_id", vocab_size);
}

}  // namespace

std::vector<TensorInfo> check_hf_model(const JobConfig& job, const ModelSpec& spec) {
  const HfCheckpoint hf(spec.path);
  const std::vector<TensorInfo> table = hf_tensor_table(hf);
  const LlamaConfig config = config_of(hf);
  language_eval_inputs(job, spec, nullptr, greedy_start(job, hf, config.vocab_size),
                       config.vocab_size, config.seq_len, nullptr);
  check_strategies(job, spec, table);
  return table;
}

std::unique_ptr<OpenModel> open_hf_model(const JobConfig& job, const ModelSpec& spec,
                                         const EvalSources& sources, const LoadOptions& options) {
  PhaseTimer timer(options);
  auto open = std::make_unique<OpenModel>();
  EvalInputs inputs;
  {
    const HfCheckpoint hf(spec.path);
    open->model = load_hf_model(hf, *options.weights);
    const LlamaConfig& config = open->model.config;
    const int32_t bos = greedy_start(job, hf, config.vocab_size);
    inputs =
        language_eval_inputs(job, spec, nullptr, bos, config.vocab_size, config.seq_len, &sources);
    // GPT-2 ends a text with eos_token_id (the same id as bos in the released checkpoints).
    if (open->model.architecture == "gpt2" && job.greedy_tokens > 0)
      inputs.greedy_stop_id = token_id(hf, "eos_token_id", config.vocab_size, bos);
  }  // the safetensors mappings are released here, before the baseline
  timer.done("weights");
  open->evaluator = std::make_unique<LanguageModelEvaluator>(
      open->model, inputs,
      open->model.architecture == "llama" ? make_llama_forward : make_gpt2_forward,
      timer.at_end_of("greedy continuation"));
  timer.done("baseline");
  return open;
}

}  // namespace fracsweep
