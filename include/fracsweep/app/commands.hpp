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

}  // namespace fracsweep
