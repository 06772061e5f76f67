#pragma once
// What `fracsweep plan` measures of one model, and how it extrapolates to the whole job from a
// bounded sample: the model is loaded once (load and baseline timed as they happen, the greedy
// continuation cut to a few tokens), at most three trials are timed, and a handful of decode
// steps and two teacher-forced passes stand in for the rest of the continuation.
//
// The models behind the numbers:
//   trial(k)      = fixed + per_site * k: every trial runs the same forward pass; choosing and
//                   writing (and restoring) its k sites grows with k. Fitted through the trials
//                   of the grid's smallest and largest k.
//   decode step   = linear in its position p: the KV-cached attention reads p earlier rows, the
//                   rest of the step is the same at every position. Measured at both ends (the
//                   mean of a few steps, repeated when they are shorter than plan_min_timing_s).
//   continuation  = the tokens the plan decoded (measured with the baseline) + the remaining
//                   steps (sum of the line) + the longer teacher-forced passes: the baseline's
//                   verification pass and its batch (each longer by the remaining tokens), and
//                   every trial's batch likewise.
// A continuation is assumed to run all greedy_tokens; it ends earlier when the model predicts
// its stop token (then the run costs less).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"

namespace fracsweep {

// Greedy tokens the plan's baseline decodes (of the job's greedy_tokens), and decode steps it
// times at each end of the continuation.
inline constexpr int64_t plan_decoded_tokens = 4;
inline constexpr int64_t plan_timed_steps = 4;
// Decode steps and teacher-forced passes shorter than this are repeated until they took it:
// a mean over a few scheduler time slices, as delayed by other work as the run will be.
inline constexpr double plan_min_timing_s = 0.05;

// A trial's seconds as a line in its number of sites k.
struct LinearTrialCost {
  double fixed_s = 0;     // forward pass, metrics, anything that does not grow with k
  double per_site_s = 0;  // choosing, writing and restoring one site (>= 0)
  double at(int64_t k) const { return fixed_s + per_site_s * static_cast<double>(k); }
};

// The line through (k_small, seconds_small) and (k_large, seconds_large). A slope below 0
// (timing noise) or k_small == k_large gives a constant at the two seconds' mean.
LinearTrialCost fit_trial_cost(int64_t k_small, double seconds_small, int64_t k_large,
                               double seconds_large);

// A KV-cached decode step's seconds as a line in its position, through two measured points.
struct DecodeStepCost {
  double first_position = 0, first_s = 0;  // mean position and seconds of the early steps
  double last_position = 0, last_s = 0;    // ... of the late steps
  double at(double position) const;
  // Seconds of the steps at positions [from, to): the line's sum (its value at their mean
  // position, times their number); 0 when to <= from.
  double steps_s(int64_t from, int64_t to) const;
};

// The continuation beyond what the plan's baseline decoded, for one language model.
struct ContinuationEstimate {
  int64_t greedy_tokens = 0;     // the job's
  int64_t decoded_tokens = 0;    // decoded by the plan's baseline (measured in baseline_s)
  bool ended_early = false;      // the decoded continuation ended at its stop token: it is complete
  int64_t prompt_tokens = 0;     // positions before the first step (an upper bound when a prompt
                                 // text is given: its bytes + 2)
  DecodeStepCost step;           // timed_steps steps measured from position prompt_tokens, and
  int64_t timed_steps = 0;       // as many ending at the continuation's last fed position
  double longer_pass_s = 0;      // one teacher-forced pass over the whole continuation minus one
                                 // over the decoded part (measured, >= 0)
  double extra_steps_s = 0;      // the decode steps beyond the decoded tokens (by `step`)
  double longer_pass_flops = 0;  // FLOPs the longer pass adds to a batch
  uint64_t buffer_bytes = 0;     // memory the whole continuation's rows took (measured): what
                                 // the run's evaluator holds beyond the plan's
  // What the run's baseline adds to the measured one: the extra steps, a longer verification
  // pass and a longer batch.
  double extra_baseline_s() const { return extra_steps_s + 2 * longer_pass_s; }
};

// A trial the plan timed.
struct SampledTrial {
  int64_t id = 0;
  int64_t k = 0;
  double seconds = 0;  // its wall_s
};

// A one-time preparation (ranking, gradient, input norms) a strategy's first trial on a rank
// pays, measured as that trial's seconds minus the fitted line at its k.
struct MeasuredPreparation {
  std::string strategy;           // as written in the job file
  std::vector<std::string> also;  // other strategies sharing it (same ranking)
  double seconds = 0;
};

// The per-trial seconds the fit gives over a model's trials (the longer batch included,
// preparations not).
struct TrialSpread {
  double min_s = 0, mean_s = 0, max_s = 0;
  double total_s = 0;  // over the trials counted (the grid, or an adaptive job's bound)
  int64_t trials = 0;
};

struct ModelEstimate {
  double load_s = 0;                                 // measured: opening minus the baseline phase
  double measured_baseline_s = 0;                    // measured: baseline with the decoded tokens
  std::optional<ContinuationEstimate> continuation;  // language models with greedy_tokens > 0
  double baseline_s() const {
    return measured_baseline_s + (continuation ? continuation->extra_baseline_s() : 0.0);
  }
  std::vector<SampledTrial> sampled;  // in the order they ran
  LinearTrialCost trial;              // over the plan's batch; trial_s adds the longer pass
  double longer_trial_pass_s = 0;     // what each of the run's trials adds (the longer batch)
  double trial_s(int64_t k) const { return trial.at(k) + longer_trial_pass_s; }
  std::optional<MeasuredPreparation> preparation;
  // Strategies whose one-time preparation or per-trial search/training is not in the estimate,
  // each with the reason; their trials are counted at the fitted line.
  std::vector<std::string> not_estimated;
  TrialSpread spread;
  double preparation_s() const { return preparation ? preparation->seconds : 0.0; }
  double trial_seconds() const { return spread.total_s + preparation_s(); }  // on one rank
  double forward_flops = 0;  // one forward pass over the run's batch (the continuation's too)
  uint64_t working = 0;      // bytes the session held, plus the continuation's buffer_bytes
};

// Opens model `m` of `job` with its continuation cut to plan_decoded_tokens, times its load
// and baseline, at most three trials and the continuation's decode steps, and
// extrapolates to the job's grid (or, with `trial_bound` >= 0, that many trials at the grid's
// mean cost: an adaptive job's bound).
ModelEstimate estimate_model(const JobConfig& job, const Grid& grid, int32_t m,
                             const EvalSources& sources, int64_t trial_bound);

}  // namespace fracsweep
