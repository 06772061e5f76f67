#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "fracsweep/app/adaptive_sweep.hpp"
#include "fracsweep/app/commands.hpp"
#include "fracsweep/app/plan_estimate.hpp"
#include "fracsweep/app/sweep.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/par/node_memory.hpp"
#include "fracsweep/par/progress.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

// "0.42 s", "12.3 s", or "4:05" / "1:02:03" from two minutes on.
std::string seconds_text(double seconds) {
  if (seconds >= 120) return Progress::format_duration(seconds);
  char text[32];
  std::snprintf(text, sizeof text, seconds < 10 ? "%.2f s" : "%.1f s", seconds);
  return text;
}

std::string milliseconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g ms", seconds * 1e3);
  return text;
}

// The baseline line: what was measured, and what the rest of the continuation adds.
void print_baseline(const ModelEstimate& estimate) {
  if (!estimate.continuation) {
    std::printf("  baseline %s measured (forward pass over the evaluation set)\n",
                seconds_text(estimate.baseline_s()).c_str());
    return;
  }
  const ContinuationEstimate& greedy = *estimate.continuation;
  if (greedy.ended_early || greedy.decoded_tokens >= greedy.greedy_tokens) {
    const std::string whole =
        greedy.ended_early
            ? "the whole greedy continuation: it ends after " +
                  std::to_string(greedy.decoded_tokens) + " token(s), at the model's stop token"
            : "all " + std::to_string(greedy.greedy_tokens) + " greedy tokens";
    std::printf("  baseline %s measured (forward pass + %s)\n",
                seconds_text(estimate.baseline_s()).c_str(), whole.c_str());
    return;
  }
  const int64_t rest = greedy.greedy_tokens - greedy.decoded_tokens;
  const int64_t first = greedy.prompt_tokens;  // the first timed step's position
  const int64_t last = greedy.prompt_tokens + greedy.greedy_tokens - 1 - greedy.timed_steps;
  std::printf(
      "  baseline %s: %s measured (forward pass + %lld of %lld greedy tokens) + %s estimated "
      "for the other %lld tokens: decode steps %s at positions %lld-%lld to %s at %lld-%lld "
      "(mean of those timed; linear in the position in between) and 2 x %s for the longer "
      "teacher-forced passes; "
      "assumes the continuation runs all %lld tokens (it stops earlier at the model's stop "
      "token)\n",
      seconds_text(estimate.baseline_s()).c_str(),
      seconds_text(estimate.measured_baseline_s).c_str(),
      static_cast<long long>(greedy.decoded_tokens), static_cast<long long>(greedy.greedy_tokens),
      seconds_text(greedy.extra_baseline_s()).c_str(), static_cast<long long>(rest),
      milliseconds_text(greedy.step.first_s).c_str(), static_cast<long long>(first),
      static_cast<long long>(first + greedy.timed_steps - 1),
      milliseconds_text(greedy.step.last_s).c_str(), static_cast<long long>(last),
      static_cast<long long>(last + greedy.timed_steps - 1),
      milliseconds_text(greedy.longer_pass_s).c_str(),
      static_cast<long long>(greedy.greedy_tokens));
}

