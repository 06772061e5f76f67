#include "fracsweep/models/models.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "fracsweep/eval/classifier.hpp"
#include "fracsweep/formats/gguf.hpp"
#include "fracsweep/formats/hf.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/models/language_eval.hpp"
#include "fracsweep/models/model_loaders.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/sequential.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

// llama2.c's BOS id, where its generation starts and stops.
constexpr int32_t llama2c_bos_id = 1;

// The model line's tokenizer=FILE, when given (the job reader requires one unless the job needs
// no text encoded: [eval] tokens, no greedy_prompt, no probes).
std::optional<Tokenizer> llama2c_tokenizer(const ModelSpec& spec, int64_t vocab_size) {
  if (spec.tokenizer_path.empty()) return std::nullopt;
  return Tokenizer::load_llama2c(spec.tokenizer_path, vocab_size);
}

}  // namespace

void check_scopes(const JobConfig& job, const ModelSpec& spec,
                  const std::vector<TensorInfo>& tensors) {
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    const Scope& scope = job.strategies[s].scope;
    const bool matches = std::any_of(tensors.begin(), tensors.end(),
                                     [&](const TensorInfo& t) { return in_scope(scope, t); });
    check_input(matches, [&] {
      // Name the buffers the patterns match, which the default scope leaves out.
      const auto buffer = std::find_if(tensors.begin(), tensors.end(), [&](const TensorInfo& t) {
        return t.is_buffer() && scope.matches(t.name);
      });
      return in_file(
          job.path,
          "[sweep] strategy '" + job.strategy_texts[s] + "': scope " + scope.canonical() +
              " matches no tensor of model '" + spec.name + "'" +
              (buffer == tensors.end() ? std::string()
                                       : " (buffers such as '" + buffer->name +
                                             "' are in scope only under an explicit include=)"));
    });
    int64_t n_scope = 0;
    for (const TensorInfo& t : tensors) n_scope += in_scope(scope, t) ? t.count : 0;
    for (const Amount& amount : job.amounts) {
      // k = round(f * N): a fraction below 1/(2N) would run a trial that changes nothing.
      check_input(amount.is_count || amount.sites(n_scope) >= 1, [&] {
        return in_file(job.path, "[sweep] fraction " + amount.label() + " of the " +
                                     std::to_string(n_scope) + " parameters strategy '" +
                                     job.strategy_texts[s] + "' may touch in model '" + spec.name +
                                     "' rounds to 0 sites (k = round(f x N)); a fraction of "
                                     "at least 1/N = " +
                                     significant_digits(1.0 / static_cast<double>(n_scope), 3) +
                                     " changes one weight there");
      });
      check_input(!amount.is_count || amount.count <= n_scope, [&] {
        return in_file(job.path, "[sweep] counts: " + std::to_string(amount.count) +
                                     " sites exceed the " + std::to_string(n_scope) +
                                     " parameters strategy '" + job.strategy_texts[s] +
                                     "' may touch in model '" + spec.name + "'");
      });
    }
  }
}

// llama2.c checkpoint + tokenizer.bin, evaluated on text paragraphs or pre-tokenized sequences.
std::vector<TensorInfo> check_llama2c_model(const JobConfig& job, const ModelSpec& spec) {
  const LlamaConfig config = read_llama2c_header(spec.path);
  const auto tokenizer = llama2c_tokenizer(spec, config.vocab_size);
  language_eval_inputs(job, spec, tokenizer ? &*tokenizer : nullptr, llama2c_bos_id,
                       config.vocab_size, config.seq_len, nullptr);
  std::vector<TensorInfo> table = llama2c_tensor_table(config);
  check_scopes(job, spec, table);
  return table;
}

std::unique_ptr<OpenModel> open_llama2c_model(const JobConfig& job, const ModelSpec& spec,
                                              const EvalSources& sources,
                                              const LoadOptions& options) {
  PhaseTimer timer(options);
  auto open = std::make_unique<OpenModel>();
  open->model = load_llama2c(spec.path, *options.weights);
  timer.done("weights");
  const LlamaConfig& config = open->model.config;
  const auto tokenizer = llama2c_tokenizer(spec, config.vocab_size);
  const EvalInputs inputs =
      language_eval_inputs(job, spec, tokenizer ? &*tokenizer : nullptr, llama2c_bos_id,
                           config.vocab_size, config.seq_len, &sources);
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

EvalSources read_eval_sources(const JobConfig& job) {
  EvalSources sources;
  if (!job.eval_text.empty())
    sources.paragraphs = read_paragraphs(job.eval_text, job.eval_paragraphs);
  if (!job.eval_probes.empty()) sources.probes = read_probes(job.eval_probes);
  // A probe objective names a kind of the probes file.
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    const Objective& objective = job.strategies[s].objective;
    if (!job.strategies[s].uses_gradient() || !objective.uses_probes()) continue;
    const std::string where =
        "[sweep] strategy '" + job.strategy_texts[s] + "': objective=" + objective.canonical();
    check_input(sources.probes.has_value(),
                in_file(job.path, where + " needs behaviour probes ([eval] probes = FILE.tsv); "
                                          "classifiers have none: use objective=nll or agreement"));
    check_input(sources.probes->kind_index(objective.probe_kind) >= 0,
                in_file(job.path, where + ": " + sources.probes->path + " has no probes of kind '" +
                                      objective.probe_kind +
                                      "' (kinds: " + join(sources.probes->kinds, ", ") + ")"));
  }
  return sources;
}

