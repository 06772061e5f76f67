#include "fracsweep/app/plan_estimate.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <string_view>

#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/par/node_memory.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/trial/session.hpp"

namespace fracsweep {

LinearTrialCost fit_trial_cost(int64_t k_small, double seconds_small, int64_t k_large,
                               double seconds_large) {
  const double mean = (seconds_small + seconds_large) / 2;
  if (k_large == k_small || seconds_large < seconds_small) return {mean, 0.0};
  const double per_site = (seconds_large - seconds_small) / static_cast<double>(k_large - k_small);
  return {seconds_small - per_site * static_cast<double>(k_small), per_site};
}

double DecodeStepCost::at(double position) const {
  if (last_position == first_position) return (first_s + last_s) / 2;
  const double slope = (last_s - first_s) / (last_position - first_position);
  return first_s + slope * (position - first_position);
}

double DecodeStepCost::steps_s(int64_t from, int64_t to) const {
  if (to <= from) return 0.0;
  const double mean_position = static_cast<double>(from + to - 1) / 2;
  return static_cast<double>(to - from) * std::max(0.0, at(mean_position));
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The mean seconds of `work`, run at least once and until the runs took plan_min_timing_s.
template <class Work>
double mean_seconds(const Work& work) {
  const auto start = Clock::now();
  int64_t runs = 0;
  do {
    work();
    ++runs;
  } while (seconds_since(start) < plan_min_timing_s);
  return seconds_since(start) / static_cast<double>(runs);
}

// How a strategy's trials cost: the plain line; the line after a one-time preparation (a
// ranking, and for taylor / wanda a gradient pass first); or a search / training per trial (or
// per path) that the line does not cover.
enum class CostKind { plain, prepared, searched };

CostKind cost_kind(const StrategySpec& strategy) {
  if (strategy.kind == StrategyKind::bfa || strategy.kind == StrategyKind::finetune)
    return CostKind::searched;
  if (strategy.targeted() ||
      (strategy.kind == StrategyKind::delta && strategy.order == DeltaOrder::largest))
    return CostKind::prepared;
  return CostKind::plain;
}

// Strategies with equal keys share one preparation (Perturber's rankings: "magnitude" and
// "wanda" per scope whatever then= does, "delta:MODEL" per scope; a taylor ranking depends on
// then= and the bits too).
std::string preparation_key(const StrategySpec& strategy) {
  if (strategy.kind == StrategyKind::taylor) return strategy.canonical();
  std::string key = strategy.name() + "|" + strategy.scope.canonical();
  if (strategy.kind == StrategyKind::delta) key += "|" + strategy.from_model;
  return key;
}

// Gradient passes first: the preparation worth measuring when only one can be.
bool prepares_with_gradient(const StrategySpec& strategy) {
  return strategy.kind == StrategyKind::taylor || strategy.kind == StrategyKind::wanda;
}

std::string not_estimated_reason(const StrategySpec& strategy) {
  if (strategy.kind == StrategyKind::bfa) {
    return "its bit search (per flip a gradient and candidates x in-scope tensors forward passes, "
           "once per rank up to the largest budget)";
  }
  if (strategy.kind == StrategyKind::finetune) {
    return "its Adam steps (a gradient pass each, every trial)" +
           std::string(strategy.sites == FinetuneSites::taylor ? " and its gradient ranking" : "");
  }
  return prepares_with_gradient(strategy) ? "its one-time gradient pass and ranking"
                                          : "its one-time ranking";
}

// One trial of the model: its id, strategy and k.
struct GridTrial {
  int64_t id = 0;
  int32_t strategy = 0;
  int64_t k = 0;
};

// The model's trials in id order, with their k (Amount::sites of the strategy's scope).
std::vector<GridTrial> model_trials(const JobConfig& job, const Grid& grid, int32_t m,
                                    const Model& model) {
  std::vector<int64_t> n_scope;  // (n_strategies) in-scope parameters
  for (const StrategySpec& strategy : job.strategies) {
    int64_t count = 0;
    for (const TensorInfo& t : model.tensors) count += in_scope(strategy.scope, t) ? t.count : 0;
    n_scope.push_back(count);
  }
  std::vector<GridTrial> trials;
  for (int64_t id = grid.model_begin(m); id < grid.model_end(m); ++id) {
    const TrialSpec spec = grid.trial(id);
    const auto s = static_cast<size_t>(spec.strategy_idx);
    trials.push_back({id, spec.strategy_idx,
                      job.amounts[static_cast<size_t>(spec.amount_idx)].sites(n_scope[s])});
  }
  return trials;
}

// The trial with k `k` to time for the line: the first of a plain strategy, else the first.
const GridTrial& trial_with_k(const std::vector<GridTrial>& trials, int64_t k,
                              const JobConfig& job) {
  const GridTrial* first = nullptr;
  for (const GridTrial& trial : trials) {
    if (trial.k != k) continue;
    if (cost_kind(job.strategies[static_cast<size_t>(trial.strategy)]) == CostKind::plain)
      return trial;
    if (first == nullptr) first = &trial;
  }
  return *first;
}

// Times one trial of `plan_job` (the job with stand-ins appended): `trial` as it is when its
// strategy is plain, else with `stand_in[strategy]` (a plain strategy over the same scope, so
// the same k) in its place when `plain_only`.
SampledTrial time_trial(ModelSession& session, const JobConfig& plan_job, const Grid& grid,
                        const GridTrial& trial, const std::vector<int32_t>& stand_in,
                        bool plain_only) {
  TrialSpec spec = grid.trial(trial.id);
  if (plain_only) spec.strategy_idx = stand_in[static_cast<size_t>(trial.strategy)];
  return {trial.id, trial.k, session.run_trial(plan_job, spec, false, 0).row.wall_s};
}

// Positions before the continuation's first step: BOS alone, or at most a prompt's bytes plus
// BOS and a leading space (no tokenizer makes more tokens than that), within the model's
// seq_len.
int64_t prompt_positions(const JobConfig& job, const Model& model) {
  if (job.greedy_prompt.empty()) return 1;
  const int64_t bound = static_cast<int64_t>(job.greedy_prompt.size()) + 2;
  return std::max<int64_t>(1, std::min(bound, model.config.seq_len - job.greedy_tokens));
}

// The continuation beyond the `decoded` tokens the plan's baseline produced, on a forward pass
// of its own (buffers for the whole continuation): decode steps timed at both ends, and a
// teacher-forced pass over the whole continuation and over the decoded part. Token ids are
// all 0: what a step costs does not depend on them.
ContinuationEstimate estimate_continuation(const JobConfig& job, const Model& model,
                                           int64_t decoded) {
  const uint64_t anonymous_before = process_anonymous_bytes();
  ContinuationEstimate estimate;
  estimate.greedy_tokens = job.greedy_tokens;
  estimate.decoded_tokens = decoded;
  estimate.ended_early = decoded < std::min(job.greedy_tokens, plan_decoded_tokens);
  if (estimate.ended_early || decoded >= job.greedy_tokens) return estimate;  // complete

  const int64_t prompt = prompt_positions(job, model);
  const int64_t fed = prompt + job.greedy_tokens - 1;  // positions the run's decoding feeds
  estimate.prompt_tokens = prompt;
  const ForwardFactory make_forward =
      model.architecture == "gpt2" ? make_gpt2_forward : make_llama_forward;
  const std::unique_ptr<LanguageModelForward> forward =
      make_forward(model.config, fed + 1, fed + 1);
  std::vector<float> logits(floats((fed + 1) * model.config.vocab_size));  // (fed + 1, vocab)
  const std::vector<int32_t> tokens(floats(fed + 1), 0);                   // (fed + 1)
  const int64_t steps = std::min(plan_timed_steps, job.greedy_tokens - 1);
  estimate.timed_steps = steps;
  // The mean seconds of a decode step at positions [from, from + steps), repeated (each round
  // rewinds to `from`) until they took plan_min_timing_s, so that a machine's other work delays
  // them as often as the run's. A step attends to every earlier row of the KV cache, whatever
  // it holds: the late steps read rows no call wrote (zeros, as allocated), at the same cost.
  const auto time_steps = [&](int64_t from) {
    return mean_seconds([&] {
             for (int64_t p = from; p < from + steps; ++p) {
               forward->decode(model, tokens.data() + p, 1, p, logits.data());
             }
           }) /
           static_cast<double>(steps);
  };
  forward->decode(model, tokens.data(), prompt, 0, logits.data());  // the prompt, as the run
  estimate.step.first_position = static_cast<double>(prompt) + static_cast<double>(steps - 1) / 2;
  estimate.step.first_s = time_steps(prompt);
  estimate.step.last_position =
      static_cast<double>(fed - steps) + static_cast<double>(steps - 1) / 2;
  estimate.step.last_s = time_steps(fed - steps);
  estimate.extra_steps_s = estimate.step.steps_s(prompt + decoded - 1, fed);

  const auto time_pass = [&](int64_t length) {
    TokenBatch batch;
    batch.append(std::vector<int32_t>(tokens.begin(), tokens.begin() + length));
    return mean_seconds([&] { forward->run(model, batch, logits.data()); });
  };
  const double decoded_pass_s = time_pass(prompt + decoded - 1);
  estimate.longer_pass_s = std::max(0.0, time_pass(fed) - decoded_pass_s);
  const auto pass_flops = [&](int64_t length) {
    TokenBatch batch;
    batch.append(std::vector<int32_t>(tokens.begin(), tokens.begin() + length));
    return forward->flops(batch);
  };
  estimate.longer_pass_flops = pass_flops(fed) - pass_flops(prompt + decoded - 1);
  const uint64_t anonymous_after = process_anonymous_bytes();
  estimate.buffer_bytes =
      anonymous_after > anonymous_before ? anonymous_after - anonymous_before : 0;
  return estimate;
}

}  // namespace

ModelEstimate estimate_model(const JobConfig& job, const Grid& grid, int32_t m,
                             const EvalSources& sources, int64_t trial_bound) {
  ModelEstimate estimate;
  // The plan's job: the continuation cut short, and a plain stand-in (zero, same scope) for
  // every strategy whose trials are not plain, to time the line at that strategy's k.
  JobConfig plan_job = job;
  plan_job.greedy_tokens = std::min(job.greedy_tokens, plan_decoded_tokens);
  std::vector<int32_t> stand_in;  // (n_strategies) index of the plain strategy timed for it
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    if (cost_kind(job.strategies[s]) == CostKind::plain) {
      stand_in.push_back(static_cast<int32_t>(s));
      continue;
    }
    StrategySpec zero;
    zero.scope = job.strategies[s].scope;
    stand_in.push_back(static_cast<int32_t>(plan_job.strategies.size()));
    plan_job.strategies.push_back(zero);
    plan_job.strategy_texts.push_back("zero (timed for " + job.strategy_texts[s] + ")");
  }

