#include <cstdlib>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/app/sweep.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

// "I/N" with 0 <= I < N into run.shard_index / run.shard_count.
void parse_shard(const std::string& text, RunOptions& run) {
  const std::string message =
      "fracsweep run: --shard must be I/N with 0 <= I < N (0-based), found '" + text + "'";
  const size_t slash = text.find('/');
  check_input(slash != std::string::npos && slash > 0 && slash + 1 < text.size() &&
                  text.find_first_not_of("0123456789/") == std::string::npos &&
                  text.find('/', slash + 1) == std::string::npos && text.size() < 20,
              message);
  run.shard_index = std::stoll(text.substr(0, slash));
  run.shard_count = std::stoll(text.substr(slash + 1));
  check_input(run.shard_count >= 1 && run.shard_index < run.shard_count, message);
}

}  // namespace

int command_run(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int default_threads = default_threads_per_rank(comm);  // collective: before any check
  po::options_description options("options");
  options.add_options()("help,h", "show this help")(
      "out,o", po::value<std::string>(),
      "results file (default: <job name>.h5 in the current directory)")(
      "no-file-locking",
      "do not lock HDF5 files (file systems without locking: Lustre, NFS); "
      "the same as HDF5_USE_FILE_LOCKING=FALSE in the environment")(
      "force", "overwrite an existing results file and discard its journal")(
      "resume",
      "continue an interrupted run from <out>.journal (also automatic when the "
      "journal exists); refuses a changed job unless --force")(
      "commit-every", po::value<int64_t>()->default_value(16),
      "make completed trials durable (journal write + fsync) after this many trials ...")(
      "commit-interval", po::value<double>()->default_value(5.0),
      "... or after this many seconds, whichever comes first")(
      "shard", po::value<std::string>(),
      "I/N: run only shard I (0-based) of N disjoint consecutive parts of the grid "
      "(Slurm job arrays; combine the files with fracsweep merge)")(
      "schedule", po::value<std::string>()->default_value("dynamic"),
      "dynamic: ranks grab chunks of trials from a shared counter; static: one contiguous block "
      "per rank")("chunk", po::value<int64_t>()->default_value(0),
                  "trials per grab in dynamic scheduling (0: automatic)")(
      "progress-interval", po::value<double>()->default_value(2.0),
      "seconds between progress lines on rank 0 (0: final line only)")(
      "blis-kernels", po::value<std::string>()->default_value("auto"),
      "BLIS kernel set: auto (skx where the CPU has AVX-512, else BLIS's choice), native (BLIS's "
      "own choice), skx, haswell, zen3; a BLIS_ARCH_TYPE environment variable overrides")(
      "share-weights", po::value<std::string>()->default_value("auto"),
      "auto: ranks on one node share one copy of the unperturbed weights; off: one per rank");
  add_threads_option(options);
  // Flags and job file are checked on every rank and agreed on, so bad input exits cleanly.
  bool help = false;
  RunOptions run;
  JobConfig job;
  run_collective_phase(comm, [&] {
    const auto vm = parse_command_line(
        "run", args, options, {"job"},
        "usage: fracsweep run JOB.ini [--out FILE.h5] [options]\n\nexit codes: 0 done; 2 bad "
        "input; 75 stopped by a signal (SIGTERM, SIGINT, SIGUSR1):\nincomplete but resumable, a "
        "partial file and <out>.journal are kept; 1 anything else",
        help, rank);
    if (help) return;
    run.force = vm.count("force") > 0;
    if (vm.count("no-file-locking")) ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    run.resume = vm.count("resume") > 0;
    run.commit.every_trials = vm["commit-every"].as<int64_t>();
    check_input(run.commit.every_trials >= 1, "fracsweep run: --commit-every must be >= 1");
    run.commit.every_seconds = vm["commit-interval"].as<double>();
    check_input(run.commit.every_seconds >= 0, "fracsweep run: --commit-interval must be >= 0");
    if (vm.count("shard")) parse_shard(vm["shard"].as<std::string>(), run);
    const std::string schedule = vm["schedule"].as<std::string>();
    check_input(schedule == "dynamic" || schedule == "static",
                "fracsweep run: --schedule must be dynamic or static, found '" + schedule + "'");
    run.schedule.dynamic = schedule == "dynamic";
    run.schedule.chunk = vm["chunk"].as<int64_t>();
    check_input(run.schedule.chunk >= 0, "fracsweep run: --chunk must be >= 0");
    run.progress_interval_s = vm["progress-interval"].as<double>();
    check_input(run.progress_interval_s >= 0, "fracsweep run: --progress-interval must be >= 0");
    run.gemm.kernels = parse_blis_kernels(vm["blis-kernels"].as<std::string>());
    run.gemm.threads = threads_from(vm, "run", default_threads);
    const std::string share = vm["share-weights"].as<std::string>();
    check_input(share == "auto" || share == "off",
                "fracsweep run: --share-weights must be auto or off, found '" + share + "'");
    run.share_weights = share == "off" ? ShareWeights::off : ShareWeights::automatic;
    run.command_line = "fracsweep run";
    for (const std::string& arg : args) run.command_line += " " + arg;
    job = parse_job_file(vm["job"].as<std::string>());
    run.out = vm.count("out") ? vm["out"].as<std::string>() : job.name + ".h5";
  });
  if (help) return exit_ok;
  return run_sweep(comm, job, run);
}

}  // namespace fracsweep
