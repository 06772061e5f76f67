#include "fracsweep/par/stop.hpp"

#include <unistd.h>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr int handled_signals[3] = {SIGTERM, SIGINT, SIGUSR1};

// A signal handler can only reach file-scope state; it is written by the handler alone and
// read by StopSignals. Counts signals received while handlers are installed.
volatile std::sig_atomic_t signals_received = 0;
volatile std::sig_atomic_t first_signal = 0;

extern "C" void on_stop_signal(int signal_number) {
  if (signals_received == 0) first_signal = signal_number;
  signals_received = signals_received + 1;
  if (signals_received >= 2) {
    constexpr char message[] =
        "fracsweep: second signal: exiting now; committed trials are kept in the journal\n";
    const ssize_t ignored = ::write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    ::_exit(exit_incomplete);
  }
}

}  // namespace

StopSignals::StopSignals() {
  signals_received = 0;
  first_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);  // handled one at a time: the count is never torn
  for (const int signal_number : handled_signals) sigaddset(&action.sa_mask, signal_number);
  action.sa_flags = SA_RESTART;  // MPI and file calls continue; the flag is polled
  for (int i = 0; i < 3; ++i) {
    check_invariant(::sigaction(handled_signals[i], &action, &previous_[i]) == 0,
                    "cannot install the signal handlers");
  }
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) ::sigaction(handled_signals[i], &previous_[i], nullptr);
}

bool StopSignals::requested() const {
  return signals_received > 0;
}

int StopSignals::signal_number() const {
  return first_signal;
}

const char* StopSignals::name(int signal_number) {
  switch (signal_number) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGUSR1:
      return "SIGUSR1";
    default:
      return "signal";
  }
}

}  // namespace fracsweep
