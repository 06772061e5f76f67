#include "fracsweep/config/job.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;

// Keys as Boost.Program_options names them: "<section>.<key>", or "<key>" before any section.
constexpr const char* key_name = "name";
constexpr const char* key_seed = "seed";
constexpr const char* key_model = "models.model";
constexpr const char* key_eval_text = "eval.text";
constexpr const char* key_paragraphs = "eval.paragraphs";
constexpr const char* key_greedy_tokens = "eval.greedy_tokens";
constexpr const char* key_eval_tokens = "eval.tokens";
constexpr const char* key_eval_inputs = "eval.inputs";
constexpr const char* key_eval_labels = "eval.labels";
constexpr const char* key_eval_examples = "eval.examples";
constexpr const char* key_input_divisor = "eval.input_divisor";
constexpr const char* key_input_mean = "eval.input_mean";
constexpr const char* key_input_std = "eval.input_std";
constexpr const char* key_greedy_prompt = "eval.greedy_prompt";
constexpr const char* key_eval_probes = "eval.probes";
constexpr const char* key_fractions = "sweep.fractions";
constexpr const char* key_fractions_log = "sweep.fractions_log";
constexpr const char* key_counts = "sweep.counts";
constexpr const char* key_seeds = "sweep.seeds";
constexpr const char* key_strategy = "sweep.strategy";
constexpr const char* key_record_sites = "sweep.record_sites";

// Axis indices in TrialSpec are int32, so no axis may be longer than this.
constexpr int64_t max_axis_length = std::numeric_limits<int32_t>::max();

// Every value is read as text and converted here, so number errors name the key and token.
po::options_description job_options() {
  po::options_description options("job file keys");
  options.add_options()                                                             //
      (key_name, po::value<std::string>(), "job name")                              //
      (key_seed, po::value<std::string>(), "job seed")                              //
      (key_model, po::value<std::vector<std::string>>(), "model (repeated)")        //
      (key_eval_text, po::value<std::string>(), "evaluation text file")             //
      (key_paragraphs, po::value<std::string>(), "paragraphs evaluated")            //
      (key_greedy_tokens, po::value<std::string>(), "greedy continuation length")   //
      (key_greedy_prompt, po::value<std::string>(), "greedy continuation prompt")   //
      (key_eval_probes, po::value<std::string>(), "behaviour probes")               //
      (key_eval_tokens, po::value<std::string>(), "pre-tokenized sequences")        //
      (key_eval_inputs, po::value<std::string>(), "classifier inputs")              //
      (key_eval_labels, po::value<std::string>(), "classifier labels")              //
      (key_eval_examples, po::value<std::string>(), "examples evaluated")           //
      (key_input_divisor, po::value<std::string>(), "input divisor")                //
      (key_input_mean, po::value<std::string>(), "per-channel input mean")          //
      (key_input_std, po::value<std::string>(), "per-channel input std")            //
      (key_fractions, po::value<std::string>(), "explicit fractions")               //
      (key_fractions_log, po::value<std::string>(), "log-spaced fractions")         //
      (key_counts, po::value<std::string>(), "absolute site counts")                //
      (key_seeds, po::value<std::string>(), "seeds")                                //
      (key_strategy, po::value<std::vector<std::string>>(), "strategy (repeated)")  //
      (key_record_sites, po::value<std::string>(), "trial ids whose sites are recorded");
  return options;
}

// The registered keys of the section `unknown_key` belongs to, for "did you mean" help.
std::string known_keys_near(const po::options_description& options,
                            const std::string& unknown_key) {
  const size_t dot = unknown_key.find('.');
  const std::string section = dot == std::string::npos ? "" : unknown_key.substr(0, dot + 1);
  std::string known;
  for (const auto& option : options.options()) {
    const std::string& key = option->long_name();
    const bool top_level = key.find('.') == std::string::npos;
    const bool same_section = section.empty() ? top_level : key.rfind(section, 0) == 0;
    if (!same_section) continue;
    known += (known.empty() ? "" : ", ") + key;
  }
  if (known.empty()) return "sections are [models], [eval] and [sweep]";
  return section.empty() ? "keys before any section: " + known
                         : "keys in [" + section.substr(0, section.size() - 1) + "]: " + known;
}

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> tokens;
  std::istringstream stream{std::string(text)};
  std::string token;
  while (stream >> token) tokens.push_back(token);
  return tokens;
}

