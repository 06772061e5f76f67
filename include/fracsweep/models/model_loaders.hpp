#pragma once
// Entry points of the per-format loaders, dispatched by models.cpp on ModelSpec::format. Each
// pair is implemented in its own source: check_* validates cheaply before any work (headers,
// sizes, vocabulary, scopes, evaluation inputs the model needs); open_* loads the model, builds
// its evaluator and computes the baseline. Both throw InputError naming the file and field.
// check_* returns the model's tensor table (names, shapes, stored formats; offsets unset).
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>

#include "fracsweep/config/job.hpp"
#include "fracsweep/models/models.hpp"

namespace fracsweep {

// llama2.c checkpoint + tokenizer.bin (models.cpp).
std::vector<TensorInfo> check_llama2c_model(const JobConfig& job, const ModelSpec& spec);
std::unique_ptr<OpenModel> open_llama2c_model(const JobConfig& job, const ModelSpec& spec,
                                              const EvalSources& sources,
                                              const LoadOptions& options);

// GGUF v2/v3, Llama architecture (gguf_model.cpp).
std::vector<TensorInfo> check_gguf_model(const JobConfig& job, const ModelSpec& spec);
std::unique_ptr<OpenModel> open_gguf_model(const JobConfig& job, const ModelSpec& spec,
                                           const EvalSources& sources, const LoadOptions& options);

// Hugging Face directory: config.json + safetensors, LlamaForCausalLM / GPT2LMHeadModel
// (hf_model.cpp).
std::vector<TensorInfo> check_hf_model(const JobConfig& job, const ModelSpec& spec);
std::unique_ptr<OpenModel> open_hf_model(const JobConfig& job, const ModelSpec& spec,
                                         const EvalSources& sources, const LoadOptions& options);

// Sequential classifier: JSON description + safetensors (sequential_model.cpp).
std::vector<TensorInfo> check_sequential_model(const JobConfig& job, const ModelSpec& spec);
std::unique_ptr<OpenModel> open_sequential_model(const JobConfig& job, const ModelSpec& spec,
                                                 const EvalSources& sources,
                                                 const LoadOptions& options);

// Every strategy's scope matches at least one of `tensors`, every count fits the scope and every
// fraction selects at least one site (shared by all loaders).
void check_scopes(const JobConfig& job, const ModelSpec& spec,
                  const std::vector<TensorInfo>& tensors);

// Reports the end of each loading phase to LoadOptions::phase_done with its duration.
class PhaseTimer {
 public:
  explicit PhaseTimer(const LoadOptions& options)
      : options_(options), start_(std::chrono::steady_clock::now()) {}
  void done(const char* phase) {
    const auto now = std::chrono::steady_clock::now();
    if (options_.phase_done)
      options_.phase_done(phase, std::chrono::duration<double>(now - start_).count());
    start_ = now;
  }
  // A callback that ends `phase` (a string literal), for work that reports from inside.
  std::function<void()> at_end_of(const char* phase) {
    return [this, phase] { done(phase); };
  }

 private:
  const LoadOptions& options_;
  std::chrono::steady_clock::time_point start_;
};

// A hyperparameter read as float32 (norm epsilon, RoPE base): > 0 and finite after the cast.
inline bool positive_finite(float value) {
  return std::isfinite(value) && value > 0;
}

}  // namespace fracsweep
