#include "fracsweep/app/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <set>

#include "fracsweep/util/build_info.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/io/output_lock.hpp"
#include "fracsweep/util/sha256.hpp"
#include "fracsweep/par/stop.hpp"

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
    const TrialMetrics& base = m.baseline.metrics;
    if (m.format == "sequential") {
      std::fprintf(out, "baseline %s: accuracy %.4f on %lld examples, mean cross-entropy %.4f\n",
                   m.name.c_str(), base.accuracy, static_cast<long long>(base.positions), base.mean_nll);
    } else {
      std::fprintf(out, "baseline %s: mean NLL %.4f, perplexity %.3f, next-token accuracy %.4f over "
                   "%lld positions, greedy continuation %zu tokens\n",
                   m.name.c_str(), base.mean_nll, base.perplexity, base.accuracy,
                   static_cast<long long>(base.positions), m.baseline.greedy_ids.size());
    }
  }
  if (low < 0) return;
  const auto label = [&](int32_t a) {
    char text[32];
    std::snprintf(text, sizeof text, "f=%.3g", job.amounts[static_cast<size_t>(a)].fraction);
    return std::string(text);
  };
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

namespace {

// What rank 0 found and opened before the sweep: the trials still to run, the journal writer
// and what the journal already holds.
struct ResumeState {
  std::vector<TrialResult> committed;  // trials from the journal, ascending id
  std::vector<JournalSession> earlier_sessions;
  bool resuming = false;
  std::unique_ptr<JournalWriter> journal;
};

std::string journal_path(const std::string& out) { return out + ".journal"; }

// The batch job this run belongs to, for provenance: Slurm's job id (with the array task).
std::string batch_job_id() {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job == nullptr) return "";
  const char* array_job = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* array_task = std::getenv("SLURM_ARRAY_TASK_ID");
  if (array_job != nullptr && array_task != nullptr) {
    return std::string(array_job) + "_" + array_task;
  }
  return job;
}

std::string session_line(const JournalSession& session) {
  return session.started_utc + " job=" + (session.job_id.empty() ? "-" : session.job_id) +
         " host=" + session.host + " trials_before=" + std::to_string(session.trials_before);
}

// Removes "<out>.tmp-<pid>" files that an earlier, killed run of this output left behind.
void remove_stale_temporaries(const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path target(out);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp-";
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
      fs::remove(entry.path(), error);
    }
  }
}

// Rank 0: opens or creates the journal of `options.out`. An existing journal is resumed when it
// belongs to this job and shard; otherwise it is refused unless --force starts over.
ResumeState open_journal(const JournalIdentity& identity, const RunOptions& options,
                         const JournalSession& session) {
  namespace fs = std::filesystem;
  const std::string path = journal_path(options.out);
  ResumeState state;
  std::error_code error;
  if (fs::exists(path, error) && !options.force) {
    JournalContents contents = read_journal(path);
    const JournalIdentity& found = contents.identity;
    check_input(found.job_sha256 == identity.job_sha256,
                in_file(path, "belongs to a different job (job_sha256 " + found.job_sha256 +
                                  ", this job " + identity.job_sha256 +
                                  "); use --force to discard it and start over"));
    check_input(found.n_trials == identity.n_trials && found.shard_index == identity.shard_index &&
                    found.shard_count == identity.shard_count,
                in_file(path, "holds shard " + std::to_string(found.shard_index) + "/" +
                                  std::to_string(found.shard_count) + " of " +
                                  std::to_string(found.n_trials) + " trials, but this run is shard " +
                                  std::to_string(identity.shard_index) + "/" +
                                  std::to_string(identity.shard_count) + " of " +
                                  std::to_string(identity.n_trials) +
                                  "; use --force to discard it and start over"));
    if (contents.discarded_bytes > 0) {
      std::fprintf(stderr, "[fracsweep] %s: discarded a torn tail of %lld bytes\n", path.c_str(),
                   static_cast<long long>(contents.discarded_bytes));
    }
    state.resuming = true;
    remove_stale_temporaries(options.out);
    state.committed = std::move(contents.results);
    state.earlier_sessions = std::move(contents.sessions);
    state.journal = std::make_unique<JournalWriter>(path, contents.valid_bytes, options.commit);
  } else {
    check_input(!options.resume || !fs::exists(options.out, error) || options.force,
                in_file(options.out, "--resume: there is no journal " + path +
                                         " to resume from (the run finished, or use --force to "
                                         "start over)"));
    check_output_path(options.out, options.force);
    state.journal = std::make_unique<JournalWriter>(path, identity, options.commit);
  }
  JournalSession this_session = session;
  this_session.trials_before = static_cast<int64_t>(state.committed.size());
  state.journal->append_session(this_session);
  state.journal->commit();
  return state;
}