// The trial lines: what was timed, the fitted line, its spread over the grid, what is not in it.
void print_trials(const ModelEstimate& estimate, bool adaptive) {
  std::string ks;
  for (const SampledTrial& trial : estimate.sampled) {
    ks += (ks.empty() ? "" : ", ") + std::to_string(trial.k);
  }
  std::string rows;
  if (estimate.longer_trial_pass_s > 0) {
    rows = " + " + milliseconds_text(estimate.longer_trial_pass_s) +
           " for the continuation's rows the plan did not decode";
  }
  std::printf(
      "  trials: timed %zu (k = %s); fit %s + %.3g us/site x k%s; over the %s: %s min, %s "
      "mean, %s max per trial; %.2f GFLOP per forward pass\n",
      estimate.sampled.size(), ks.c_str(), milliseconds_text(estimate.trial.fixed_s).c_str(),
      estimate.trial.per_site_s * 1e6, rows.c_str(), adaptive ? "grid's amounts" : "grid",
      milliseconds_text(estimate.spread.min_s).c_str(),
      milliseconds_text(estimate.spread.mean_s).c_str(),
      milliseconds_text(estimate.spread.max_s).c_str(), estimate.forward_flops * 1e-9);
  if (estimate.preparation) {
    const MeasuredPreparation& preparation = *estimate.preparation;
    std::string also;
    for (const std::string& text : preparation.also) also += ", " + text;
    std::printf(
        "  one-time preparation (ranking, gradient) measured: %s for %s%s (paid by every rank "
        "that runs their trials)\n",
        seconds_text(preparation.seconds).c_str(), preparation.strategy.c_str(), also.c_str());
  }
  for (const std::string& text : estimate.not_estimated) {
    std::printf("  not estimated: %s (its trials counted at the fitted line)\n", text.c_str());
  }
  std::printf("  trial-seconds: %s (%s%lld trials by the fit%s)\n",
              seconds_text(estimate.trial_seconds()).c_str(), adaptive ? "at most " : "",
              static_cast<long long>(estimate.spread.trials),
              estimate.preparation ? " + the preparation once" : "");
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

// The job's figures, summed over its models.
struct PlanTotals {
  double trial_seconds = 0;     // every model's trials, preparations not counted
  double one_rank_seconds = 0;  // the same with each preparation once: a 1-rank run's wall_s
  double per_rank_seconds = 0;  // what every rank does besides its share of the trials
  int64_t timed_trials = 0;
  int64_t not_estimated = 0;  // strategies (per model) whose preparation or search is left out
  bool decoding_estimated = false;

  void add(const ModelEstimate& estimate) {
    trial_seconds += estimate.spread.total_s;
    one_rank_seconds += estimate.trial_seconds();
    per_rank_seconds += estimate.load_s + estimate.baseline_s() + estimate.preparation_s();
    timed_trials += static_cast<int64_t>(estimate.sampled.size());
    not_estimated += static_cast<int64_t>(estimate.not_estimated.size());
    decoding_estimated =
        decoding_estimated || (estimate.continuation && estimate.continuation->timed_steps > 0);
  }
};

// The totals and the wall time at `ranks` ranks: every rank loads each model and computes its
// baseline itself (sweep.cpp's ModelSessions), pays each preparation once, and runs its share of
// the trials.
void print_totals(const PlanTotals& totals, int ranks, int threads) {
  const std::string lower_bound =
      totals.not_estimated == 0 ? std::string()
                                : "; a lower bound: " + std::to_string(totals.not_estimated) +
                                      " strateg" + (totals.not_estimated == 1 ? "y's" : "ies'") +
                                      " preparation or search not estimated";
  std::printf(
      "estimate: %.*f trial-seconds in all (%s on 1 rank%s); before its trials every rank loads "
      "each model and computes its baseline itself (%s per rank, with the preparations)\n",
      totals.one_rank_seconds < 10 ? 3 : 1, totals.one_rank_seconds,
      seconds_text(totals.one_rank_seconds).c_str(), lower_bound.c_str(),
      seconds_text(totals.per_rank_seconds).c_str());
  std::printf(
      "wall estimate at %d rank(s) x %d thread(s): ~%s (an estimate from %lld timed trial(s)%s: "
      "%s per rank, then 1/%d of the trial-seconds; each rank as fast as this process alone)\n",
      ranks, threads, seconds_text(totals.per_rank_seconds + totals.trial_seconds / ranks).c_str(),
      static_cast<long long>(totals.timed_trials),
      totals.decoding_estimated ? " and a few decode steps" : "",
      seconds_text(totals.per_rank_seconds).c_str(), ranks);
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
    // As run's default: the cores here, divided among the node's ranks.
    const int threads = threads_from(vm, "plan", std::max(1, affinity_cores() / ranks_per_node));
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
    PlanTotals totals;
    for (size_t m = 0; m < job.models.size(); ++m) {
      const auto model_idx = static_cast<int32_t>(m);
      const ModelEstimate estimate = estimate_model(
          job, grid, model_idx, sources, adaptive ? adaptive->trial_bound(model_idx) : -1);
      totals.add(estimate);
      memory.per_rank_working = std::max(memory.per_rank_working, estimate.working);
      std::printf("model %s: %s%lld trials\n  load %s measured\n", job.models[m].name.c_str(),
                  adaptive ? "at most " : "", static_cast<long long>(estimate.spread.trials),
                  seconds_text(estimate.load_s).c_str());
      print_baseline(estimate);
      print_trials(estimate, adaptive.has_value());
    }
    print_totals(totals, ranks, threads);
    if (ranks_per_node * threads > affinity_cores()) {
      std::printf(
          "note: %d rank(s) x %d thread(s) on a node exceed the %d core(s) this process may use: "
          "the ranks will share cores and run slower than timed\n",
          ranks_per_node, threads, affinity_cores());
    }
    print_memory(memory, available, source);
    check_fits_node(job, memory, available, source, "fracsweep plan");
  });
  return exit_ok;
}

}  // namespace fracsweep
