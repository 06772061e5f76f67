// Llama models stored as GGUF: hyper-parameters from llama.* metadata, tensors mapped onto the
// llama2.c names and layout, vocabulary from tokenizer.ggml.*; the job-level loader entry points.
#include <algorithm>
#include <optional>

#include "fracsweep/formats/gguf.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/llama_config.hpp"
#include "fracsweep/models/language_eval.hpp"
#include "fracsweep/models/model_loaders.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

// GGUF name of the tensor fracsweep calls `name` (llama2.c naming).
std::string gguf_name_of(const std::string& name) {
  static const std::pair<const char*, const char*> whole[] = {
      {"tok_embeddings", "token_embd.weight"},
      {"norm_final", "output_norm.weight"},
      {"output", "output.weight"}};
  for (const auto& [ours, theirs] : whole) {
    if (name == ours) return theirs;
  }
  static const std::pair<const char*, const char*> per_layer[] = {
      {"attn_norm", "attn_norm"}, {"attn.wq", "attn_q"},      {"attn.wk", "attn_k"},
      {"attn.wv", "attn_v"},      {"attn.wo", "attn_output"}, {"ffn_norm", "ffn_norm"},
      {"ffn.w1", "ffn_gate"},     {"ffn.w2", "ffn_down"},     {"ffn.w3", "ffn_up"}};
  const size_t dot = name.find('.', 7);  // "layers.L.<suffix>"
  const std::string layer = name.substr(7, dot - 7), suffix = name.substr(dot + 1);
  for (const auto& [ours, theirs] : per_layer) {
    if (suffix == ours) return "blk." + layer + "." + theirs + ".weight";
  }
  throw RunError("no GGUF name for tensor " + name);
}

StoredType stored_type_of(GgmlType type) {
  switch (type) {
    case GgmlType::f32:
      return StoredType::f32;
    case GgmlType::f16:
      return StoredType::f16;
    case GgmlType::bf16:
      return StoredType::bf16;
  }
  return StoredType::f32;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// GGUF metadata key `key` (default `fallback`): a token id of the vocabulary.
int32_t token_id(const GgufFile& file, const std::string& key, int64_t fallback,
                 int64_t vocab_size) {
  const int64_t id = file.get_int(key, fallback);
  check_input(
      id >= 0 && id < vocab_size,
      in_file(file.path(), "GGUF metadata key '" + key + "': expected a token id in 0.." +
                               std::to_string(vocab_size - 1) + ", found " + std::to_string(id)));
  return static_cast<int32_t>(id);
}

// The BOS id, where the greedy continuation starts and stops.
int32_t bos_of(const GgufFile& file, int64_t vocab_size) {
  return token_id(file, "tokenizer.ggml.bos_token_id", 1, vocab_size);
}

}  // namespace