// Whole-token number conversion; nullopt when `token` is not exactly one number of type T.
template <typename T>
std::optional<T> to_number(std::string_view token) {
  T value{};
  const char* end = token.data() + token.size();
  const auto [stop, error] = std::from_chars(token.data(), end, value);
  if (error != std::errc{} || stop != end) return std::nullopt;
  return value;
}

// Shortest text that reads back as the same double.
std::string shortest_text(double value) {
  char buffer[32];  // longest shortest-round-trip double is 24 characters
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

// `value` rounded to 12 significant digits, so log-spaced fractions print cleanly.
double round_to_12_digits(double value) {
  char buffer[32];  // "d.ddddddddddde-xxx"
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific, 11);
  double rounded = value;
  std::from_chars(buffer, written.ptr, rounded);
  return rounded;
}

bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// Reads typed values out of the parsed key/value map; every error names the file and key.
class JobReader {
 public:
  JobReader(std::string job_path, po::variables_map values)
      : job_path_(std::move(job_path)), values_(std::move(values)) {
    std::error_code error;
    const fs::path absolute = fs::absolute(fs::path(job_path_), error);
    job_dir_ = (error ? fs::path(job_path_) : absolute).parent_path();
  }

  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw InputError(in_file(job_path_, "key '" + key + "': " + message));
  }

  std::optional<std::string> optional_text(const char* key) const {
    if (values_.count(key) == 0) return std::nullopt;
    return values_[key].as<std::string>();
  }

  std::string required_text(const char* key) const {
    std::optional<std::string> text = optional_text(key);
    if (!text)
      throw InputError(in_file(job_path_, "missing required key '" + std::string(key) + "'"));
    return *text;
  }

  std::vector<std::string> repeated_text(const char* key) const {
    if (values_.count(key) == 0) return {};
    return values_[key].as<std::vector<std::string>>();
  }

  // Whitespace-separated tokens of `key`, at least one when the key is present.
  std::vector<std::string> list(const char* key, const std::string& expected) const {
    std::optional<std::string> text = optional_text(key);
    if (!text) return {};
    std::vector<std::string> tokens = split_whitespace(*text);
    if (tokens.empty()) fail(key, "empty; expected " + expected);
    return tokens;
  }

  template <typename T>
  T number(const std::string& key, const std::string& token, const std::string& expected) const {
    std::optional<T> value = to_number<T>(token);
    if (!value) fail(key, "cannot parse '" + token + "' as " + expected);
    return *value;
  }

  // An integer key with a default and a lower bound.
  int64_t integer_at_least(const char* key, int64_t fallback, int64_t minimum) const {
    std::optional<std::string> text = optional_text(key);
    if (!text) return fallback;
    const std::string expectation = "an integer >= " + std::to_string(minimum);
    const int64_t value =
        number<int64_t>(key, trimmed_single(key, *text, expectation), expectation);
    if (value < minimum) fail(key, "expected " + expectation + ", found " + std::to_string(value));
    return value;
  }

  std::string trimmed_single(const char* key, const std::string& text,
                             const std::string& expected) const {
    std::vector<std::string> tokens = split_whitespace(text);
    if (tokens.size() != 1)
      fail(key, "expected one value (" + expected + "), found '" + text + "'");
    return tokens.front();
  }

  // A fraction in (0, 1]; `token` is quoted in the message so the bad value is obvious.
  double fraction(const std::string& key, const std::string& token) const {
    const double value = number<double>(key, token, "a fraction in (0, 1]");
    if (!(value > 0.0 && value <= 1.0)) {
      fail(key, "fraction '" + token + "' is outside (0, 1]");
    }
    return value;
  }

  // `written` with ${VAR} expanded, made absolute against the job file's directory and
  // lexically normalised.
  std::string resolve_path(const std::string& key, const std::string& what,
                           const std::string& written) const {
    std::string expanded;
    size_t pos = 0;
    while (pos < written.size()) {
      const size_t open = written.find("${", pos);
      if (open == std::string::npos) {
        expanded += written.substr(pos);
        break;
      }
      const size_t close = written.find('}', open + 2);
      if (close == std::string::npos) {
        fail(key, what + " '" + written + "' has '${' without a closing '}'");
      }
      const std::string variable = written.substr(open + 2, close - open - 2);
      const char* value = variable.empty() ? nullptr : std::getenv(variable.c_str());
      if (value == nullptr) {
        fail(key, what + " '" + written + "' uses environment variable '" + variable +
                      "', which is not set");
      }
      expanded += written.substr(pos, open - pos) + value;
      pos = close + 1;
    }
    if (expanded.empty()) fail(key, what + " is empty");
    fs::path path(expanded);
    if (path.is_relative()) path = job_dir_ / path;
    return path.lexically_normal().string();
  }

  // Existence and readability only; formats are checked by their loaders.
  void check_readable_file(const std::string& key, const std::string& what,
                           const std::string& path) const {
    std::error_code error;
    const fs::file_status status = fs::status(path, error);
    if (!fs::exists(status)) fail(key, what + " '" + path + "' does not exist");
    if (!fs::is_regular_file(status)) fail(key, what + " '" + path + "' is not a regular file");
    if (!std::ifstream(path, std::ios::binary)) fail(key, what + " '" + path + "' cannot be read");
  }

  const std::string& job_path() const { return job_path_; }

 private:
  std::string job_path_;
  fs::path job_dir_;  // absolute directory relative paths are resolved against
  po::variables_map values_;
};

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
      reader.fail(key_model, what + ": unexpected '" + token +
                                 "'; expected path=FILE, tokenizer=FILE, format=FORMAT and reference=MODEL");
    }
    if (target->has_value()) reader.fail(key_model, what + ": '" + field + "' given twice");
    *target = token.substr(equals + 1);
  }
  if (!path) reader.fail(key_model, what + " has no path=FILE");
  model.reference = reference.value_or("");
  model.path = reader.resolve_path(key_model, what + " path", *path);
  if (format) {
    const std::pair<const char*, ModelFormat> formats[] = {
        {"llama2c", ModelFormat::llama2c}, {"gguf", ModelFormat::gguf},
        {"hf", ModelFormat::huggingface}, {"sequential", ModelFormat::sequential}};
    const auto found = std::find_if(std::begin(formats), std::end(formats),
                                    [&](const auto& f) { return *format == f.first; });
    if (found == std::end(formats)) {
      reader.fail(key_model, what + ": format '" + *format +
                                 "' is not one of llama2c, gguf, hf, sequential");
    }
    model.format = found->second;
  } else if (fs::is_directory(model.path)) {
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
  // llama2.c checkpoints need a separate tokenizer file; other formats carry their vocabulary
  // or take pre-tokenized inputs.
  if (tokenizer) {
    model.tokenizer_path = reader.resolve_path(key_model, what + " tokenizer", *tokenizer);
    reader.check_readable_file(key_model, what + " tokenizer", model.tokenizer_path);
  } else if (model.format == ModelFormat::llama2c) {
    reader.fail(key_model, what + " has no tokenizer=FILE (required for llama2.c models)");
  }
  return model;
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

// Explicit fractions, log-spaced fractions and counts: the fractions ascending without exact
// duplicates, then the counts ascending without duplicates.
std::vector<Amount> parse_amounts(const JobReader& reader) {
  std::set<double> fractions;
  for (const std::string& token : reader.list(key_fractions, "fractions in (0, 1]")) {
    fractions.insert(reader.fraction(key_fractions, token));
  }
  std::vector<std::string> log_tokens = reader.list(key_fractions_log, "FROM TO PER_DECADE");
  if (!log_tokens.empty()) {
    if (log_tokens.size() != 3) {
      reader.fail(key_fractions_log, "expected three values 'FROM TO PER_DECADE', found " +
                                         std::to_string(log_tokens.size()));
    }
    const double from = reader.fraction(key_fractions_log, log_tokens[0]);
    const double to = reader.fraction(key_fractions_log, log_tokens[1]);
    const int64_t per_decade =
        reader.number<int64_t>(key_fractions_log, log_tokens[2], "an integer points-per-decade");
    if (from > to) {
      reader.fail(key_fractions_log,
                  "FROM " + log_tokens[0] + " is larger than TO " + log_tokens[1]);
    }
    if (per_decade < 1) {
      reader.fail(key_fractions_log, "points per decade must be >= 1, found " + log_tokens[2]);
    }
    const double estimated_points = std::log10(to / from) * static_cast<double>(per_decade) + 2;
    if (estimated_points > static_cast<double>(max_axis_length)) {
      reader.fail(key_fractions_log,
                  "would produce more than " + std::to_string(max_axis_length) + " fractions");
    }
    for (double value : log_spaced(from, to, per_decade)) fractions.insert(value);
  }
  std::set<int64_t> counts;
  for (const std::string& token : reader.list(key_counts, "site counts >= 1")) {
    const int64_t count = reader.number<int64_t>(key_counts, token, "an integer count >= 1");
    if (count < 1) reader.fail(key_counts, "count " + token + " is below 1");
    counts.insert(count);
  }

  std::vector<Amount> amounts;
  for (double value : fractions) amounts.push_back(Amount{.is_count = false, .fraction = value});
  for (int64_t count : counts) amounts.push_back(Amount{.is_count = true, .count = count});
  if (amounts.empty()) {
    throw InputError(in_file(reader.job_path(),
                             "no amounts: give at least one of '" + std::string(key_fractions) +
                                 "', '" + key_fractions_log + "' or '" + key_counts + "'"));
  }
  if (static_cast<int64_t>(amounts.size()) > max_axis_length) {
    reader.fail(key_fractions, "more than " + std::to_string(max_axis_length) + " amounts");
  }
  return amounts;
}

// "0-4 10 12": single seeds and inclusive ranges, in the order written, no seed twice.
std::vector<int64_t> parse_seeds(const JobReader& reader) {
  const std::string expected = "seeds >= 0 and ranges FIRST-LAST, e.g. '0-4 10 12'";
  std::vector<std::string> tokens = reader.list(key_seeds, expected);
  if (tokens.empty()) {
    throw InputError(
        in_file(reader.job_path(), "missing required key '" + std::string(key_seeds) + "'"));
  }
  std::vector<int64_t> seeds;
  std::set<int64_t> seen;
  for (const std::string& token : tokens) {
    // A '-' after the first character separates a range; a leading '-' is a minus sign.
    const size_t dash = token.find('-', 1);
    const std::string first_text = token.substr(0, dash);
    const int64_t first = reader.number<int64_t>(key_seeds, first_text, expected);
    int64_t last = first;
    if (dash != std::string::npos) {
      last = reader.number<int64_t>(key_seeds, token.substr(dash + 1), expected);
      if (last < first) reader.fail(key_seeds, "range '" + token + "' runs backwards");
    }
    if (first < 0) reader.fail(key_seeds, "seed " + first_text + " is negative");
    if (last - first >= max_axis_length - static_cast<int64_t>(seeds.size())) {
      reader.fail(key_seeds, "more than " + std::to_string(max_axis_length) + " seeds");
    }
    for (int64_t offset = 0; offset <= last - first; ++offset) {
      const int64_t seed = first + offset;
      if (!seen.insert(seed).second) {
        reader.fail(key_seeds,
                    "seed " + std::to_string(seed) + " is listed twice (in '" + token + "')");
      }
      seeds.push_back(seed);
    }
  }
  return seeds;
}

void parse_strategies(const JobReader& reader, JobConfig& job) {
  std::vector<std::string> texts = reader.repeated_text(key_strategy);
  if (texts.empty()) {
    throw InputError(
        in_file(reader.job_path(), "missing required key '" + std::string(key_strategy) + "'"));
  }
  for (const std::string& text : texts) {
    const std::string where =
        in_file(reader.job_path(), "key '" + std::string(key_strategy) + "' ('" + text + "')");
    StrategySpec strategy = parse_strategy(text, where);
    const std::string canonical = strategy.canonical();
    for (size_t i = 0; i < job.strategies.size(); ++i) {
      if (job.strategies[i].canonical() == canonical) {
        reader.fail(key_strategy, "'" + text + "' repeats '" + job.strategy_texts[i] +
                                      "' (both are " + canonical + ")");
      }
    }
    job.strategies.push_back(std::move(strategy));
    job.strategy_texts.push_back(text);
  }
  if (static_cast<int64_t>(job.strategies.size()) > max_axis_length) {
    reader.fail(key_strategy, "more than " + std::to_string(max_axis_length) + " strategies");
  }
}

// Trial ids, ascending and unique, each inside the grid.
std::vector<int64_t> parse_record_sites(const JobReader& reader, const JobConfig& job) {
  const std::string expected = "a trial id >= 0";
  std::set<int64_t> ids;
  for (const std::string& token : reader.list(key_record_sites, "trial ids >= 0")) {
    const int64_t id = reader.number<int64_t>(key_record_sites, token, expected);
    if (id < 0) reader.fail(key_record_sites, "trial id " + token + " is negative");
    if (!ids.insert(id).second)
      reader.fail(key_record_sites, "trial id " + token + " is listed twice");
  }
  if (!ids.empty()) {
    const int64_t n_trials = job_grid(job).size();
    if (*ids.rbegin() >= n_trials) {
      reader.fail(key_record_sites, "trial id " + std::to_string(*ids.rbegin()) +
                                        " is outside the grid (ids 0.." +
                                        std::to_string(n_trials - 1) + ")");
    }
  }
  return {ids.begin(), ids.end()};
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
  } catch (const po::error& error) {
    throw InputError(in_file(path, error.what()));
  }
  return values;
}

