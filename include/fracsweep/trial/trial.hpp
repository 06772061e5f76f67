#pragma once
// One result row per trial. Trivially copyable: ranks ship rows to the writer as raw bytes.
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/eval/metrics.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/perturb/perturb.hpp"

namespace fracsweep {

// Stored as an int32 with CF flag_values / flag_meanings attributes.
enum TrialStatus : int32_t {
  status_ok = 0,
  status_nonfinite = 1,  // completed; some outputs were NaN/Inf (metrics say which)
};
constexpr const char* trial_status_meanings = "ok nonfinite_outputs";

struct TrialRow {
  int64_t trial = 0;
  int32_t model_idx = 0;
  int32_t strategy_idx = 0;
  int32_t amount_idx = 0;  // index on the fraction axis
  int32_t seed_idx = 0;
  double fraction = 0.0;  // requested fraction; k / n_scope for count entries
  int64_t seed = 0;
  int64_t k = 0;          // sites perturbed
  int64_t k_changed = 0;  // sites whose stored bits the perturbation changed (<= k)
  int64_t n_scope = 0;    // in-scope parameters
  TrialMetrics metrics;
  double wall_s = 0.0;  // seconds for perturb + forward + metrics + restore
  int32_t rank = 0;     // MPI rank that ran it
  int32_t status = status_ok;
};
static_assert(std::is_trivially_copyable_v<TrialRow>);

// One flip of a bfa path and the model's state after it (the /paths group of the results).
struct PathStep {
  int64_t offset = 0;      // Model::values index of the flipped parameter
  int32_t bit = 0;         // bit of its stored pattern (f32 0..31, f16/bf16 0..15)
  float old_value = 0.0f;  // working value before the flip
  float new_value = 0.0f;  // after (the exact widening of the flipped pattern)
  double objective = 0.0;  // the strategy's objective after this flip
  double mean_nll = 0.0;   // metrics after this flip, as in the trial rows
  double top1_agreement = 0.0;
  double accuracy = 0.0;
};

static_assert(std::is_trivially_copyable_v<PathStep>);

// What one trial produced: its row and, when asked for, every site it touched; a bfa trial
// also its path.
struct TrialResult {
  TrialRow row;
  std::vector<SiteRecord> sites;  // empty unless the trial's sites are recorded
  std::vector<PathStep> path;     // (k) the flips of a bfa trial, in order; empty otherwise
};

// What a run keeps of one model once its trials are done: identity, tensors and baseline.
struct ModelSummary {
  std::string name;
  std::string path;
  std::string format;
  int64_t n_parameters = 0;
  std::vector<TensorInfo> tensors;
  Baseline baseline;
  std::string greedy_text;  // decoded baseline continuation
};

}  // namespace fracsweep