// The trial ids of `range` not in `committed` (ascending ids), ascending.
std::vector<int64_t> missing_trials(TrialRange range, const std::vector<TrialResult>& committed) {
  std::vector<int64_t> missing;  // (n_missing)
  auto done = committed.begin();
  for (int64_t id = range.first; id < range.last; ++id) {
    while (done != committed.end() && done->row.trial < id) ++done;
    if (done == committed.end() || done->row.trial != id) missing.push_back(id);
  }
  return missing;
}

// Sends rank 0's `ids` to every rank.
void broadcast_ids(MPI_Comm comm, std::vector<int64_t>& ids) {
  auto count = static_cast<int64_t>(ids.size());
  MPI_Bcast(&count, 1, MPI_INT64_T, 0, comm);
  ids.resize(static_cast<size_t>(count));
  MPI_Bcast(ids.data(), static_cast<int>(count), MPI_INT64_T, 0, comm);
}

}  // namespace

int run_sweep(MPI_Comm comm, const JobConfig& job, const RunOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // From here on SIGTERM, SIGINT and SIGUSR1 stop the sweep cleanly (stop.hpp).
  const StopSignals stop_signals;

  // Phase 1: inputs, output path and journal, agreed on by every rank before any work.
  Provenance provenance;
  provenance.started_utc = utc_now();
  provenance.hostnames = gather_hostnames(comm);
  const Grid grid = job_grid(job);
  const JournalIdentity identity{sha256_hex(job.text), grid.size(), options.shard_index,
                                 options.shard_count};
  const TrialRange range = shard_range(grid.size(), options.shard_index, options.shard_count);
  EvalSources sources;
  std::unique_ptr<OutputLock> lock;  // rank 0: held until the run ends
  ResumeState resume;
  std::vector<int64_t> to_run;  // trial ids still missing, ascending (every rank)
  const auto open_output = [&] {
    check_job_inputs(job);
    sources = read_eval_sources(job);
    if (rank != 0) return;
    const JournalSession session{provenance.started_utc, batch_job_id(), processor_name(), 0};
    lock = std::make_unique<OutputLock>(options.out, session.job_id);
    resume = open_journal(identity, options, session);
    to_run = missing_trials(range, resume.committed);
    for (const JournalSession& earlier : resume.earlier_sessions) {
      provenance.sessions.push_back(session_line(earlier));
    }
    provenance.sessions.push_back(session_line(
        {session.started_utc, session.job_id, session.host,
         static_cast<int64_t>(resume.committed.size())}));
  };
  try {
    run_collective_phase(comm, open_output);
  } catch (const PhaseFailure&) {
    if (resume.journal && !resume.resuming) {  // another rank failed: leave nothing behind
      resume.journal.reset();
      std::filesystem::remove(journal_path(options.out));
    }
    throw;
  }
  broadcast_ids(comm, to_run);
  const GemmInfo gemm = gemm_init(options.gemm);

  // Phase 2: trials. Each rank keeps one model session; trial ids are model-major and handed
  // out in increasing order, so a rank loads each model at most once.
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
  std::vector<TrialResult> results = std::move(resume.committed);  // rank 0: every row so far
  auto collect = [&](TrialResult result) {
    resume.journal->append(result);
    results.push_back(std::move(result));
  };
  bool stop_announced = false;
  auto stop_requested = [&] {
    if (stop_signals.requested() && !stop_announced) {
      stop_announced = true;
      std::fprintf(stderr, "[fracsweep] rank %d: %s: stopping after the trials in flight (send it "
                   "again to exit at once)\n",
                   rank, StopSignals::name(stop_signals.signal_number()));
    }
    return stop_announced;
  };

  const std::string schedule =
      options.schedule.dynamic
          ? "dynamic (chunk " +
                std::to_string(options.schedule.chunk > 0
                                   ? options.schedule.chunk
                                   : automatic_chunk(static_cast<int64_t>(to_run.size()), size)) +
                ")"
          : "static";
  if (rank == 0) {
    std::fprintf(stderr, "[fracsweep] job %s: %lld trials, %zu model(s), %d rank(s), %s schedule; "
                 "BLIS %s kernels=%s threads=%d\n",
                 job.name.c_str(), static_cast<long long>(grid.size()), job.models.size(), size,
                 schedule.c_str(), gemm.blis_version.c_str(), gemm.kernel_set.c_str(), gemm.threads);
    if (options.shard_count > 1 || resume.resuming) {
      std::fprintf(stderr, "[fracsweep] shard %lld/%lld: trials [%lld, %lld); %s%lld to run\n",
                   static_cast<long long>(options.shard_index),
                   static_cast<long long>(options.shard_count), static_cast<long long>(range.first),
                   static_cast<long long>(range.last),
                   resume.resuming ? ("resuming " + journal_path(options.out) + " with " +
                                      std::to_string(results.size()) + " trials done, ")
                                         .c_str()
                                   : "",
                   static_cast<long long>(to_run.size()));
    }
  }
  Progress progress(static_cast<int64_t>(to_run.size()), options.progress_interval_s, rank == 0);
  const bool complete = run_distributed(comm, to_run, options.schedule, run_trial, collect,
                                        stop_requested, progress);

  // Phase 3: rank 0 commits and writes the file, complete or partial (baselines of models it
  // never ran are computed here).
  const auto write_output = [&]() -> int {
    resume.journal->commit();
    close_session();
    for (size_t m = 0; m < job.models.size(); ++m) {
      if (!summarised[m]) summaries[m] = ModelSession(job, static_cast<int32_t>(m), sources).summary();
    }
    std::sort(results.begin(), results.end(),
              [](const TrialResult& a, const TrialResult& b) { return a.row.trial < b.row.trial; });
    ResultsContent content;
    content.job = &job;
    content.grid = &grid;
    content.models = std::move(summaries);
    if (sources.probes) content.probe_kinds = sources.probes->kinds;
    for (TrialResult& result : results) {
      if (!result.sites.empty()) content.sites.push_back({result.row.trial, std::move(result.sites)});
      content.rows.push_back(result.row);
    }
    provenance.software_version = software_version();
    provenance.git_commit = git_commit();
    provenance.command_line = options.command_line;
    provenance.job_sha256 = identity.job_sha256;
    provenance.schedule = schedule;
    provenance.mpi_size = size;
    provenance.blis_version = gemm.blis_version;
    provenance.blis_kernels = gemm.kernel_set;
    provenance.blis_kernels_selected_by = gemm.selected_by;
    provenance.blis_threads = gemm.threads;
    provenance.shard_index = options.shard_index;
    provenance.shard_count = options.shard_count;
    provenance.resume_count = static_cast<int32_t>(resume.earlier_sessions.size());
    provenance.finished_utc = utc_now();
    content.provenance = provenance;
    // The output is ours to replace: checked in phase 1, or a partial file of this journal.
    write_results(options.out, content, /*force=*/true);
    const auto n_range = range.last - range.first;
    if (!complete) {
      std::fprintf(stderr, "[fracsweep] stopped: %zu of %lld trials done and committed to %s; "
                   "partial results in %s; run the same command again to resume (exit code %d)\n",
                   content.rows.size(), static_cast<long long>(n_range),
                   journal_path(options.out).c_str(), options.out.c_str(), exit_incomplete);
      return exit_incomplete;
    }
    std::filesystem::remove(journal_path(options.out));
    std::fprintf(stderr, "[fracsweep] wrote %s (%zu trials)\n", options.out.c_str(), content.rows.size());
    print_summary(job, content.models, content.rows, stdout);
    std::fflush(stdout);
    return exit_ok;
  };
  const int exit_code = rank == 0 ? write_output() : complete ? exit_ok : exit_incomplete;
  // Every rank waits for the writer: under mpirun, a rank ending with a non-zero code gets the
  // whole job killed, rank 0 included, even while it writes the partial file.
  MPI_Barrier(comm);
  return exit_code;
}

}  // namespace fracsweep
