#include "fracsweep/trial/session.hpp"

#include <chrono>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// The axis values a trial spec points at.
struct TrialAxes {
  const StrategySpec& strategy;
  const Amount& amount;
  int64_t seed;
};

TrialAxes axes_of(const JobConfig& job, const TrialSpec& spec) {
  return {job.strategies[static_cast<size_t>(spec.strategy_idx)],
          job.amounts[static_cast<size_t>(spec.amount_idx)],
          job.seeds[static_cast<size_t>(spec.seed_idx)]};
}

// The identity columns of a trial's row; metrics, status and wall time are the caller's.
TrialRow row_identity(const TrialSpec& spec, const TrialAxes& axes, int64_t k, int64_t n_scope,
                      int rank) {
  TrialRow row;
  row.trial = spec.id;
  row.model_idx = spec.model_idx;
  row.strategy_idx = spec.strategy_idx;
  row.amount_idx = spec.amount_idx;
  row.seed_idx = spec.seed_idx;
  row.fraction = axes.amount.is_count ? static_cast<double>(k) / static_cast<double>(n_scope)
                                      : axes.amount.fraction;
  row.seed = axes.seed;
  row.k = k;
  row.n_scope = n_scope;
  row.rank = rank;
  return row;
}

// Only a bfa path can write one parameter twice (it may flip several of its bits).
UndoOffsets undo_offsets(const StrategySpec& strategy) {
  return strategy.kind == StrategyKind::bfa ? UndoOffsets::may_repeat : UndoOffsets::distinct;
}

}  // namespace

ModelSession::ModelSession(const JobConfig& job, int32_t model_idx, const EvalSources& sources,
                           const LoadOptions& load)
    : name_(job.models[static_cast<size_t>(model_idx)].name),
      open_(open_model(job, static_cast<size_t>(model_idx), sources, load)),
      perturber_(std::make_unique<Perturber>(open_->model, job.seed, name_)) {
  perturber_->add_donor(name_, open_->model);  // delta from= this model itself: moves nothing
  for (const auto& [donor_name, donor] : open_->donors) perturber_->add_donor(donor_name, *donor);
  attacks_ = std::make_unique<AttackRunner>(open_->model, *open_->evaluator, *perturber_);
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    attacks_->check(job.strategies[s],
                    in_file(job.path, "[sweep] strategy '" + job.strategy_texts[s] +
                                          "' on model '" + name_ + "'"));
  }
}

TrialResult ModelSession::run_trial(const JobConfig& job, const TrialSpec& spec, bool record_sites,
                                    int rank) {
  const auto start = std::chrono::steady_clock::now();
  const TrialAxes axes = axes_of(job, spec);
  const int64_t n_scope = perturber_->scope_size(axes.strategy.scope);
  const int64_t k = axes.amount.sites(n_scope);

  TrialResult result;
  TrialMetrics metrics;
  int64_t k_changed = 0;
  {
    undo_.clear();
    RestoreOnExit restore_bitwise(open_->model, undo_, undo_offsets(axes.strategy));
    // Sites (keyed RNG, a ranking, or a search), perturbed in place; old values go to undo_.
    k_changed = perturb(axes.strategy, k, axes.seed, result, record_sites);
    // One batched forward pass, compared with the cached unperturbed outputs.
    metrics = open_->evaluator->evaluate(open_->model);
  }
  release_touched_pages();
  result.row = row_identity(spec, axes, k, n_scope, rank);
  result.row.k_changed = k_changed;
  result.row.metrics = metrics;
  result.row.status = metrics.nonfinite_positions > 0 ? status_nonfinite : status_ok;
  result.row.wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

int64_t ModelSession::perturb(const StrategySpec& strategy, int64_t k, int64_t seed,
                              TrialResult& result, bool record_sites) {
  attacks_->prepare_ranking(strategy);
  int64_t changed = 0;
  if (strategy.kind == StrategyKind::bfa) {
    result.path = attacks_->bfa_path(strategy, k);
    changed = apply_path(open_->model, result.path, undo_);
  } else if (strategy.kind == StrategyKind::finetune) {
    changed = attacks_->finetune(strategy, k, seed, undo_);
  } else {
    return perturber_->apply(open_->model, strategy, k, seed, undo_,
                             record_sites ? &result.sites : nullptr);
  }
  if (record_sites) {  // the searched or trained sites, in the order they were written
    for (const Touched& site : undo_) {
      result.sites.push_back(
          {site.offset, site.old_value, open_->model.values[static_cast<size_t>(site.offset)]});
    }
  }
  return changed;
}

void ModelSession::release_touched_pages() {
  open_->model.values.release_pages(undo_, [](const Touched& site) { return site.offset; });
}

ModelSummary ModelSession::summary() const {
  const Model& model = open_->model;
  ModelSummary s;
  s.name = name_;
  s.path = model.path;
  s.format = model.format;
  s.n_parameters = model.n_parameters();
  s.tensors = model.tensors;
  s.baseline = open_->evaluator->baseline();
  s.greedy_text = open_->baseline_text;
  return s;
}

}  // namespace fracsweep