LlamaConfig gguf_llama_config(const GgufFile& file) {
  const std::string architecture = file.get_string("general.architecture");
  check_input(architecture == "llama",
              in_file(file.path(),
                      "GGUF metadata key 'general.architecture': expected \"llama\", found \"" +
                          architecture + "\""));
  const GgufTensor* embeddings = file.find_tensor("token_embd.weight");
  check_input(
      embeddings != nullptr && embeddings->shape.size() == 2,
      in_file(file.path(),
              "GGUF tensor 'token_embd.weight' (2-D, vocab x embedding_length) is missing"));
  LlamaConfig c;
  c.dim = file.get_int("llama.embedding_length");
  c.hidden_dim = file.get_int("llama.feed_forward_length");
  c.n_layers = file.get_int("llama.block_count");
  check_layer_tensors(c.n_layers, static_cast<int64_t>(file.tensors().size()), 9, file.path(),
                      "llama.block_count");  // attn_norm, q, k, v, output, ffn_norm, gate, down, up
  c.n_heads = file.get_int("llama.attention.head_count");
  c.n_kv_heads = file.get_int("llama.attention.head_count_kv", c.n_heads);
  c.seq_len = file.get_int("llama.context_length");
  c.vocab_size = embeddings->shape[0];  // checked here: a tensor shape, not a metadata key
  check_input(c.vocab_size > 0 && c.vocab_size <= llama_max_dimension,
              in_file(file.path(), "GGUF tensor 'token_embd.weight': vocabulary size " +
                                       std::to_string(c.vocab_size) + " outside 1.." +
                                       std::to_string(llama_max_dimension)));
  check_llama_config(c, {.path = file.path(),
                         .key_kind = "GGUF metadata key",
                         .dim = "llama.embedding_length",
                         .hidden_dim = "llama.feed_forward_length",
                         .n_layers = "llama.block_count",
                         .n_heads = "llama.attention.head_count",
                         .n_kv_heads = "llama.attention.head_count_kv",
                         .vocab_size = "llama.vocab_size",
                         .seq_len = "llama.context_length",
                         .max_seq_len = llama_max_context});
  if (file.find("llama.vocab_size")) {
    check_input(file.get_int("llama.vocab_size") == c.vocab_size,
                in_file(file.path(), "GGUF metadata key 'llama.vocab_size' (" +
                                         std::to_string(file.get_int("llama.vocab_size")) +
                                         ") disagrees with token_embd.weight's " +
                                         std::to_string(c.vocab_size) + " rows"));
  }
  c.shared_classifier = file.find_tensor("output.weight") == nullptr;
  c.norm_eps = static_cast<float>(file.get_float("llama.attention.layer_norm_rms_epsilon"));
  c.rope_theta = static_cast<float>(file.get_float("llama.rope.freq_base", 10000.0));
  check_input(
      positive_finite(c.norm_eps) && positive_finite(c.rope_theta),
      in_file(file.path(),
              "GGUF metadata keys 'llama.attention.layer_norm_rms_epsilon' and "
              "'llama.rope.freq_base' must be positive and finite in float32, found " +
                  shortest_number_text(c.norm_eps) + " and " + shortest_number_text(c.rope_theta)));
  const int64_t rope_dims = file.get_int("llama.rope.dimension_count", c.head_dim());
  check_input(
      rope_dims == c.head_dim(),
      in_file(file.path(),
              "GGUF metadata key 'llama.rope.dimension_count': expected the head dimension " +
                  std::to_string(c.head_dim()) + " (partial rotary is not supported), found " +
                  std::to_string(rope_dims)));
  return c;
}

std::vector<TensorInfo> gguf_llama_tensor_table(const GgufFile& file, const LlamaConfig& config) {
  std::vector<TensorInfo> table = llama2c_tensor_table(config);
  for (TensorInfo& t : table) {
    const std::string name = gguf_name_of(t.name);
    const GgufTensor* stored = file.find_tensor(name);
    check_input(stored != nullptr,
                in_file(file.path(), "GGUF tensor '" + name + "' is missing (expected shape " +
                                         shape_text(t.shape) + " from the llama.* metadata)"));
    check_input(
        stored->shape == t.shape,
        in_file(file.path(), "GGUF tensor '" + name + "': expected shape " + shape_text(t.shape) +
                                 " from the llama.* metadata, found " + shape_text(stored->shape)));
    t.stored = stored_type_of(stored->type);
  }
  for (const GgufTensor& stored : file.tensors()) {
    const bool known = std::any_of(table.begin(), table.end(), [&](const TensorInfo& t) {
      return gguf_name_of(t.name) == stored.name;
    });
    check_input(known,
                in_file(file.path(), "GGUF tensor '" + stored.name +
                                         "' is not part of the Llama architecture fracsweep runs"));
  }
  return table;
}

Model load_gguf_llama(const std::string& path, const WeightsSource& weights) {
  return load_gguf_llama(GgufFile(path), weights);
}

Model load_gguf_llama(const GgufFile& file, const WeightsSource& weights) {
  Model model;
  model.path = file.path();
  model.format = "gguf-v" + std::to_string(file.version());
  model.config = gguf_llama_config(file);
  model.tensors = gguf_llama_tensor_table(file, model.config);
  const TensorInfo& last = model.tensors.back();
  ProvidedValues provided =
      weights.values_for(model.path, static_cast<size_t>(last.offset + last.count));
  model.values = std::move(provided.buffer);
  if (provided.filled) return model;
  for (const TensorInfo& t : model.tensors) {
    file.read_as_float(*file.find_tensor(gguf_name_of(t.name)), model.values.data() + t.offset);
  }
  return model;
}

