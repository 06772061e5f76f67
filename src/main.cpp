// fracsweep: measures how a model's behaviour changes as a growing fraction of its weights is
// perturbed. `main` only sets up MPI, dispatches the subcommand and maps errors to exit codes.
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/build_info.hpp"
#include "fracsweep/util/error.hpp"

namespace {

constexpr const char* usage_text =
    "fracsweep — weight-perturbation sweeps of neural networks\n"
    "\n"
    "usage:\n"
    "  fracsweep run JOB.ini [--out FILE.h5] [options]   run a sweep (under mpirun/srun for "
    "several ranks)\n"
    "  fracsweep merge --out FILE.h5 SHARD.h5 ...        combine the shard files of one sweep\n"
    "  fracsweep plan JOB.ini [options]                  grid size, trial count and rough cost\n"
    "  fracsweep inspect MODEL [--json]                  tensors, shapes and counts of a model "
    "file\n"
    "  fracsweep diff A B [--json]                       how checkpoint B differs from A, per "
    "tensor\n"
    "  fracsweep --help | --version\n"
    "\n"
    "`fracsweep COMMAND --help` lists a command's options. Exit codes: 0 done, 1 run failure,\n"
    "2 bad input (job file, model file, eval data or flags; nothing written), 75 stopped by\n"
    "SIGTERM/SIGINT/SIGUSR1: incomplete but resumable (run the same command again).\n";

// MPI_Init / MPI_Finalize for the process.
class MpiRuntime {
 public:
  MpiRuntime(int& argc, char**& argv) { MPI_Init(&argc, &argv); }
  ~MpiRuntime() { MPI_Finalize(); }
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
};

void report_error(int rank, int size, const char* message) {
  if (size > 1) {
    std::fprintf(stderr, "[rank %d] fracsweep: error: %s\n", rank, message);
  } else {
    std::fprintf(stderr, "fracsweep: error: %s\n", message);
  }
  std::fflush(stderr);
}

int dispatch(const std::vector<std::string>& args, MPI_Comm comm, int rank) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    if (rank == 0) std::fputs(usage_text, stdout);
    return args.empty() ? fracsweep::exit_bad_input : fracsweep::exit_ok;
  }
  if (args[0] == "--version") {
    if (rank == 0)
      std::printf("fracsweep %s (%s)\n", fracsweep::software_version(), fracsweep::git_commit());
    return fracsweep::exit_ok;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "run") return fracsweep::command_run(rest, comm);
  if (args[0] == "merge") return fracsweep::command_merge(rest, comm);
  if (args[0] == "plan") return fracsweep::command_plan(rest, comm);
  if (args[0] == "inspect") return fracsweep::command_inspect(rest, comm);
  if (args[0] == "diff") return fracsweep::command_diff(rest, comm);
  throw fracsweep::InputError("unknown command '" + args[0] +
                              "'; expected run, merge, plan or inspect (see fracsweep --help)");
}

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return dispatch(args, MPI_COMM_WORLD, rank);
  } catch (const fracsweep::PhaseFailure& e) {  // agreed by all ranks: exit together
    if (e.reported_here()) report_error(rank, size, e.what());
    return e.exit_code();
  } catch (const fracsweep::InputError& e) {
    report_error(rank, size, e.what());
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, fracsweep::exit_bad_input);  // others may be waiting
    return fracsweep::exit_bad_input;
  } catch (const std::exception& e) {
    report_error(rank, size, fracsweep::describe_exception(e).c_str());
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, fracsweep::exit_internal);
    return fracsweep::exit_internal;
  }
}
