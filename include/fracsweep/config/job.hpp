#pragma once
// Job files (INI, parsed by Boost.Program_options) into a plain struct: parse, validate, echo.
// Relative paths inside a job file are resolved against the job file's directory.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/grid/adaptive.hpp"
#include "fracsweep/grid/grid.hpp"

namespace fracsweep {

// Model file formats. `format=` in a model line, or detected: a directory is a Hugging Face
// model directory (config.json + safetensors), *.gguf is GGUF, *.json a sequential classifier
// description, anything else a llama2.c checkpoint.
enum class ModelFormat { llama2c, gguf, huggingface, sequential };
const char* model_format_name(ModelFormat format);  // "llama2c", "gguf", "hf", "sequential"

struct ModelSpec {
  std::string name;            // label in results, unique within the job
  std::string path;            // model file or directory (absolute after parsing)
  std::string tokenizer_path;  // llama2.c tokenizer.bin (absolute; llama2c models; empty: none)
  ModelFormat format = ModelFormat::llama2c;
  // `reference=NAME`: another model of the job whose unperturbed outputs this model's trials are
  // also compared with (e.g. a fine-tune against its base); empty: none.
  std::string reference = "";
};

// One entry of the amount axis: a fraction of in-scope parameters (k = round(f * N)) or an
// absolute count of sites.
struct Amount {
  bool is_count = false;
  double fraction = 0.0;                 // when !is_count, in (0, 1]
  int64_t count = 0;                     // when is_count, >= 1
  int64_t sites(int64_t n_scope) const;  // k for a scope of n_scope parameters (capped at N)
  std::string label() const;             // "0.001" or "count=8"
};

// "Behaviour changed" for an adaptive search: a trial column below or above a value. A
// non-finite value (destroyed outputs) counts as changed.
struct AdaptiveCriterion {
  std::string metric;  // a numeric /trials column, e.g. "top1_agreement" (checked by the run)
  bool below = true;   // METRIC<VALUE (true) or METRIC>VALUE
  double value = 0.0;
  bool holds(double metric_value) const;
  std::string text() const;  // "top1_agreement<0.5"
};

// [sweep] adaptive = CRITERION ... and adaptive_width = W: one search for f* per (model,
// strategy, seed, criterion) on `lattice` (grid/adaptive.hpp), which replaces the amount axis.
struct AdaptiveSearch {
  std::vector<AdaptiveCriterion> criteria;
  double width = 0.1;  // relative width of the final bracket: above / below <= 1 + width
  FractionLattice lattice;
};

struct JobConfig {
  std::string path;  // the job file as given
  std::string text;  // its full text (provenance)
  std::string name;
  uint64_t seed = 0;  // job seed: part of every RNG key

  std::vector<ModelSpec> models;
  // Index of the model called `name`, or -1.
  int32_t model_index(const std::string& name) const;

  // Evaluation inputs (absolute paths; empty when not given). Language models read `eval_text`
  // (with a tokenizer) or `eval_tokens` (pre-tokenized); classifiers read `eval_inputs` and
  // `eval_labels`. Which a model needs is checked by its loader (models.cpp).
  std::string eval_text;  // text file of paragraphs
  int64_t eval_paragraphs = 50;
  std::string eval_tokens;         // pre-tokenized sequences (.npy, see README)
  std::string eval_inputs;         // classifier inputs (.npy, or IDX, gzip or plain)
  std::string eval_labels;         // classifier labels (.npy, or IDX)
  int64_t eval_examples = 0;       // first N examples of tokens/inputs (0: all)
  double input_divisor = 1.0;      // inputs are divided by this (255 for bytes) ...
  std::vector<double> input_mean;  // ... then per channel (x - mean) / std (empty: none)
  std::vector<double> input_std;

  int64_t greedy_tokens = 256;  // greedy continuation length (0 disables)
  std::string greedy_prompt;    // empty: from BOS alone
  std::string eval_probes;      // behaviour probes (.tsv, formats/probes.hpp); empty: none

  std::vector<Amount> amounts;  // fraction axis (fractions, log-spaced fractions, counts; for an
                                // adaptive job the lattice between its smallest and largest)
  std::optional<AdaptiveSearch> adaptive;  // [sweep] adaptive; nullopt: the full grid
  std::vector<StrategySpec> strategies;
  std::vector<std::string> strategy_texts;  // as written in the job file
  std::vector<int64_t> seeds;

  std::vector<int64_t> record_sites;  // trial ids whose sites are stored in the results
};

// Parses and validates; throws InputError naming the file, the key and what was expected.
JobConfig parse_job_file(const std::string& path);
// Same, from text (path used for messages and to resolve relative paths).
JobConfig parse_job_text(const std::string& text, const std::string& path);
// Every file or directory the job reads: the job file, model paths and tokenizers, evaluation
// files (what a run must never overwrite).
std::vector<std::string> job_input_paths(const JobConfig& job);
// Human-readable summary of the parsed job (for `plan` and logs).
std::string echo_job(const JobConfig& job);

// The job's trial grid (model x strategy x amount x seed; see grid.hpp).
Grid job_grid(const JobConfig& job);

// Log-spaced fractions from `from` to `to` inclusive with `per_decade` points per decade;
// the end points are exact.
std::vector<double> log_spaced(double from, double to, int64_t per_decade);

}  // namespace fracsweep
