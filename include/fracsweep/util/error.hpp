#pragma once
// Error types and always-on checks. Errors are thrown at the edges with what/where/expected/
// actual; `main` catches once, prints with the rank, and maps the type to an exit code.
#include <stdexcept>
#include <string>

namespace fracsweep {

enum ExitCode : int {
  exit_ok = 0,
  exit_internal = 1,    // a bug or an environment failure (I/O error while writing, MPI failure)
  exit_bad_input = 2,   // job file, model file, eval data or flags are wrong; nothing was written
  exit_incomplete = 75, // stopped by a signal: partial results + journal, resumable (EX_TEMPFAIL)
};

// Bad user input: job files, model files, evaluation data, command-line flags.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Everything else that stops a run (failed writes, broken invariants).
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws InputError(message) unless `condition`; always on, also in release builds.
void check_input(bool condition, const std::string& message);

// Throws RunError(message) unless `condition`; for invariants that must hold.
void check_invariant(bool condition, const std::string& message);

// "file: message" helper so every message names its file first.
std::string in_file(const std::string& path, const std::string& message);

}  // namespace fracsweep
