// run_sweep as named phases, each with explicit state:
//   plan (grid, shard, journal identity) -> open inputs and journal (collective) -> announce
//   -> distribute trials over per-model sessions, rank 0 journalling every row -> finalise the
//   results file and the printed summary (rank 0) -> every rank waits for the writer.
#include "fracsweep/app/sweep.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>

#include "fracsweep/app/adaptive_sweep.hpp"
#include "fracsweep/app/commands.hpp"
#include "fracsweep/app/sweep_journal.hpp"
#include "fracsweep/app/sweep_summary.hpp"
#include "fracsweep/io/output_lock.hpp"
#include "fracsweep/io/output_paths.hpp"
#include "fracsweep/par/stop.hpp"
#include "fracsweep/perturb/rng.hpp"
#include "fracsweep/util/build_info.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/sha256.hpp"

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

// This rank's host name, as MPI reports it.
std::string processor_name() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  return std::string(name, static_cast<size_t>(length));
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

// Sends rank 0's `ids` to every rank.
void broadcast_ids(MPI_Comm comm, std::vector<int64_t>& ids) {
  auto count = static_cast<int64_t>(ids.size());
  MPI_Bcast(&count, 1, MPI_INT64_T, 0, comm);
  ids.resize(static_cast<size_t>(count));
  MPI_Bcast(ids.data(), static_cast<int>(count), MPI_INT64_T, 0, comm);
}

// What every phase reads: the job, the run's flags, the grid and the shard of it this run covers.
struct SweepPlan {
  const JobConfig& job;
  const RunOptions& options;
  Grid grid;
  TrialRange range;          // this shard's trial ids
  JournalIdentity identity;  // what a journal of this run must match to be resumed
  int rank = 0;
  int size = 1;
};

SweepPlan plan_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options) {
  SweepPlan plan{job, options, job_grid(job), {}, {}, 0, 1};
  // Searches follow one (model, strategy, seed) across the fraction axis, which shards split.
  check_input(!job.adaptive || options.shard_count <= 1,
              in_file(job.path,
                      "key 'sweep.adaptive': an adaptive job cannot be sharded "
                      "(--shard); run it whole (its searches need only a few trials)"));
  MPI_Comm_rank(comm, &plan.rank);
  MPI_Comm_size(comm, &plan.size);
  plan.range = shard_range(plan.grid.size(), options.shard_index, options.shard_count);
  plan.identity = {sha256_hex(job.text), plan.grid.size(), options.shard_index, options.shard_count,
                   site_recipe_name};
  return plan;
}

// What the inputs phase opened: evaluation data (every rank), the trials still to run (every
// rank), and rank 0's output lock, journal and resumed rows.
struct SweepStart {
  EvalSources sources;
  std::optional<AdaptiveSearches> adaptive;  // adaptive jobs: the searches (every rank)
  std::vector<int64_t> to_run;               // trial ids still missing, ascending
  std::unique_ptr<OutputLock> lock;          // rank 0: held until the run ends
  ResumeState resume;                        // rank 0
};

// Rank 0: locks the output, opens or resumes its journal and records this start in provenance.
void open_output(const SweepPlan& plan, SweepStart& start, Provenance& provenance) {
  const std::string& out = plan.options.out;
  check_outputs_spare_inputs({out, journal_path(out), OutputLock::path_for(out)},
                             job_input_paths(plan.job));
  const JournalSession session{provenance.started_utc, batch_job_id(), processor_name(), 0};
  start.lock = std::make_unique<OutputLock>(plan.options.out, session.job_id);
  start.resume = open_journal(plan.identity, plan.options, session);
  start.to_run = missing_trials(plan.range, start.resume.committed);
  for (const JournalSession& earlier : start.resume.earlier_sessions) {
    provenance.sessions.push_back(session_line(earlier));
  }
  const auto trials_before = static_cast<int64_t>(start.resume.committed.size());
  provenance.sessions.push_back(
      session_line({session.started_utc, session.job_id, session.host, trials_before}));
}