// "0-9 12 14-15" for a seed list: consecutive ascending runs collapsed into ranges.
std::string compact_seed_list(const std::vector<int64_t>& seeds) {
  std::string text;
  for (size_t begin = 0; begin < seeds.size();) {
    size_t end = begin + 1;
    while (end < seeds.size() && seeds[end] == seeds[end - 1] + 1) ++end;
    text += (text.empty() ? "" : " ") + std::to_string(seeds[begin]);
    if (end - begin > 1) text += "-" + std::to_string(seeds[end - 1]);
    begin = end;
  }
  return text;
}

}  // namespace

int64_t Amount::sites(int64_t n_scope) const {
  if (n_scope <= 0) return 0;
  const int64_t k = is_count ? count : std::llround(fraction * static_cast<double>(n_scope));
  return std::min(k, n_scope);
}

std::string Amount::label() const {
  return is_count ? "count=" + std::to_string(count) : shortest_text(fraction);
}

std::vector<double> log_spaced(double from, double to, int64_t per_decade) {
  check_invariant(from > 0.0 && from <= to && per_decade >= 1,
                  "log_spaced needs 0 < from <= to and per_decade >= 1");
  // Points this close below `to` count as `to`, so rounding never duplicates the end point.
  const double below_to = to * (1.0 - 1e-9);
  std::vector<double> values;
  if (from < below_to) values.push_back(from);
  const double first_exponent = std::log10(from);
  for (int64_t i = 1;; ++i) {
    const double exponent =
        first_exponent + static_cast<double>(i) / static_cast<double>(per_decade);
    const double value = round_to_12_digits(std::pow(10.0, exponent));
    if (!(value < below_to)) break;
    values.push_back(value);
  }
  values.push_back(to);
  return values;
}

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
    throw InputError(in_file(path, "missing required key 'eval.text': give eval.text (or "
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

  job.amounts = parse_amounts(reader);
  parse_strategies(reader, job);
  check_model_names(reader, job);
  job.seeds = parse_seeds(reader);
  job.record_sites = parse_record_sites(reader, job);
  return job;
}

const char* model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::llama2c: return "llama2c";
    case ModelFormat::gguf: return "gguf";
    case ModelFormat::huggingface: return "hf";
    case ModelFormat::sequential: return "sequential";
  }
  return "?";
}

