#pragma once
// Error types and always-on checks. Errors are thrown at the edges with what/where/expected/
// actual; `main` catches once, prints with the rank, and maps the type to an exit code.
#include <stdexcept>
#include <string>
#include <type_traits>

namespace fracsweep {

enum ExitCode : int {
  exit_ok = 0,
  exit_internal = 1,     // a bug or an environment failure (I/O error while writing, MPI failure)
  exit_bad_input = 2,    // job file, model file, eval data or flags are wrong; nothing was written
  exit_incomplete = 75,  // stopped by a signal: partial results + journal, resumable (EX_TEMPFAIL)
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

[[noreturn]] void throw_input_error(const std::string& message);
[[noreturn]] void throw_invariant_error(
    const std::string& message);  // RunError("internal error: ...")

// Throws InputError(message) unless `condition`; always on, also in release builds.
inline void check_input(bool condition, const std::string& message) {
  if (!condition) [[unlikely]]
    throw_input_error(message);
}
// A literal message costs nothing when the check passes.
inline void check_input(bool condition, const char* message) {
  if (!condition) [[unlikely]]
    throw_input_error(message);
}
// For checks on hot paths (per site, per MPI call): `make_message()` returns the message and
// runs only when the check fails, e.g. check_input(ok, [&] { return where + ": ..."; }).
template <typename MessageMaker>
requires std::is_invocable_r_v<std::string, MessageMaker&>
inline void check_input(bool condition, MessageMaker&& make_message) {
  if (!condition) [[unlikely]]
    throw_input_error(make_message());
}

// Throws RunError("internal error: " + message) unless `condition`; for invariants that must
// hold. The same three forms as check_input.
inline void check_invariant(bool condition, const std::string& message) {
  if (!condition) [[unlikely]]
    throw_invariant_error(message);
}
inline void check_invariant(bool condition, const char* message) {
  if (!condition) [[unlikely]]
    throw_invariant_error(message);
}
template <typename MessageMaker>
requires std::is_invocable_r_v<std::string, MessageMaker&>
inline void check_invariant(bool condition, MessageMaker&& make_message) {
  if (!condition) [[unlikely]]
    throw_invariant_error(make_message());
}

// "file: message" helper so every message names its file first.
std::string in_file(const std::string& path, const std::string& message);

// What to print for an exception that is not an InputError: its text, and for std::bad_alloc an
// explanation instead of the bare "std::bad_alloc".
std::string describe_exception(const std::exception& error);

}  // namespace fracsweep
