#pragma once
// One trial, start to end: trial spec -> amount k of the scope -> sites (keyed RNG) -> perturb in
// place -> batched forward + metrics against the cached baseline -> restore bitwise -> one row.
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/trial/attacks.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// Everything one rank needs to run the trials of one model: the opened model (perturbed in
// place), its perturbation engine, and the undo log reused by every trial.
class ModelSession {
 public:
  ModelSession(const JobConfig& job, int32_t model_idx, const EvalSources& sources,
               const LoadOptions& load = {});
  // Runs trial `spec` of `job` on this model. The model's values afterwards equal those before,
  // bitwise, also when the trial throws; values mapped from a node file (node_weights.hpp) then
  // hold no private copy of a touched page. `rank` only goes into the row.
  TrialResult run_trial(const JobConfig& job, const TrialSpec& spec, bool record_sites, int rank);
  ModelSummary summary() const;
  double forward_flops() const { return open_->evaluator->forward_flops(); }
  const Model& model() const { return open_->model; }  // unperturbed between trials

 private:
  // Perturbs `k` sites of the model in place by `strategy` (its old values into undo_, a bfa
  // path and recorded sites into `result`); returns how many sites changed bits.
  int64_t perturb(const StrategySpec& strategy, int64_t k, int64_t seed, TrialResult& result,
                  bool record_sites);
  // After the bitwise restore: drops this rank's copies of the pages the trial wrote.
  void release_touched_pages();

  std::string name_;
  std::unique_ptr<OpenModel> open_;
  std::unique_ptr<Perturber> perturber_;
  std::unique_ptr<AttackRunner> attacks_;  // bfa paths, finetune runs, saliency
  std::vector<Touched> undo_;              // (k) reused by every trial
};

}  // namespace fracsweep
