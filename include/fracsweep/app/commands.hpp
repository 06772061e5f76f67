#pragma once
// The `fracsweep` subcommands. Each parses its own flags (Boost.Program_options) and returns the
// process exit code; errors are thrown (InputError for bad flags or files) and caught in main.
#include <mpi.h>

#include <string>
#include <vector>

namespace fracsweep {

int command_run(const std::vector<std::string>& args, MPI_Comm comm);
int command_plan(const std::vector<std::string>& args, MPI_Comm comm);
int command_inspect(const std::vector<std::string>& args, MPI_Comm comm);
int command_merge(const std::vector<std::string>& args, MPI_Comm comm);
int command_diff(const std::vector<std::string>& args, MPI_Comm comm);

}  // namespace fracsweep

#include <boost/program_options.hpp>

#include "fracsweep/nn/gemm.hpp"

namespace fracsweep {

// Parses `args` against `options` plus positional arguments named in `positional` (in order,
// one value each; with `last_repeats`, the last takes every remaining argument as a
// std::vector<std::string>). Boost's errors become InputError naming `command` and the flag.
// When --help is given, prints usage (rank 0) and returns true in `help`.
boost::program_options::variables_map parse_command_line(
    const std::string& command, const std::vector<std::string>& args,
    const boost::program_options::options_description& options,
    const std::vector<std::string>& positional, const std::string& usage, bool& help, int rank,
    bool last_repeats = false);

// --threads of `run` and `plan`: threads per rank, for BLIS and the OpenMP kernels alike.
// Adds the option to `options`; threads_from reads it (or returns `default_threads`) and checks
// it, naming `command` in the error.
void add_threads_option(boost::program_options::options_description& options);
int threads_from(const boost::program_options::variables_map& vm, const std::string& command,
                 int default_threads);
// The default of --threads under `comm` (collective): the cores of this rank's CPU affinity mask
// (threads.hpp), divided by the ranks of this node whose masks overlap it (unbound ranks see
// every core of the node: dividing keeps them from oversubscribing it). At least 1.
int default_threads_per_rank(MPI_Comm comm);

// Rank 0's warnings about the compute set-up, once, on stderr: BLIS running its generic kernels
// on a CPU that has better ones, and more threads than this process has cores (threads then
// share cores, and OpenMP threads spinning at barriers slow everything down).
void warn_about_compute(const GemmInfo& gemm);

}  // namespace fracsweep