Model load_model_file(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) return load_hf_model(path);
  if (path.ends_with(".gguf")) return load_gguf_llama(path);
  if (path.ends_with(".json")) {
    const SequentialSpec spec = read_sequential_spec(path);
    Model model = load_sequential_model(spec);
    build_network(spec, model);  // shapes must chain, as in a sweep
    return model;
  }
  return load_llama2c(path);
}

Model load_model_weights(const JobConfig& job, size_t m, const WeightsSource& weights) {
  const ModelSpec& spec = job.models.at(m);
  switch (spec.format) {
    case ModelFormat::llama2c:
      return load_llama2c(spec.path, weights);
    case ModelFormat::gguf:
      return load_gguf_llama(spec.path, weights);
    case ModelFormat::huggingface:
      return load_hf_model(spec.path, weights);
    case ModelFormat::sequential:
      return load_sequential_model(read_sequential_spec(spec.path));
  }
  throw RunError("unknown model format");
}

std::vector<TensorInfo> check_model(const JobConfig& job, size_t m) {
  const ModelSpec& spec = job.models.at(m);
  switch (spec.format) {
    case ModelFormat::llama2c:
      return check_llama2c_model(job, spec);
    case ModelFormat::gguf:
      return check_gguf_model(job, spec);
    case ModelFormat::huggingface:
      return check_hf_model(job, spec);
    case ModelFormat::sequential:
      return check_sequential_model(job, spec);
  }
  throw RunError("unknown model format");
}

void check_job_inputs(const JobConfig& job) {
  std::vector<std::vector<TensorInfo>> tables;  // (n_models) each model's tensor table
  for (size_t m = 0; m < job.models.size(); ++m) tables.push_back(check_model(job, m));
  // A reference or a delta donor is a second checkpoint of the same architecture: refused now,
  // before any rank loads values.
  const auto check_pair = [&](size_t m, const std::string& other_name, const std::string& what,
                              bool same_stored) {
    const auto other = static_cast<size_t>(job.model_index(other_name));
    check_same_tensor_tables(tables[m], job.models[m].path, tables[other], job.models[other].path,
                             in_file(job.path, "model '" + job.models[m].name + "' " + what),
                             same_stored);
  };
  for (size_t m = 0; m < job.models.size(); ++m) {
    if (!job.models[m].reference.empty()) {
      check_pair(m, job.models[m].reference, "reference=" + job.models[m].reference, false);
    }
    for (const StrategySpec& strategy : job.strategies) {
      if (strategy.kind == StrategyKind::delta) {
        check_pair(m, strategy.from_model, "strategy delta from=" + strategy.from_model, true);
      }
    }
  }
}

namespace {

std::unique_ptr<OpenModel> open_by_format(const JobConfig& job, const ModelSpec& spec,
                                          const EvalSources& sources, const LoadOptions& options) {
  switch (spec.format) {
    case ModelFormat::llama2c:
      return open_llama2c_model(job, spec, sources, options);
    case ModelFormat::gguf:
      return open_gguf_model(job, spec, sources, options);
    case ModelFormat::huggingface:
      return open_hf_model(job, spec, sources, options);
    case ModelFormat::sequential:
      return open_sequential_model(job, spec, sources, options);
  }
  throw RunError("unknown model format");
}

}  // namespace

std::unique_ptr<OpenModel> open_model(const JobConfig& job, size_t m, const EvalSources& sources,
                                      const LoadOptions& options) {
  const ModelSpec& spec = job.models.at(m);
  std::unique_ptr<OpenModel> open = open_by_format(job, spec, sources, options);
  if (!spec.reference.empty()) {
    const Model reference = load_model_weights(
        job, static_cast<size_t>(job.model_index(spec.reference)), *options.weights);
    open->evaluator->set_reference(reference);
  }
  for (const StrategySpec& strategy : job.strategies) {
    if (strategy.kind != StrategyKind::delta || strategy.from_model == spec.name ||
        open->donors.count(strategy.from_model) > 0) {
      continue;
    }
    const auto donor_idx = static_cast<size_t>(job.model_index(strategy.from_model));
    open->donors[strategy.from_model] =
        std::make_unique<const Model>(load_model_weights(job, donor_idx, *options.weights));
  }
  return open;
}

}  // namespace fracsweep
