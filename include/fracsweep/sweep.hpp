#pragma once
// A whole sweep as named phases: check inputs -> per-model sessions (load, baseline) ->
// distributed trials -> results file. Called by `fracsweep run` on every rank.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/evaluator.hpp"
#include "fracsweep/gemm.hpp"
#include "fracsweep/grid.hpp"
#include "fracsweep/job.hpp"
#include "fracsweep/model.hpp"
#include "fracsweep/perturb.hpp"
#include "fracsweep/results.hpp"
#include "fracsweep/sched.hpp"
#include "fracsweep/tokenizer.hpp"

namespace fracsweep {

struct RunOptions {
  std::string out;             // results file
  bool force = false;          // overwrite an existing results file
  ScheduleOptions schedule;
  double progress_interval_s = 2.0;
  GemmSetup gemm;
  std::string command_line;    // for provenance
};

// Everything one rank needs to run the trials of one model: the model (perturbed in place),
// its perturbation engine and its evaluator with the cached unperturbed outputs.
class ModelSession {
 public:
  ModelSession(const JobConfig& job, int32_t model_idx, const std::vector<std::string>& paragraphs);
  TrialResult run_trial(const JobConfig& job, const TrialSpec& spec, bool record_sites, int rank);
  ModelSummary summary() const;
  const Model& model() const { return model_; }
  double forward_flops() const;  // FLOPs of one forward pass over the evaluation batch

 private:
  std::string name_;
  Model model_;
  Tokenizer tokenizer_;
  std::unique_ptr<LlamaEvaluator> evaluator_;
  std::unique_ptr<Perturber> perturber_;
  std::vector<Touched> undo_;  // (k) reused by every trial
};

// Evaluation inputs of `job` for a model with this tokenizer and seq_len.
EvalInputs make_eval_inputs(const JobConfig& job, const Tokenizer& tokenizer,
                            const std::vector<std::string>& paragraphs, int64_t seq_len);

// Cheap checks of every model, tokenizer and scope before any work (headers, sizes,
// vocabulary sizes, scopes that match no tensor). Throws InputError.
void check_job_inputs(const JobConfig& job);

// Runs the sweep on every rank of `comm`; rank 0 writes the results file. Returns the exit code.
int run_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options);

}  // namespace fracsweep