// Rank 0: deletes the journal this session created (none when resuming an earlier one, whose
// trials are kept).
void discard_new_journal(const SweepPlan& plan, SweepStart& start) {
  if (!start.resume.journal || start.resume.resuming) return;
  start.resume.journal.reset();
  std::filesystem::remove(journal_path(plan.options.out));
}

// Rank 0, when the sweep fails after its inputs were opened: bad input leaves nothing behind
// (the journal this session created is deleted, the lock released); any other failure keeps
// the committed trials for a resume, and says so.
void clean_up_after_failure(const SweepPlan& plan, SweepStart& start, const PhaseFailure& failure) {
  if (plan.rank != 0) return;
  if (failure.exit_code() == exit_bad_input) {
    discard_new_journal(plan, start);
  } else if (start.resume.journal) {
    start.resume.journal->commit();
    std::fprintf(stderr,
                 "[fracsweep] the trials done so far are committed to %s; once the cause is "
                 "fixed, run the same command again to resume\n",
                 journal_path(plan.options.out).c_str());
  }
}

// Collective: checks every input and opens the output, agreed on by every rank before any work
// (a failure on any rank throws PhaseFailure on all); then every rank learns the trials to run.
SweepStart open_inputs(MPI_Comm comm, const SweepPlan& plan, Provenance& provenance) {
  SweepStart start;
  try {
    run_collective_phase(comm, [&] {
      check_job_inputs(plan.job);
      start.sources = read_eval_sources(plan.job);
      if (plan.job.adaptive) {
        const auto& models = plan.job.models;
        const bool reference = std::any_of(models.begin(), models.end(),
                                           [](const ModelSpec& m) { return !m.reference.empty(); });
        start.adaptive.emplace(
            plan.job, plan.grid, reference,
            start.sources.probes ? start.sources.probes->kinds : std::vector<std::string>{});
      }
      if (plan.rank == 0) open_output(plan, start, provenance);
    });
  } catch (const PhaseFailure&) {
    discard_new_journal(plan, start);  // another rank failed: leave nothing
    throw;
  }
  broadcast_ids(comm, start.to_run);
  return start;
}

std::string schedule_label(const ScheduleOptions& schedule, size_t n_to_run, int n_ranks,
                           bool rounds) {
  if (!schedule.dynamic) return "static";
  if (rounds && schedule.chunk <= 0) return "dynamic (automatic chunk per round)";
  const int64_t chunk = schedule.chunk > 0
                            ? schedule.chunk
                            : automatic_chunk(static_cast<int64_t>(n_to_run), n_ranks);
  return "dynamic (chunk " + std::to_string(chunk) + ")";
}

// Rank 0: the job, ranks, schedule and BLIS setup; for shards and resumes, what is left to run.
void announce_sweep(const SweepPlan& plan, const SweepStart& start, const std::string& schedule,
                    const GemmInfo& gemm) {
  std::string trials = std::to_string(plan.grid.size()) + " trials";
  if (start.adaptive) {
    int64_t bound = 0;
    for (int32_t m = 0; m < static_cast<int32_t>(plan.job.models.size()); ++m) {
      bound += start.adaptive->trial_bound(m);
    }
    trials = "adaptive search for f* on " + std::to_string(plan.job.amounts.size()) +
             " fractions, at most " + std::to_string(bound) + " trials";
  }
  std::fprintf(stderr,
               "[fracsweep] job %s: %s, %zu model(s), %d rank(s), %s schedule; "
               "BLIS %s kernels=%s threads=%d\n",
               plan.job.name.c_str(), trials.c_str(), plan.job.models.size(), plan.size,
               schedule.c_str(), gemm.blis_version.c_str(), gemm.kernel_set.c_str(), gemm.threads);
  warn_about_compute(gemm);
  if (plan.options.shard_count <= 1 && !start.resume.resuming) return;
  const std::string resumed =
      start.resume.resuming ? "resuming " + journal_path(plan.options.out) + " with " +
                                  std::to_string(start.resume.committed.size()) + " trials done, "
                            : "";
  std::fprintf(stderr, "[fracsweep] shard %lld/%lld: trials [%lld, %lld); %s%lld to run\n",
               static_cast<long long>(plan.options.shard_index),
               static_cast<long long>(plan.options.shard_count),
               static_cast<long long>(plan.range.first), static_cast<long long>(plan.range.last),
               resumed.c_str(), static_cast<long long>(start.to_run.size()));
}

