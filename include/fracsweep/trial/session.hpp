#pragma once
// One trial, start to end: trial spec -> sites -> perturb in place -> forward pass + metrics
// against the cached baseline -> bitwise restore -> one row.
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// Everything one rank needs to run the trials of one model: the opened model (perturbed in
// place), its perturbation engine, and the undo log reused by every trial.
class ModelSession {
 public:
  ModelSession(const JobConfig& job, int32_t model_idx, const EvalSources& sources);
  TrialResult run_trial(const JobConfig& job, const TrialSpec& spec, bool record_sites, int rank);
  ModelSummary summary() const;
  double forward_flops() const { return open_->evaluator->forward_flops(); }

 private:
  std::string name_;
  std::unique_ptr<OpenModel> open_;
  std::unique_ptr<Perturber> perturber_;
  std::vector<Touched> undo_;  // (k) reused by every trial
};

}  // namespace fracsweep
