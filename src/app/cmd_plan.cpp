#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "fracsweep/app/adaptive_sweep.hpp"
#include "fracsweep/app/commands.hpp"
#include "fracsweep/app/sweep.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/par/node_memory.hpp"
#include "fracsweep/par/progress.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

struct TrialCost {
  double seconds = 0;    // mean wall time of a trial
  double flops = 0;      // of one forward pass over the evaluation batch
  uint64_t working = 0;  // bytes the session holds besides the model's values
};

// Cost of model `m`'s trials, measured on a few of them spread over the grid.
TrialCost measure_trial_cost(const JobConfig& job, const Grid& grid, int32_t m,
                             const EvalSources& sources) {
  const uint64_t anonymous_before = process_anonymous_bytes();
  ModelSession session(job, m, sources);
  const int64_t first = grid.model_begin(m), count = grid.model_end(m) - first;
  const int64_t samples = std::min<int64_t>(5, count);
  double total = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const TrialSpec& spec = grid.trial(first + (count - 1) * i / std::max<int64_t>(1, samples - 1));
    total += session.run_trial(job, spec, false, 0).row.wall_s;
  }
  const uint64_t anonymous_after = process_anonymous_bytes();
  const uint64_t held = anonymous_after > anonymous_before ? anonymous_after - anonymous_before : 0;
  const uint64_t values = session.model().values.size() * sizeof(float);
  return {total / static_cast<double>(samples), session.forward_flops(),
          held > values ? held - values : 0};
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

// The memory lines: per node (weights once when shared, plus each rank's share) and per rank.
void print_memory(const NodeMemory& memory, uint64_t available, const std::string& source) {
  const std::string working =
      memory.per_rank_working > 0
          ? memory_text(memory.per_rank_working) + " working memory measured"
          : std::string("working memory not measured (--no-measure)");
  std::printf(
      "memory per rank: %s (%s of weights held privately + %s: activations, evaluator "
      "with its baseline, undo log)\n",
      memory_text(memory.per_rank()).c_str(), memory_text(memory.private_weights).c_str(),
      working.c_str());
  std::printf(
      "memory per node: %s (%s of weights shared once per node + %d rank(s) x %s); "
      "the node has %s (%s)\n",
      memory_text(memory.per_node()).c_str(), memory_text(memory.shared_weights).c_str(),
      memory.ranks_on_node, memory_text(memory.per_rank()).c_str(), memory_text(available).c_str(),
      source.c_str());
}

}  // namespace

int command_plan(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("ranks", po::value<int>()->default_value(2),
                                                    "MPI ranks to estimate the wall time for")(
      "no-measure", "skip loading the models and timing sample trials")(
      "ranks-per-node", po::value<int>(),
      "MPI ranks on each node, for the memory per node (default: --ranks, one node)")(
      "share-weights", po::value<std::string>()->default_value("auto"),
      "as for run: auto (ranks of a node share one copy of the weights) or off");
  add_threads_option(options);
  bool help = false;
  run_collective_phase(comm, [&] {
    if (rank != 0) return;
    const auto vm = parse_command_line("plan", args, options, {"job"},
                                       "usage: fracsweep plan JOB.ini [options]", help, rank);
    if (help) return;
    const int ranks = vm["ranks"].as<int>();
    check_input(ranks >= 1, "fracsweep plan: --ranks must be >= 1");
    const int ranks_per_node = vm.count("ranks-per-node") ? vm["ranks-per-node"].as<int>() : ranks;
    check_input(ranks_per_node >= 1 && ranks_per_node <= ranks,
                "fracsweep plan: --ranks-per-node must be in 1..--ranks");
    const std::string share = vm["share-weights"].as<std::string>();
    check_input(share == "auto" || share == "off",
                "fracsweep plan: --share-weights must be auto or off, found '" + share + "'");
    const int threads = threads_from(vm, "plan", affinity_cores());
    const JobConfig job = parse_job_file(vm["job"].as<std::string>());
    check_job_inputs(job);
    NodeMemory memory = job_node_memory(job, ranks_per_node, share == "auto" && ranks_per_node > 1);
    std::string source;
    const uint64_t available = node_memory_available(source);
    check_fits_node(job, memory, available, source, "fracsweep plan");  // weights alone
    const Grid grid = job_grid(job);
    std::printf("%s\n", plan_echo(job).c_str());
    std::printf(
        "grid: %zu model(s) x %zu strateg%s x %zu amount(s) x %zu seed(s) = %lld trials "
        "(deterministic strategies run once per amount)\n",
        job.models.size(), job.strategies.size(), job.strategies.size() == 1 ? "y" : "ies",
        job.amounts.size(), job.seeds.size(), static_cast<long long>(grid.size()));
    const EvalSources sources = read_eval_sources(job);
    std::optional<AdaptiveSearches> adaptive;
    if (job.adaptive) {
      const bool reference = std::any_of(job.models.begin(), job.models.end(),
                                         [](const ModelSpec& m) { return !m.reference.empty(); });
      adaptive.emplace(job, grid, reference,
                       sources.probes ? sources.probes->kinds : std::vector<std::string>{});
      int64_t bound = 0;
      for (size_t m = 0; m < job.models.size(); ++m) {
        bound += adaptive->trial_bound(static_cast<int32_t>(m));
      }
      std::printf("adaptive: the searches run at most %lld of these trials\n",
                  static_cast<long long>(bound));
    }
    if (vm.count("no-measure")) {
      print_memory(memory, available, source);
      return;
    }
    warn_about_compute(gemm_init(GemmSetup{BlisKernels::automatic, threads}));
    double total_seconds = 0;
    for (size_t m = 0; m < job.models.size(); ++m) {
      const auto model_idx = static_cast<int32_t>(m);
      const TrialCost cost = measure_trial_cost(job, grid, model_idx, sources);
      const int64_t trials = adaptive ? adaptive->trial_bound(model_idx)
                                      : grid.model_end(model_idx) - grid.model_begin(model_idx);
      total_seconds += cost.seconds * static_cast<double>(trials);
      memory.per_rank_working = std::max(memory.per_rank_working, cost.working);
      std::printf("model %s: %lld trials, ~%.1f ms/trial measured (%.2f GFLOP per forward pass)\n",
                  job.models[m].name.c_str(), static_cast<long long>(trials), cost.seconds * 1e3,
                  cost.flops * 1e-9);
    }
    std::printf("rough cost: %s on 1 rank, ~%s on %d ranks (%d thread(s) per rank, as measured)\n",
                Progress::format_duration(total_seconds).c_str(),
                Progress::format_duration(total_seconds / ranks).c_str(), ranks, threads);
    print_memory(memory, available, source);
    check_fits_node(job, memory, available, source, "fracsweep plan");
  });
  return exit_ok;
}

}  // namespace fracsweep