  const uint64_t anonymous_before = process_anonymous_bytes();
  double baseline_phase_s = 0;
  LoadOptions load;
  load.phase_done = [&baseline_phase_s](const char* phase, double seconds) {
    if (std::string_view(phase) == "baseline" || std::string_view(phase) == "greedy continuation")
      baseline_phase_s += seconds;
  };
  const auto open_start = Clock::now();
  ModelSession session(plan_job, m, sources, load);
  const double open_s = seconds_since(open_start);
  estimate.load_s = std::max(0.0, open_s - baseline_phase_s);
  estimate.measured_baseline_s = baseline_phase_s;
  const Model& model = session.model();

  // The line through the smallest and the largest k, each timed on a plain strategy.
  const std::vector<GridTrial> trials = model_trials(job, grid, m, model);
  const auto [smallest, largest] =
      std::minmax_element(trials.begin(), trials.end(),
                          [](const GridTrial& a, const GridTrial& b) { return a.k < b.k; });
  const GridTrial& large = trial_with_k(trials, largest->k, job);
  estimate.sampled.push_back(time_trial(session, plan_job, grid, large, stand_in, true));
  if (smallest->k != largest->k) {
    const GridTrial& small = trial_with_k(trials, smallest->k, job);
    estimate.sampled.push_back(time_trial(session, plan_job, grid, small, stand_in, true));
    estimate.trial = fit_trial_cost(estimate.sampled[1].k, estimate.sampled[1].seconds,
                                    estimate.sampled[0].k, estimate.sampled[0].seconds);
  } else {
    estimate.trial = {estimate.sampled[0].seconds, 0.0};
  }

