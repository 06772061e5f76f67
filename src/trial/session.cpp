#include "fracsweep/trial/session.hpp"

#include <chrono>

namespace fracsweep {

namespace {

// Undoes a trial's perturbation however the trial ends.
class RestoreOnExit {
 public:
  RestoreOnExit(Model& model, const std::vector<Touched>& undo) : model_(model), undo_(undo) {}
  ~RestoreOnExit() { Perturber::restore(model_, undo_); }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  Model& model_;
  const std::vector<Touched>& undo_;
};

}  // namespace

ModelSession::ModelSession(const JobConfig& job, int32_t model_idx, const EvalSources& sources)
    : name_(job.models[static_cast<size_t>(model_idx)].name),
      open_(open_model(job, static_cast<size_t>(model_idx), sources)),
      perturber_(std::make_unique<Perturber>(open_->model, job.seed, name_)) {
  perturber_->add_donor(name_, open_->model);  // delta from= this model itself: moves nothing
  for (const auto& [donor_name, donor] : open_->donors) perturber_->add_donor(donor_name, *donor);
}

TrialResult ModelSession::run_trial(const JobConfig& job, const TrialSpec& spec, bool record_sites,
                                    int rank) {
  const auto start = std::chrono::steady_clock::now();
  const StrategySpec& strategy = job.strategies[static_cast<size_t>(spec.strategy_idx)];
  const Amount& amount = job.amounts[static_cast<size_t>(spec.amount_idx)];
  const int64_t seed = job.seeds[static_cast<size_t>(spec.seed_idx)];
  const int64_t n_scope = perturber_->scope_size(strategy.scope);
  const int64_t k = amount.sites(n_scope);

  TrialResult result;
  TrialRow& row = result.row;
  {
    RestoreOnExit restore(open_->model, undo_);
    row.k_changed =
        perturber_->apply(open_->model, strategy, k, seed, undo_, record_sites ? &result.sites : nullptr);
    row.metrics = open_->evaluator->evaluate(open_->model);
  }
  row.trial = spec.id;
  row.model_idx = spec.model_idx;
  row.strategy_idx = spec.strategy_idx;
  row.amount_idx = spec.amount_idx;
  row.seed_idx = spec.seed_idx;
  row.fraction = amount.is_count ? static_cast<double>(k) / static_cast<double>(n_scope)
                                 : amount.fraction;
  row.seed = seed;
  row.k = k;
  row.n_scope = n_scope;
  row.rank = rank;
  row.status = row.metrics.nonfinite_positions > 0 ? status_nonfinite : status_ok;
  row.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
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
