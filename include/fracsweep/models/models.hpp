#pragma once
// Opening the models of a job, whatever their format: cheap up-front checks, and the bundle a
// rank keeps while it runs one model's trials (parameters, evaluator with its cached baseline).
// The one place that knows which loader and which evaluator go with a model format.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/probes.hpp"
#include "fracsweep/model/model.hpp"

namespace fracsweep {

// Evaluation data read once per rank and shared by every model of the job.
struct EvalSources {
  std::vector<std::string> paragraphs;  // language models: the first N paragraphs of [eval] text
  std::optional<ProbeSet> probes;       // [eval] probes, when given
};

EvalSources read_eval_sources(const JobConfig& job);

// One model, opened on one rank. `model` is perturbed in place by trials; `evaluator` holds the
// unperturbed outputs.
struct OpenModel {
  Model model;
  std::unique_ptr<Evaluator> evaluator;
  std::string baseline_text;  // decoded greedy continuation (language models), else empty
  // Other models of the job whose values `delta from=NAME` strategies move in, by name (a
  // strategy naming this model itself reads `model`).
  std::map<std::string, std::unique_ptr<const Model>> donors;
};

// Cheap checks of model `m` before any work: header/size validation, tokenizer, that every
// strategy's scope matches at least one tensor, and eval settings the model cannot honour.
// Throws InputError naming the file and the field. Returns the model's tensor table.
std::vector<TensorInfo> check_model(const JobConfig& job, size_t m);

// check_model for every model of the job, in job order; then that every reference= and delta
// from= model has the same tensors (names, shapes; for delta also stored formats).
void check_job_inputs(const JobConfig& job);

// The model file or directory at `path`, in the format its name implies (as in job files): a
// directory is a Hugging Face model directory, *.gguf GGUF, *.json a sequential classifier
// (whose layer shapes are checked), anything else a llama2.c checkpoint.
Model load_model_file(const std::string& path);

// The weights of model `m` alone (no evaluator), e.g. a reference or delta donor, with values
// from `weights` (sequential classifiers always use private memory).
Model load_model_weights(const JobConfig& job, size_t m,
                         const WeightsSource& weights = private_weights());

// How open_model loads: where values come from, and who hears of each phase's end.
struct LoadOptions {
  const WeightsSource* weights = &private_weights();
  // Called after each phase: "weights" (read and converted, or mapped from the node file) and
  // "baseline" (the unperturbed outputs and greedy continuation); empty: silent.
  std::function<void(const char* phase, double seconds)> phase_done;
};

// Loads model `m`, builds its evaluator and computes its baseline; with reference=NAME also the
// reference's outputs, and the donors of the job's delta strategies.
std::unique_ptr<OpenModel> open_model(const JobConfig& job, size_t m, const EvalSources& sources,
                                      const LoadOptions& options = {});

}  // namespace fracsweep