// One rank's model sessions. Trial ids are model-major and handed out in increasing order, so a
// rank opens each model at most once. Rank 0 keeps the summary of each model it closes.
class ModelSessions {
 public:
  ModelSessions(const SweepPlan& plan, const EvalSources& sources, const WeightsSource& weights)
      : plan_(plan),
        sources_(sources),
        summaries_(plan.job.models.size()),
        summarised_(plan.job.models.size(), false),
        recorded_(plan.job.record_sites.begin(), plan.job.record_sites.end()) {
    load_.weights = &weights;
  }

  TrialResult run_trial(int64_t id) {
    const TrialSpec& spec = plan_.grid.trial(id);
    switch_to(spec.model_idx);
    return session_->run_trial(plan_.job, spec, recorded_.count(id) > 0, plan_.rank);
  }

  // Rank 0, after the trials: every model's summary, in job order; models this rank never ran
  // are opened now (their baselines computed).
  std::vector<ModelSummary> take_summaries() {
    close_current();
    for (size_t m = 0; m < summaries_.size(); ++m) {
      if (!summarised_[m]) summaries_[m] = open_session(static_cast<int32_t>(m))->summary();
    }
    return std::move(summaries_);
  }

 private:
  void switch_to(int32_t model_idx) {
    if (current_model_ == model_idx) return;
    close_current();
    session_ = open_session(model_idx);
    current_model_ = model_idx;
  }
  // Opens model `model_idx` (load, baseline, greedy continuation); rank 0 says so before, after
  // each phase and at the end, so a long load is never silent.
  std::unique_ptr<ModelSession> open_session(int32_t model_idx) const {
    const ModelSpec& spec = plan_.job.models[static_cast<size_t>(model_idx)];
    const auto start = std::chrono::steady_clock::now();
    LoadOptions load = load_;
    if (plan_.rank == 0) {
      std::fprintf(stderr, "[fracsweep] model '%s': loading %s and computing its baseline\n",
                   spec.name.c_str(), spec.path.c_str());
      load.phase_done = [&spec](const char* phase, double seconds) {
        std::fprintf(stderr, "[fracsweep] model '%s': %s in %.2f s\n", spec.name.c_str(), phase,
                     seconds);
      };
    }
    auto session = std::make_unique<ModelSession>(plan_.job, model_idx, sources_, load);
    if (plan_.rank == 0) {
      std::fprintf(stderr, "[fracsweep] model '%s': ready in %.1f s\n", spec.name.c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return session;
  }
  void close_current() {
    if (session_ && plan_.rank == 0) {
      summaries_[static_cast<size_t>(current_model_)] = session_->summary();
      summarised_[static_cast<size_t>(current_model_)] = true;
    }
    session_.reset();
  }

  const SweepPlan& plan_;
  const EvalSources& sources_;
  LoadOptions load_;                     // values from the node's shared copy where there is one
  std::vector<ModelSummary> summaries_;  // (n_models) rank 0: filled as sessions close
  std::vector<bool> summarised_;         // (n_models)
  const std::set<int64_t> recorded_;     // trial ids whose sites are recorded
  std::unique_ptr<ModelSession> session_;
  int32_t current_model_ = -1;
};

// Polled between trials: true once a stop signal arrived, announced once per rank.
class StopWatch {
 public:
  StopWatch(const StopSignals& signals, int rank) : signals_(signals), rank_(rank) {}
  bool operator()() {
    if (signals_.requested() && !announced_) {
      announced_ = true;
      std::fprintf(stderr,
                   "[fracsweep] rank %d: %s: stopping after the trials in flight (send it "
                   "again to exit at once)\n",
                   rank_, StopSignals::name(signals_.signal_number()));
    }
    return announced_;
  }

 private:
  const StopSignals& signals_;
  int rank_;
  bool announced_ = false;
};

// Runs the trials of `start.to_run` on every rank; rank 0 journals each row as it arrives and
// appends it to `rows`. Returns whether every trial ran (false after a stop signal).
bool distribute_trials(MPI_Comm comm, const SweepPlan& plan, SweepStart& start,
                       ModelSessions& sessions, std::vector<TrialResult>& rows,
                       const StopSignals& stop_signals) {
  const auto run_trial = [&](int64_t id) { return sessions.run_trial(id); };
  const auto collect = [&](TrialResult result) {
    start.resume.journal->append(result);
    rows.push_back(std::move(result));
  };
  StopWatch stop_requested(stop_signals, plan.rank);
  const auto stop = [&] { return stop_requested(); };
  const size_t rows_before = rows.size();
  const auto done_here = [&] { return static_cast<int64_t>(rows.size() - rows_before); };
  if (!start.adaptive) {
    Progress progress(static_cast<int64_t>(start.to_run.size()), plan.options.progress_interval_s,
                      plan.rank == 0);
    const bool complete = run_distributed(comm, start.to_run, plan.options.schedule, run_trial,
                                          collect, stop, progress);
    progress.finish(done_here());
    return complete;
  }
  // Adaptive: per model, rounds of the trials its searches need next, until all are settled.
  // Rank 0 holds the rows and decides; a round runs like a grid of its trials. Progress counts
  // against the most trials the searches can take.
  int64_t bound = 0;
  for (int32_t m = 0; m < static_cast<int32_t>(plan.job.models.size()); ++m) {
    bound += start.adaptive->trial_bound(m);
  }
  Progress progress(bound, plan.options.progress_interval_s, plan.rank == 0);
  bool complete = true;
  for (int32_t m = 0; complete && m < static_cast<int32_t>(plan.job.models.size()); ++m) {
    for (;;) {
      std::vector<int64_t> round;
      run_collective_phase(comm, [&] {
        if (plan.rank == 0) round = start.adaptive->next_trials(m, index_rows(rows));
      });
      broadcast_ids(comm, round);
      if (round.empty()) break;
      progress.start_round(done_here(), bound);
      complete =
          run_distributed(comm, round, plan.options.schedule, run_trial, collect, stop, progress);
      if (!complete) break;
    }
  }
  progress.start_round(0, complete ? done_here() : bound);
  progress.finish(done_here());
  return complete;
}

// The run's provenance once the trials are done: software, job, schedule, MPI, BLIS, shard.
void finish_provenance(Provenance& provenance, const SweepPlan& plan, const std::string& schedule,
                       const GemmInfo& gemm, const ResumeState& resume) {
  provenance.software_version = software_version();
  provenance.git_commit = git_commit();
  provenance.command_line = plan.options.command_line;
  provenance.job_sha256 = plan.identity.job_sha256;
  provenance.schedule = schedule;
  provenance.mpi_size = plan.size;
  provenance.blis_version = gemm.blis_version;
  provenance.blis_kernels = gemm.kernel_set;
  provenance.blis_kernels_selected_by = gemm.selected_by;
  provenance.blis_threads = gemm.threads;
  provenance.shard_index = plan.options.shard_index;
  provenance.shard_count = plan.options.shard_count;
  provenance.resume_count = static_cast<int32_t>(resume.earlier_sessions.size());
  provenance.finished_utc = utc_now();
}

// The results file's content: every model's summary and every row so far, ascending trial id.
ResultsContent results_content(const SweepPlan& plan, std::vector<ModelSummary> models,
                               std::vector<TrialResult> rows) {
  std::sort(rows.begin(), rows.end(),
            [](const TrialResult& a, const TrialResult& b) { return a.row.trial < b.row.trial; });
  ResultsContent content;
  content.job = &plan.job;
  content.grid = &plan.grid;
  content.models = std::move(models);
  for (TrialResult& result : rows) {
    if (!result.sites.empty()) content.sites.push_back({result.row.trial, std::move(result.sites)});
    if (!result.path.empty()) content.paths.push_back({result.row.trial, std::move(result.path)});
    content.rows.push_back(result.row);
  }
  return content;
}

// Rank 0: writes the results file, complete or partial. A complete run deletes its journal and
// prints the summary; a stopped one keeps the journal for a resume. Returns the exit code.
int write_output(const SweepPlan& plan, ResultsContent content, bool complete) {
  const std::string& out = plan.options.out;
  // The output is ours to replace: checked when the journal was opened, or a partial file of it.
  write_results(out, content, /*force=*/true);
  if (!complete) {
    std::fprintf(stderr,
                 "[fracsweep] stopped: %zu of %lld trials done and committed to %s; "
                 "partial results in %s; run the same command again to resume (exit code %d)\n",
                 content.rows.size(), static_cast<long long>(plan.range.last - plan.range.first),
                 journal_path(out).c_str(), out.c_str(), exit_incomplete);
    return exit_incomplete;
  }
  std::filesystem::remove(journal_path(out));
  std::fprintf(stderr, "[fracsweep] wrote %s (%zu trials)\n", out.c_str(), content.rows.size());
  print_summary(plan.job, content.models, content.rows, content.searches, stdout);
  std::fflush(stdout);
  return exit_ok;
}

}  // namespace

int run_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options) {
  // From here on SIGTERM, SIGINT and SIGUSR1 stop the sweep cleanly (stop.hpp).
  const StopSignals stop_signals;
  Provenance provenance;
  provenance.started_utc = utc_now();
  provenance.hostnames = gather_hostnames(comm);
  const SweepPlan plan = plan_sweep(comm, job, options);

  SweepStart start = open_inputs(comm, plan, provenance);
  const GemmInfo gemm = gemm_init(options.gemm);
  const std::string schedule =
      schedule_label(options.schedule, start.to_run.size(), plan.size, start.adaptive.has_value());
  if (plan.rank == 0) announce_sweep(plan, start, schedule, gemm);
  std::vector<TrialResult> rows = std::move(start.resume.committed);  // rank 0: every row so far
  int exit_code = exit_ok;
  try {
    // Memory first (refused before any values are read), then the node's copy of the weights.
    check_node_memory(comm, job, options.share_weights);
    const NodeWeights node_weights(comm, job, options.share_weights);
    if (plan.rank == 0)
      std::fprintf(stderr, "[fracsweep] weights: %s\n", node_weights.description().c_str());
    ModelSessions sessions(plan, start.sources, node_weights);
    const bool complete = distribute_trials(comm, plan, start, sessions, rows, stop_signals);
    exit_code = complete ? exit_ok : exit_incomplete;
    // Every rank waits for the writer (a collective phase): under mpirun, a rank ending with a
    // non-zero code gets the whole job killed, rank 0 included, even while it writes the file.
    run_collective_phase(comm, [&] {
      if (plan.rank != 0) return;
      start.resume.journal->commit();
      std::vector<SearchResult> searches;
      if (start.adaptive) searches = start.adaptive->results(index_rows(rows));
      ResultsContent content = results_content(plan, sessions.take_summaries(), std::move(rows));
      content.searches = std::move(searches);
      if (start.sources.probes) content.probe_kinds = start.sources.probes->kinds;
      finish_provenance(provenance, plan, schedule, gemm, start.resume);
      content.provenance = std::move(provenance);
      exit_code = write_output(plan, std::move(content), complete);
    });
  } catch (const PhaseFailure& failure) {
    clean_up_after_failure(plan, start, failure);
    throw;
  }
  return exit_code;
}

}  // namespace fracsweep
