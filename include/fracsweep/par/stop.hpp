#pragma once
// Stopping a sweep on a signal without losing finished work. While a StopSignals object is
// alive, SIGTERM, SIGINT and SIGUSR1 only set a flag: the sweep stops handing out trials,
// commits what finished and writes a partial results file, then exits with exit_incomplete.
// A second signal exits at once with the same code (committed journal records stay intact;
// an interrupted commit is a torn tail that the next run discards).
#include <csignal>

#include "fracsweep/util/error.hpp"  // exit_incomplete

namespace fracsweep {

class StopSignals {
 public:
  StopSignals();   // installs the handlers (one instance at a time)
  ~StopSignals();  // restores the previous handlers
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  bool requested() const;                      // a signal has arrived
  int signal_number() const;                   // the first one (0 while none)
  static const char* name(int signal_number);  // "SIGTERM", ...

 private:
  struct sigaction previous_[3];
};

}  // namespace fracsweep
