#include "fracsweep/config/job.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"
#include "job_reader.hpp"

namespace fracsweep {

// The keys, the reader and the axis parsers shared with job_reader.cpp and axes.cpp.
using namespace job_file;

namespace {

namespace fs = std::filesystem;

// Every value is read as text and converted here, so number errors name the key and token.
po::options_description job_options() {
  po::options_description options("job file keys");
  options.add_options()                                                                   //
      (key_name, po::value<std::string>(), "job name")                                    //
      (key_seed, po::value<std::string>(), "job seed")                                    //
      (key_model, po::value<std::vector<std::string>>(), "model (repeated)")              //
      (key_eval_text, po::value<std::string>(), "evaluation text file")                   //
      (key_paragraphs, po::value<std::string>(), "paragraphs evaluated")                  //
      (key_greedy_tokens, po::value<std::string>(), "greedy continuation length")         //
      (key_greedy_prompt, po::value<std::string>(), "greedy continuation prompt")         //
      (key_eval_probes, po::value<std::string>(), "behaviour probes")                     //
      (key_eval_tokens, po::value<std::string>(), "pre-tokenized sequences")              //
      (key_eval_inputs, po::value<std::string>(), "classifier inputs")                    //
      (key_eval_labels, po::value<std::string>(), "classifier labels")                    //
      (key_eval_examples, po::value<std::string>(), "examples evaluated")                 //
      (key_input_divisor, po::value<std::string>(), "input divisor")                      //
      (key_input_mean, po::value<std::string>(), "per-channel input mean")                //
      (key_input_std, po::value<std::string>(), "per-channel input std")                  //
      (key_fractions, po::value<std::string>(), "explicit fractions")                     //
      (key_fractions_log, po::value<std::string>(), "log-spaced fractions")               //
      (key_counts, po::value<std::string>(), "absolute site counts")                      //
      (key_seeds, po::value<std::string>(), "seeds")                                      //
      (key_strategy, po::value<std::vector<std::string>>(), "strategy (repeated)")        //
      (key_record_sites, po::value<std::string>(), "trial ids whose sites are recorded")  //
      (key_adaptive, po::value<std::string>(), "adaptive search criteria")                //
      (key_adaptive_width, po::value<std::string>(), "adaptive bracket width");
  return options;
}

// The registered keys of the section `unknown_key` belongs to, for "did you mean" help.
std::string known_keys_near(const po::options_description& options,
                            const std::string& unknown_key) {
  const size_t dot = unknown_key.find('.');
  const std::string section = dot == std::string::npos ? "" : unknown_key.substr(0, dot + 1);
  std::vector<std::string> keys;
  for (const auto& option : options.options()) {
    const std::string& key = option->long_name();
    const bool top_level = key.find('.') == std::string::npos;
    const bool same_section = section.empty() ? top_level : key.rfind(section, 0) == 0;
    if (same_section) keys.push_back(key);
  }
  const std::string known = join(keys, ", ");
  if (known.empty()) return "sections are [models], [eval] and [sweep]";
  return section.empty() ? "keys before any section: " + known
                         : "keys in [" + section.substr(0, section.size() - 1) + "]: " + known;
}

bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

ModelSpec parse_model(const JobReader& reader, const std::string& text) {
  std::vector<std::string> tokens = split_whitespace(text);
  const std::string quoted = "'" + text + "'";
  if (tokens.empty()) reader.fail(key_model, "empty; expected 'NAME path=FILE tokenizer=FILE'");
  ModelSpec model;
  model.name = tokens.front();
  if (!is_valid_name(model.name)) {
    reader.fail(key_model, "model name '" + model.name + "' in " + quoted +
                               " must be one or more of [A-Za-z0-9._-]");
  }
  const std::string what = "model '" + model.name + "'";
  std::optional<std::string> path, tokenizer, format, reference;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const std::string& token = tokens[i];
    const size_t equals = token.find('=');
    const std::string field = token.substr(0, equals);
    std::optional<std::string>* target = field == "path"        ? &path
                                         : field == "tokenizer" ? &tokenizer
                                         : field == "format"    ? &format
                                         : field == "reference" ? &reference
                                                                : nullptr;
    if (equals == std::string::npos || target == nullptr) {
      reader.fail(key_model,
                  what + ": unexpected '" + token +
                      "'; expected path=FILE, tokenizer=FILE, format=FORMAT and reference=MODEL");
    }
    if (target->has_value()) reader.fail(key_model, what + ": '" + field + "' given twice");
    *target = token.substr(equals + 1);
  }
  if (!path) reader.fail(key_model, what + " has no path=FILE");
  model.reference = reference.value_or("");
  model.path = reader.resolve_path(key_model, what + " path", *path);
  if (format) {
    const std::pair<const char*, ModelFormat> formats[] = {{"llama2c", ModelFormat::llama2c},
                                                           {"gguf", ModelFormat::gguf},
                                                           {"hf", ModelFormat::huggingface},
                                                           {"sequential", ModelFormat::sequential}};
    const auto found = std::find_if(std::begin(formats), std::end(formats),
                                    [&](const auto& f) { return *format == f.first; });
    if (found == std::end(formats)) {
      reader.fail(key_model,
                  what + ": format '" + *format + "' is not one of llama2c, gguf, hf, sequential");
    }
    model.format = found->second;
  } else if (std::error_code unreadable; fs::is_directory(model.path, unreadable)) {
    // (the error_code overload: a name too long for the file system is no directory, not a
    // std::filesystem exception; fuzz_job finding)
    model.format = ModelFormat::huggingface;
  } else {
    const std::string extension = fs::path(model.path).extension().string();
    model.format = extension == ".gguf"   ? ModelFormat::gguf
                   : extension == ".json" ? ModelFormat::sequential
                                          : ModelFormat::llama2c;
  }
  if (model.format == ModelFormat::huggingface) {
    reader.check_readable_file(key_model, what + " config.json",
                               (fs::path(model.path) / "config.json").string());
  } else {
    reader.check_readable_file(key_model, what + " path", model.path);
  }
  // llama2.c checkpoints take a separate tokenizer file (whether one is needed depends on the
  // [eval] section: check_tokenizers); other formats carry their vocabulary or take
  // pre-tokenized inputs.
  if (tokenizer) {
    model.tokenizer_path = reader.resolve_path(key_model, what + " tokenizer", *tokenizer);
    reader.check_readable_file(key_model, what + " tokenizer", model.tokenizer_path);
  }
  return model;
}

// A llama2.c model needs tokenizer=FILE when the job encodes text: [eval] text (unless [eval]
// tokens replaces it), a greedy_prompt or behaviour probes.
void check_tokenizers(const JobReader& reader, const JobConfig& job) {
  std::string needs;
  if (job.eval_tokens.empty()) {
    needs = "[eval] text (or give pre-tokenized [eval] tokens)";
  } else if (!job.greedy_prompt.empty()) {
    needs = "[eval] greedy_prompt";
  } else if (!job.eval_probes.empty()) {
    needs = "[eval] probes";
  } else {
    return;
  }
  for (const ModelSpec& model : job.models) {
    if (model.format == ModelFormat::llama2c && model.tokenizer_path.empty()) {
      reader.fail(key_model, "model '" + model.name +
                                 "' has no tokenizer=FILE, which a llama2.c model needs for " +
                                 needs);
    }
  }
}

// Names that point at other models of the job: reference= of a model line, from= of a delta
// strategy.
void check_model_names(const JobReader& reader, const JobConfig& job) {
  for (const ModelSpec& model : job.models) {
    if (model.reference.empty()) continue;
    if (job.model_index(model.reference) < 0 || model.reference == model.name) {
      reader.fail(key_model, "model '" + model.name + "': reference=" + model.reference +
                                 " must name another model of the job");
    }
  }
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    const StrategySpec& strategy = job.strategies[s];
    if (strategy.kind == StrategyKind::delta && job.model_index(strategy.from_model) < 0) {
      reader.fail(key_strategy, "'" + job.strategy_texts[s] + "': from=" + strategy.from_model +
                                    " names no model of the job");
    }
  }
}