  // One preparation measured (a gradient one first), on its strategy's smallest-k trial.
  const StrategySpec* prepared = nullptr;
  for (const StrategySpec& strategy : job.strategies) {
    if (cost_kind(strategy) != CostKind::prepared) continue;
    if (prepared == nullptr ||
        (prepares_with_gradient(strategy) && !prepares_with_gradient(*prepared)))
      prepared = &strategy;
  }
  if (prepared != nullptr) {
    const auto p = static_cast<int32_t>(prepared - job.strategies.data());
    const GridTrial* first = nullptr;
    for (const GridTrial& trial : trials) {
      if (trial.strategy == p && (first == nullptr || trial.k < first->k)) first = &trial;
    }
    estimate.sampled.push_back(time_trial(session, plan_job, grid, *first, stand_in, false));
    MeasuredPreparation preparation;
    preparation.strategy = job.strategy_texts[static_cast<size_t>(p)];
    preparation.seconds =
        std::max(0.0, estimate.sampled.back().seconds - estimate.trial.at(first->k));
    estimate.preparation = preparation;
  }
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    const StrategySpec& strategy = job.strategies[s];
    const CostKind kind = cost_kind(strategy);
    if (kind == CostKind::plain || &strategy == prepared) continue;
    if (kind == CostKind::prepared && preparation_key(strategy) == preparation_key(*prepared)) {
      estimate.preparation->also.push_back(job.strategy_texts[s]);
      continue;
    }
    estimate.not_estimated.push_back(job.strategy_texts[s] + ": " + not_estimated_reason(strategy));
  }

  const uint64_t anonymous_after = process_anonymous_bytes();
  const uint64_t held = anonymous_after > anonymous_before ? anonymous_after - anonymous_before : 0;
  const uint64_t values = model.values.size() * sizeof(float);
  estimate.working = held > values ? held - values : 0;
  estimate.forward_flops = session.forward_flops();

  // The rest of the continuation, and what its rows add to every trial's batch.
  if (model.architecture != "sequential" && job.greedy_tokens > 0) {
    const auto decoded = static_cast<int64_t>(session.summary().baseline.greedy_ids.size());
    estimate.continuation = estimate_continuation(job, model, decoded);
    estimate.longer_trial_pass_s = estimate.continuation->longer_pass_s;
  }
  if (estimate.continuation) {
    estimate.working += estimate.continuation->buffer_bytes;
    estimate.forward_flops += estimate.continuation->longer_pass_flops;
  }

  // The line over the trials the run counts.
  TrialSpread& spread = estimate.spread;
  spread.min_s = std::numeric_limits<double>::infinity();
  double sum = 0;
  for (const GridTrial& trial : trials) {
    const double seconds = estimate.trial_s(trial.k);
    spread.min_s = std::min(spread.min_s, seconds);
    spread.max_s = std::max(spread.max_s, seconds);
    sum += seconds;
  }
  spread.mean_s = sum / static_cast<double>(trials.size());
  spread.trials = trial_bound >= 0 ? trial_bound : static_cast<int64_t>(trials.size());
  spread.total_s = trial_bound >= 0 ? spread.mean_s * static_cast<double>(trial_bound) : sum;
  return estimate;
}

}  // namespace fracsweep