Tokenizer gguf_tokenizer(const GgufFile& file, int64_t vocab_size) {
  const std::string kind = file.get_string("tokenizer.ggml.model");
  check_input(kind == "llama",
              in_file(file.path(),
                      "GGUF metadata key 'tokenizer.ggml.model': expected \"llama\" (SentencePiece "
                      "BPE) to encode text, found \"" +
                          kind + "\"; use pre-tokenized [eval] tokens"));
  std::vector<std::string> pieces = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<float> scores = file.get_float_array("tokenizer.ggml.scores");
  check_input(
      static_cast<int64_t>(pieces.size()) == vocab_size &&
          static_cast<int64_t>(scores.size()) == vocab_size,
      in_file(file.path(),
              "GGUF metadata keys 'tokenizer.ggml.tokens' and 'tokenizer.ggml.scores': expected " +
                  std::to_string(vocab_size) + " entries (token_embd.weight rows), found " +
                  std::to_string(pieces.size()) + " and " + std::to_string(scores.size())));
  for (std::string& piece : pieces)
    piece = replace_all(std::move(piece), "\xE2\x96\x81", " ");  // U+2581
  return Tokenizer(std::move(pieces), std::move(scores), bos_of(file, vocab_size),
                   token_id(file, "tokenizer.ggml.eos_token_id", 2, vocab_size));
}

namespace {

// The tokenizer: required for [eval] text and a greedy prompt, else used (when the file has a
// llama one) only to decode the baseline continuation.
std::optional<Tokenizer> tokenizer_for(const JobConfig& job, const GgufFile& file,
                                       const LlamaConfig& config) {
  if (!job.eval_tokens.empty() && job.greedy_prompt.empty()) {
    const GgufValue* kind = file.find("tokenizer.ggml.model");
    if (kind == nullptr || kind->text != "llama") return std::nullopt;  // decoding only: optional
  }
  return gguf_tokenizer(file, config.vocab_size);
}

}  // namespace

std::vector<TensorInfo> check_gguf_model(const JobConfig& job, const ModelSpec& spec) {
  const GgufFile file(spec.path);
  const LlamaConfig config = gguf_llama_config(file);
  const std::vector<TensorInfo> table = gguf_llama_tensor_table(file, config);
  const auto tokenizer = tokenizer_for(job, file, config);
  language_eval_inputs(job, spec, tokenizer ? &*tokenizer : nullptr,
                       bos_of(file, config.vocab_size), config.vocab_size, config.seq_len, nullptr);
  check_strategies(job, spec, table);
  return table;
}

std::unique_ptr<OpenModel> open_gguf_model(const JobConfig& job, const ModelSpec& spec,
                                           const EvalSources& sources, const LoadOptions& options) {
  PhaseTimer timer(options);
  auto open = std::make_unique<OpenModel>();
  std::optional<Tokenizer> tokenizer;
  EvalInputs inputs;
  {
    const GgufFile file(spec.path);
    open->model = load_gguf_llama(file, *options.weights);
    const LlamaConfig& config = open->model.config;
    tokenizer = tokenizer_for(job, file, config);
    inputs = language_eval_inputs(job, spec, tokenizer ? &*tokenizer : nullptr,
                                  bos_of(file, config.vocab_size), config.vocab_size,
                                  config.seq_len, &sources);
  }  // the GGUF mapping is released here, before the baseline
  timer.done("weights");
  auto evaluator = std::make_unique<LanguageModelEvaluator>(open->model, inputs, make_llama_forward,
                                                            timer.at_end_of("greedy continuation"));
  timer.done("baseline");
  if (tokenizer) {
    open->baseline_text =
        tokenizer->decode_after(inputs.greedy_prompt.back(), evaluator->baseline().greedy_ids);
  }
  open->evaluator = std::move(evaluator);
  return open;
}

}  // namespace fracsweep