po::variables_map read_key_values(const std::string& text, const std::string& path) {
  const po::options_description options = job_options();
  po::variables_map values;
  std::istringstream stream(text);
  try {
    po::store(po::parse_config_file(stream, options, /*allow_unregistered=*/false), values);
  } catch (const po::unknown_option& error) {
    const std::string key = error.get_option_name();
    if (key.empty()) throw InputError(in_file(path, "a line has '=' but no key before it"));
    throw InputError(
        in_file(path, "unknown key '" + key + "' (" + known_keys_near(options, key) + ")"));
  } catch (const po::multiple_occurrences& error) {
    throw InputError(in_file(path, "key '" + error.get_option_name() +
                                       "' is given more than once (only models.model and "
                                       "sweep.strategy may repeat)"));
  } catch (const po::invalid_config_file_syntax& error) {
    // Not error.what(): Boost 1.74 substitutes the line into its message in a loop that never
    // ends when the line itself holds "%invalid_line%" (fuzz_job finding).
    throw InputError(in_file(path, "invalid line '" + error.tokens() +
                                       "': expected key = value, a [section] or a # comment"));
  } catch (const po::error& error) {
    throw InputError(in_file(path, error.what()));
  }
  return values;
}

// The [eval] section: which data, how much of it, input scaling, greedy continuation.
void parse_eval(const JobReader& reader, JobConfig& job) {
  auto optional_file = [&](const char* key, const std::string& what) -> std::string {
    const std::optional<std::string> written = reader.optional_text(key);
    if (!written) return "";
    const std::string resolved = reader.resolve_path(key, what, *written);
    reader.check_readable_file(key, what, resolved);
    return resolved;
  };
  job.eval_text = optional_file(key_eval_text, "evaluation text");
  job.eval_tokens = optional_file(key_eval_tokens, "pre-tokenized evaluation file");
  job.eval_inputs = optional_file(key_eval_inputs, "classifier inputs");
  job.eval_labels = optional_file(key_eval_labels, "classifier labels");
  if (job.eval_text.empty() && job.eval_tokens.empty() && job.eval_inputs.empty()) {
    throw InputError(in_file(reader.job_path(),
                             "missing required key 'eval.text': give eval.text (or "
                             "eval.tokens) for language models, or eval.inputs and "
                             "eval.labels for classifiers"));
  }
  if (!job.eval_inputs.empty() && job.eval_labels.empty()) {
    reader.fail(key_eval_labels, "missing: [eval] inputs needs labels");
  }
  job.eval_examples = reader.integer_at_least(key_eval_examples, job.eval_examples, 0);
  if (const auto divisor = reader.optional_text(key_input_divisor)) {
    job.input_divisor = reader.number<double>(
        key_input_divisor, reader.trimmed_single(key_input_divisor, *divisor, "a number > 0"),
        "a number > 0");
    if (!(job.input_divisor > 0) || !std::isfinite(job.input_divisor)) {
      reader.fail(key_input_divisor, "expected a finite number > 0, found " + *divisor);
    }
  }
  for (const std::string& token : reader.list(key_input_mean, "per-channel means")) {
    job.input_mean.push_back(reader.number<double>(key_input_mean, token, "a number"));
  }
  for (const std::string& token : reader.list(key_input_std, "per-channel standard deviations")) {
    const double value = reader.number<double>(key_input_std, token, "a number > 0");
    if (!(value > 0)) reader.fail(key_input_std, "expected numbers > 0, found " + token);
    job.input_std.push_back(value);
  }
  if (job.input_mean.size() != job.input_std.size()) {
    reader.fail(key_input_std, "input_mean and input_std must list the same number of channels");
  }
  job.eval_paragraphs = reader.integer_at_least(key_paragraphs, job.eval_paragraphs, 1);
  job.greedy_tokens = reader.integer_at_least(key_greedy_tokens, job.greedy_tokens, 0);
  job.greedy_prompt = reader.optional_text(key_greedy_prompt).value_or("");
  job.eval_probes = optional_file(key_eval_probes, "behaviour probes file");
}

