#pragma once
// Private to the config layer (job.cpp, job_reader.cpp, axes.cpp): the job file's keys and the
// reader that turns their text into typed values, every error naming the file and key.
#include <boost/program_options.hpp>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep::job_file {

namespace po = boost::program_options;

// Keys as Boost.Program_options names them: "<section>.<key>", or "<key>" before any section.
inline constexpr const char* key_name = "name";
inline constexpr const char* key_seed = "seed";
inline constexpr const char* key_model = "models.model";
inline constexpr const char* key_eval_text = "eval.text";
inline constexpr const char* key_paragraphs = "eval.paragraphs";
inline constexpr const char* key_greedy_tokens = "eval.greedy_tokens";
inline constexpr const char* key_eval_tokens = "eval.tokens";
inline constexpr const char* key_eval_inputs = "eval.inputs";
inline constexpr const char* key_eval_labels = "eval.labels";
inline constexpr const char* key_eval_examples = "eval.examples";
inline constexpr const char* key_input_divisor = "eval.input_divisor";
inline constexpr const char* key_input_mean = "eval.input_mean";
inline constexpr const char* key_input_std = "eval.input_std";
inline constexpr const char* key_greedy_prompt = "eval.greedy_prompt";
inline constexpr const char* key_eval_probes = "eval.probes";
inline constexpr const char* key_fractions = "sweep.fractions";
inline constexpr const char* key_fractions_log = "sweep.fractions_log";
inline constexpr const char* key_counts = "sweep.counts";
inline constexpr const char* key_seeds = "sweep.seeds";
inline constexpr const char* key_strategy = "sweep.strategy";
inline constexpr const char* key_record_sites = "sweep.record_sites";
inline constexpr const char* key_adaptive = "sweep.adaptive";
inline constexpr const char* key_adaptive_width = "sweep.adaptive_width";

// Stated limits on what a job may ask for, checked before anything of that size is built: a
// one-line value (`seeds = 0-100000000`) must end in a clear error, never an out-of-memory kill.
// Each axis (models, amounts, strategies, seeds, record_sites) holds at most max_axis_length
// entries; the grid at most max_trials trials (split a larger study into jobs or shards and
// `fracsweep merge` them); the job file, copied into every results file, at most
// max_job_file_bytes.
inline constexpr int64_t max_axis_length = 1'000'000;
inline constexpr int64_t max_trials = 10'000'000;
inline constexpr int64_t max_job_file_bytes = 1 << 20;

// Whole-token number conversion; nullopt when `token` is not exactly one number of type T.
template <typename T>
std::optional<T> to_number(std::string_view token) {
  T value{};
  const char* end = token.data() + token.size();
  const auto [stop, error] = std::from_chars(token.data(), end, value);
  if (error != std::errc{} || stop != end) return std::nullopt;
  return value;
}

// Reads typed values out of the parsed key/value map; every error names the file and key.
class JobReader {
 public:
  JobReader(std::string job_path, po::variables_map values);

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
  std::vector<std::string> list(const char* key, const std::string& expected) const;

  template <typename T>
  T number(const std::string& key, const std::string& token, const std::string& expected) const {
    std::optional<T> value = to_number<T>(token);
    if (!value) fail(key, "cannot parse '" + token + "' as " + expected);
    return *value;
  }

  // An integer key with a default and a lower bound.
  int64_t integer_at_least(const char* key, int64_t fallback, int64_t minimum) const;

  // The one whitespace-separated token of `text` (the value of `key`).
  std::string trimmed_single(const char* key, const std::string& text,
                             const std::string& expected) const;

  // A fraction in (0, 1]; `token` is quoted in the message so the bad value is obvious.
  double fraction(const std::string& key, const std::string& token) const;

  // `written` with ${VAR} expanded, made absolute against the job file's directory and
  // lexically normalised.
  std::string resolve_path(const std::string& key, const std::string& what,
                           const std::string& written) const;

  // Existence and readability only; formats are checked by their loaders.
  void check_readable_file(const std::string& key, const std::string& what,
                           const std::string& path) const;

  const std::string& job_path() const { return job_path_; }

 private:
  std::string job_path_;
  std::filesystem::path job_dir_;  // absolute directory relative paths are resolved against
  po::variables_map values_;
};

// The sweep axes (axes.cpp).
std::vector<Amount> parse_amounts(const JobReader& reader);
std::vector<int64_t> parse_seeds(const JobReader& reader);
// The grid's trial count, refused above max_trials (checked before the grid is used).
int64_t checked_trial_count(const JobReader& reader, const JobConfig& job);
void parse_strategies(const JobReader& reader, JobConfig& job);
// [sweep] adaptive and adaptive_width; when given, replaces job.amounts by the search lattice.
void parse_adaptive(const JobReader& reader, JobConfig& job);
// Trial ids whose sites are recorded, each below `n_trials`.
std::vector<int64_t> parse_record_sites(const JobReader& reader, int64_t n_trials);

}  // namespace fracsweep::job_file
