#include "commands.hpp"
#include "fracsweep/error.hpp"
#include "fracsweep/job.hpp"
#include "fracsweep/sched.hpp"
#include "fracsweep/sweep.hpp"

namespace po = boost::program_options;

namespace fracsweep {

int command_run(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("out,o", po::value<std::string>(), "results file (default: <job name>.h5 in the current directory)")
      ("force", "overwrite an existing results file")
      ("schedule", po::value<std::string>()->default_value("dynamic"),
       "dynamic: ranks grab chunks of trials from a shared counter; static: one contiguous block per rank")
      ("chunk", po::value<int64_t>()->default_value(0),
       "trials per grab in dynamic scheduling (0: automatic)")
      ("progress-interval", po::value<double>()->default_value(2.0),
       "seconds between progress lines on rank 0 (0: final line only)")
      ("blis-kernels", po::value<std::string>()->default_value("auto"),
       "BLIS kernel set: auto (skx where the CPU has AVX-512, else BLIS's choice), native (BLIS's "
       "own choice), skx, haswell, zen3; a BLIS_ARCH_TYPE environment variable overrides")
      ("blis-threads", po::value<int>()->default_value(1), "BLIS threads per rank");
  // Flags and job file are checked on every rank and agreed on, so bad input exits cleanly.
  bool help = false;
  RunOptions run;
  JobConfig job;
  run_collective_phase(comm, [&] {
    const auto vm = parse_command_line("run", args, options, {"job"},
                                       "usage: fracsweep run JOB.ini [--out FILE.h5] [options]", help,
                                       rank);
    if (help) return;
    run.force = vm.count("force") > 0;
    const std::string schedule = vm["schedule"].as<std::string>();
    check_input(schedule == "dynamic" || schedule == "static",
                "fracsweep run: --schedule must be dynamic or static, found '" + schedule + "'");
    run.schedule.dynamic = schedule == "dynamic";
    run.schedule.chunk = vm["chunk"].as<int64_t>();
    check_input(run.schedule.chunk >= 0, "fracsweep run: --chunk must be >= 0");
    run.progress_interval_s = vm["progress-interval"].as<double>();
    check_input(run.progress_interval_s >= 0, "fracsweep run: --progress-interval must be >= 0");
    run.gemm.kernels = parse_blis_kernels(vm["blis-kernels"].as<std::string>());
    run.gemm.threads = vm["blis-threads"].as<int>();
    check_input(run.gemm.threads >= 1 && run.gemm.threads <= 256,
                "fracsweep run: --blis-threads must be in 1..256");
    run.command_line = "fracsweep run";
    for (const std::string& arg : args) run.command_line += " " + arg;
    job = parse_job_file(vm["job"].as<std::string>());
    run.out = vm.count("out") ? vm["out"].as<std::string>() : job.name + ".h5";
  });
  if (help) return exit_ok;
  return run_sweep(comm, job, run);
}

}  // namespace fracsweep