// "0-9 12 14-15" for a seed list: consecutive ascending runs collapsed into ranges.
std::string compact_seed_list(const std::vector<int64_t>& seeds) {
  std::vector<std::string> runs;
  for (size_t begin = 0; begin < seeds.size();) {
    size_t end = begin + 1;
    while (end < seeds.size() && seeds[end] == seeds[end - 1] + 1) ++end;
    runs.push_back(std::to_string(seeds[begin]));
    if (end - begin > 1) runs.back() += "-" + std::to_string(seeds[end - 1]);
    begin = end;
  }
  return join(runs, " ");
}

}  // namespace

JobConfig parse_job_text(const std::string& text, const std::string& path) {
  const JobReader reader(path, read_key_values(text, path));

  JobConfig job;
  job.path = path;
  job.text = text;
  job.name = reader.required_text(key_name);
  if (!is_valid_name(job.name)) {
    reader.fail(key_name, "'" + job.name + "' must be one or more of [A-Za-z0-9._-]");
  }
  if (std::optional<std::string> seed = reader.optional_text(key_seed)) {
    const std::string expected = "an unsigned 64-bit integer";
    job.seed = reader.number<uint64_t>(key_seed, reader.trimmed_single(key_seed, *seed, expected),
                                       expected);
  }

  std::set<std::string> model_names;
  for (const std::string& model_text : reader.repeated_text(key_model)) {
    ModelSpec model = parse_model(reader, model_text);
    if (!model_names.insert(model.name).second) {
      reader.fail(key_model, "model name '" + model.name + "' is used twice");
    }
    job.models.push_back(std::move(model));
  }
  if (job.models.empty()) {
    throw InputError(in_file(path, "missing required key '" + std::string(key_model) + "'"));
  }
  if (static_cast<int64_t>(job.models.size()) > max_axis_length) {
    reader.fail(key_model, "more than " + std::to_string(max_axis_length) + " models");
  }

  parse_eval(reader, job);
  check_tokenizers(reader, job);

  job.amounts = parse_amounts(reader);
  parse_adaptive(reader, job);
  parse_strategies(reader, job);
  check_model_names(reader, job);
  job.seeds = parse_seeds(reader);
  job.record_sites = parse_record_sites(reader, checked_trial_count(reader, job));
  return job;
}

