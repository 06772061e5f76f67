#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/app/sweep.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/par/progress.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

struct TrialCost {
  double seconds = 0;  // mean wall time of a trial
  double flops = 0;    // of one forward pass over the evaluation batch
};

// Cost of model `m`'s trials, measured on a few of them spread over the grid.
TrialCost measure_trial_cost(const JobConfig& job, const Grid& grid, int32_t m,
                             const EvalSources& sources) {
  ModelSession session(job, m, sources);
  const int64_t first = grid.model_begin(m), count = grid.model_end(m) - first;
  const int64_t samples = std::min<int64_t>(5, count);
  double total = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const TrialSpec& spec = grid.trial(first + (count - 1) * i / std::max<int64_t>(1, samples - 1));
    total += session.run_trial(job, spec, false, 0).row.wall_s;
  }
  return {total / static_cast<double>(samples), session.forward_flops()};
}

// The job as echo_job prints it, without the greedy continuation line when no model generates
// text (every model a sequential classifier): greedy_tokens means nothing to a classifier, and
// the plan should not promise a continuation the run never produces.
std::string plan_echo(const JobConfig& job) {
  const std::string echo = echo_job(job);
  const bool any_language_model =
      std::any_of(job.models.begin(), job.models.end(),
                  [](const ModelSpec& model) { return model.format != ModelFormat::sequential; });
  if (any_language_model) return echo;
  std::string kept;
  size_t start = 0;
  while (start < echo.size()) {
    const size_t end = std::min(echo.find('\n', start), echo.size());
    const std::string_view line(echo.data() + start, end - start);
    if (!line.starts_with("greedy continuation")) {
      kept.append(line);
      if (end < echo.size()) kept += '\n';
    }
    start = end + 1;
  }
  return kept;
}

}  // namespace

int command_plan(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("ranks", po::value<int>()->default_value(2),
                                                    "MPI ranks to estimate the wall time for")(
      "no-measure", "skip loading the models and timing sample trials");
  add_threads_option(options);
  bool help = false;
  run_collective_phase(comm, [&] {
    if (rank != 0) return;
    const auto vm = parse_command_line("plan", args, options, {"job"},
                                       "usage: fracsweep plan JOB.ini [options]", help, rank);
    if (help) return;
    const int ranks = vm["ranks"].as<int>();
    check_input(ranks >= 1, "fracsweep plan: --ranks must be >= 1");
    const int threads = threads_from(vm, "plan", affinity_cores());
    const JobConfig job = parse_job_file(vm["job"].as<std::string>());
    check_job_inputs(job);
    const Grid grid = job_grid(job);
    std::printf("%s\n", plan_echo(job).c_str());
    std::printf(
        "grid: %zu model(s) x %zu strateg%s x %zu amount(s) x %zu seed(s) = %lld trials "
        "(deterministic strategies run once per amount)\n",
        job.models.size(), job.strategies.size(), job.strategies.size() == 1 ? "y" : "ies",
        job.amounts.size(), job.seeds.size(), static_cast<long long>(grid.size()));
    if (vm.count("no-measure")) return;
    warn_about_compute(gemm_init(GemmSetup{BlisKernels::automatic, threads}));
    const EvalSources sources = read_eval_sources(job);
    double total_seconds = 0;
    for (size_t m = 0; m < job.models.size(); ++m) {
      const auto model_idx = static_cast<int32_t>(m);
      const TrialCost cost = measure_trial_cost(job, grid, model_idx, sources);
      const int64_t trials = grid.model_end(model_idx) - grid.model_begin(model_idx);
      total_seconds += cost.seconds * static_cast<double>(trials);
      std::printf("model %s: %lld trials, ~%.1f ms/trial measured (%.2f GFLOP per forward pass)\n",
                  job.models[m].name.c_str(), static_cast<long long>(trials), cost.seconds * 1e3,
                  cost.flops * 1e-9);
    }
    std::printf("rough cost: %s on 1 rank, ~%s on %d ranks (%d thread(s) per rank, as measured)\n",
                Progress::format_duration(total_seconds).c_str(),
                Progress::format_duration(total_seconds / ranks).c_str(), ranks, threads);
  });
  return exit_ok;
}

}  // namespace fracsweep