JobConfig parse_job_file(const std::string& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) throw InputError(in_file(path, "job file does not exist"));
  if (!fs::is_regular_file(status))
    throw InputError(in_file(path, "job file is not a regular file"));
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
  for (const StrategySpec& strategy : job.strategies) axes.deterministic.push_back(strategy.deterministic());
  axes.n_amounts = static_cast<int64_t>(job.amounts.size());
  axes.n_seeds = static_cast<int64_t>(job.seeds.size());
  return Grid(axes);
}

std::string echo_job(const JobConfig& job) {
  std::ostringstream out;
  out << "job " << job.name << " (" << job.path << "), job seed " << job.seed << "\n";
  out << "models (" << job.models.size() << "):\n";
  for (const ModelSpec& model : job.models) {
    out << "  " << model.name << ": " << model.path << " [" << model_format_name(model.format) << "]";
    if (!model.tokenizer_path.empty()) out << " (tokenizer " << model.tokenizer_path << ")";
    out << "\n";
  }
  if (!job.eval_text.empty()) {
    out << "eval: first " << job.eval_paragraphs << " paragraphs of " << job.eval_text << "\n";
  }
  if (!job.eval_tokens.empty()) out << "eval: pre-tokenized sequences in " << job.eval_tokens << "\n";
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
  out << "amounts (" << job.amounts.size() << "):";
  for (const Amount& amount : job.amounts) out << " " << amount.label();
  out << "\n";
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