const char* model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::llama2c:
      return "llama2c";
    case ModelFormat::gguf:
      return "gguf";
    case ModelFormat::huggingface:
      return "hf";
    case ModelFormat::sequential:
      return "sequential";
  }
  return "?";
}

JobConfig parse_job_file(const std::string& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) throw InputError(in_file(path, "job file does not exist"));
  if (!fs::is_regular_file(status))
    throw InputError(in_file(path, "job file is not a regular file"));
  const std::uintmax_t bytes = fs::file_size(path, error);
  if (!error && bytes > static_cast<std::uintmax_t>(max_job_file_bytes)) {
    throw InputError(in_file(
        path, "job file has " + std::to_string(bytes) + " bytes, more than the limit of " +
                  std::to_string(max_job_file_bytes) + " (it is copied into every results file)"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(in_file(path, "job file cannot be read"));
  std::ostringstream text;
  text << file.rdbuf();  // sets failbit on `text` for an empty file, which is not an error
  if (file.bad()) throw InputError(in_file(path, "job file cannot be read"));
  return parse_job_text(text.str(), path);
}

int32_t JobConfig::model_index(const std::string& model_name) const {
  for (size_t m = 0; m < models.size(); ++m) {
    if (models[m].name == model_name) return static_cast<int32_t>(m);
  }
  return -1;
}

Grid job_grid(const JobConfig& job) {
  GridAxes axes;
  axes.n_models = static_cast<int64_t>(job.models.size());
  for (const StrategySpec& strategy : job.strategies)
    axes.deterministic.push_back(strategy.deterministic());
  axes.n_amounts = static_cast<int64_t>(job.amounts.size());
  axes.n_seeds = static_cast<int64_t>(job.seeds.size());
  return Grid(axes);
}

std::vector<std::string> job_input_paths(const JobConfig& job) {
  std::vector<std::string> paths = {job.path};
  for (const ModelSpec& model : job.models) {
    paths.push_back(model.path);
    if (!model.tokenizer_path.empty()) paths.push_back(model.tokenizer_path);
  }
  for (const std::string* file :
       {&job.eval_text, &job.eval_tokens, &job.eval_inputs, &job.eval_labels, &job.eval_probes}) {
    if (!file->empty()) paths.push_back(*file);
  }
  return paths;
}

std::string echo_job(const JobConfig& job) {
  std::ostringstream out;
  out << "job " << job.name << " (" << job.path << "), job seed " << job.seed << "\n";
  out << "models (" << job.models.size() << "):\n";
  for (const ModelSpec& model : job.models) {
    out << "  " << model.name << ": " << model.path << " [" << model_format_name(model.format)
        << "]";
    if (!model.tokenizer_path.empty()) out << " (tokenizer " << model.tokenizer_path << ")";
    out << "\n";
  }
  if (!job.eval_text.empty()) {
    out << "eval: first " << job.eval_paragraphs << " paragraphs of " << job.eval_text << "\n";
  }
  if (!job.eval_tokens.empty())
    out << "eval: pre-tokenized sequences in " << job.eval_tokens << "\n";
  if (!job.eval_inputs.empty()) {
    out << "eval: inputs " << job.eval_inputs << ", labels " << job.eval_labels << "\n";
  }
  if (job.eval_examples > 0) out << "eval: first " << job.eval_examples << " examples\n";
  if (job.greedy_tokens == 0) {
    out << "greedy continuation: off\n";
  } else {
    out << "greedy continuation: " << job.greedy_tokens << " tokens from "
        << (job.greedy_prompt.empty() ? "BOS" : "prompt \"" + job.greedy_prompt + "\"") << "\n";
  }
  if (job.adaptive) {
    const AdaptiveSearch& search = *job.adaptive;
    std::vector<std::string> criteria;
    for (const AdaptiveCriterion& criterion : search.criteria) criteria.push_back(criterion.text());
    out << "adaptive search for f*: " << join(criteria, " ") << " (width "
        << shortest_number_text(search.width) << "), on " << job.amounts.size()
        << " log-spaced fractions from " << shortest_number_text(search.lattice.smallest) << " to "
        << shortest_number_text(search.lattice.largest) << "\n";
  } else {
    out << "amounts (" << job.amounts.size() << "):";
    for (const Amount& amount : job.amounts) out << " " << amount.label();
    out << "\n";
  }
  out << "strategies (" << job.strategies.size() << "):\n";
  for (size_t i = 0; i < job.strategies.size(); ++i) {
    out << "  " << job.strategies[i].canonical()
        << (job.strategies[i].deterministic() ? "  [deterministic: one trial per amount]" : "")
        << "\n";
  }
  out << "seeds (" << job.seeds.size() << "): " << compact_seed_list(job.seeds) << "\n";
  if (!job.record_sites.empty()) {
    out << "record sites of trials:";
    for (int64_t id : job.record_sites) out << " " << id;
    out << "\n";
  }
  return out.str();
}

}  // namespace fracsweep
