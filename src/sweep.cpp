#include "fracsweep/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>

#include "fracsweep/build_info.hpp"
#include "fracsweep/error.hpp"
#include "fracsweep/sha256.hpp"

namespace fracsweep {

namespace {

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buffer;
}

// Distinct host names of all ranks, sorted (collective).
std::vector<std::string> gather_hostnames(MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  std::vector<char> all(static_cast<size_t>(size) * MPI_MAX_PROCESSOR_NAME);  // (size, max name)
  MPI_Gather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
             0, comm);
  std::set<std::string> names;
  for (int r = 0; rank == 0 && r < size; ++r) {
    names.insert(std::string(all.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME));
  }
  return {names.begin(), names.end()};
}

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

// Index of the fraction entry of the amount axis nearest `target` in log space, or -1.
int32_t nearest_fraction(const std::vector<Amount>& amounts, double target) {
  int32_t best = -1;
  for (size_t i = 0; i < amounts.size(); ++i) {
    if (amounts[i].is_count) continue;
    const double distance = std::fabs(std::log(amounts[i].fraction / target));
    if (best < 0 || distance < std::fabs(std::log(amounts[static_cast<size_t>(best)].fraction / target))) {
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

double median(std::vector<double> values) {
  if (values.empty()) return not_a_number;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return (values[(n - 1) / 2] + values[n / 2]) / 2;
}

// The headline numbers of the public debate, per model and strategy: top-1 agreement with the
// unperturbed model (median over seeds) near f = 0.1% and f = 25%.
void print_summary(const JobConfig& job, const std::vector<ModelSummary>& models,
                   const std::vector<TrialRow>& rows, std::FILE* out) {
  const int32_t low = nearest_fraction(job.amounts, 1e-3), high = nearest_fraction(job.amounts, 0.25);
  for (const ModelSummary& m : models) {
    std::fprintf(out, "baseline %s: mean NLL %.4f, perplexity %.3f, next-token accuracy %.4f, "
                 "greedy continuation %lld tokens\n",
                 m.name.c_str(), m.baseline.metrics.mean_nll, m.baseline.metrics.perplexity,
                 m.baseline.metrics.accuracy, static_cast<long long>(m.baseline.greedy_ids.size()));
  }
  if (low < 0) return;
  const auto label = [&](int32_t a) { return "f=" + job.amounts[static_cast<size_t>(a)].label(); };
  std::fprintf(out, "\ntop-1 agreement with the unperturbed model (median over seeds)\n%-14s %-44s %10s %10s\n",
               "model", "strategy", label(low).c_str(), label(high).c_str());
  for (size_t m = 0; m < job.models.size(); ++m) {
    for (size_t s = 0; s < job.strategies.size(); ++s) {
      std::vector<double> at_low, at_high;
      for (const TrialRow& row : rows) {
        if (row.model_idx != static_cast<int32_t>(m) || row.strategy_idx != static_cast<int32_t>(s)) continue;
        if (row.amount_idx == low) at_low.push_back(row.metrics.top1_agreement);
        if (row.amount_idx == high) at_high.push_back(row.metrics.top1_agreement);
      }
      std::fprintf(out, "%-14s %-44s %10.4f %10.4f\n", job.models[m].name.c_str(),
                   job.strategies[s].canonical().c_str(), median(at_low), median(at_high));
    }
  }
}

}  // namespace

void check_job_inputs(const JobConfig& job) {
  for (size_t m = 0; m < job.models.size(); ++m) check_model(job, m);
}

ModelSession::ModelSession(const JobConfig& job, int32_t model_idx, const EvalSources& sources)
    : name_(job.models[static_cast<size_t>(model_idx)].name),
      open_(open_model(job, static_cast<size_t>(model_idx), sources)),
      perturber_(std::make_unique<Perturber>(open_->model, job.seed, name_)) {}

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

int run_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);

  // Phase 1: inputs and output path, agreed on by every rank before any work.
  Provenance provenance;
  provenance.started_utc = utc_now();
  EvalSources sources;
  run_collective_phase(comm, [&] {
    if (rank == 0) check_output_path(options.out, options.force);
    check_job_inputs(job);
    sources = read_eval_sources(job);
  });
  const GemmInfo gemm = gemm_init(options.gemm);
  provenance.hostnames = gather_hostnames(comm);

  // Phase 2: trials. Each rank keeps one model session; trial ids are model-major and handed
  // out in increasing order, so a rank loads each model at most once.
  const Grid grid(job);
  const std::set<int64_t> recorded(job.record_sites.begin(), job.record_sites.end());
  std::vector<ModelSummary> summaries(job.models.size());  // rank 0: filled as sessions end
  std::vector<bool> summarised(job.models.size(), false);
  std::unique_ptr<ModelSession> session;
  int32_t session_model = -1;
  auto close_session = [&] {
    if (session && rank == 0) {
      summaries[static_cast<size_t>(session_model)] = session->summary();
      summarised[static_cast<size_t>(session_model)] = true;
    }
    session.reset();
  };
  auto open_session = [&](int32_t model_idx) {
    if (session_model == model_idx) return;
    close_session();
    session = std::make_unique<ModelSession>(job, model_idx, sources);
    session_model = model_idx;
  };
  auto run_trial = [&](int64_t id) {
    const TrialSpec& spec = grid.trial(id);
    open_session(spec.model_idx);
    return session->run_trial(job, spec, recorded.count(id) > 0, rank);
  };

  const std::string schedule =
      options.schedule.dynamic
          ? "dynamic (chunk " +
                std::to_string(options.schedule.chunk > 0 ? options.schedule.chunk
                                                          : automatic_chunk(grid.size(), size)) +
                ")"
          : "static";
  if (rank == 0) {
    std::fprintf(stderr, "[fracsweep] job %s: %lld trials, %zu model(s), %d rank(s), %s schedule; "
                 "BLIS %s kernels=%s threads=%d\n",
                 job.name.c_str(), static_cast<long long>(grid.size()), job.models.size(), size,
                 schedule.c_str(), gemm.blis_version.c_str(), gemm.kernel_set.c_str(), gemm.threads);
  }
  Progress progress(grid.size(), options.progress_interval_s, rank == 0);
  std::vector<TrialResult> results =
      run_distributed(comm, grid.size(), options.schedule, run_trial, progress);

  // Phase 3: rank 0 writes the file (baselines of models it never ran are computed here).
  if (rank != 0) return exit_ok;
  close_session();
  for (size_t m = 0; m < job.models.size(); ++m) {
    if (!summarised[m]) summaries[m] = ModelSession(job, static_cast<int32_t>(m), sources).summary();
  }
  ResultsContent content;
  content.job = &job;
  content.grid = &grid;
  content.models = std::move(summaries);
  for (TrialResult& result : results) {
    if (!result.sites.empty()) content.sites.push_back({result.row.trial, std::move(result.sites)});
    content.rows.push_back(result.row);
  }
  provenance.software_version = software_version();
  provenance.git_commit = git_commit();
  provenance.command_line = options.command_line;
  provenance.job_sha256 = sha256_hex(job.text);
  provenance.schedule = schedule;
  provenance.mpi_size = size;
  provenance.blis_version = gemm.blis_version;
  provenance.blis_kernels = gemm.kernel_set;
  provenance.blis_kernels_selected_by = gemm.selected_by;
  provenance.blis_threads = gemm.threads;
  provenance.finished_utc = utc_now();
  content.provenance = provenance;
  write_results(options.out, content, options.force);
  std::fprintf(stderr, "[fracsweep] wrote %s (%zu trials)\n", options.out.c_str(), content.rows.size());
  print_summary(job, content.models, content.rows, stdout);
  std::fflush(stdout);
  return exit_ok;
}

}  // namespace fracsweep
