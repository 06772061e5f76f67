#pragma once
// Rate-limited progress lines (done/total, trials/s, ETA), printed by rank 0 only. The rate and
// ETA count trials only: they are measured from the first completed trial on, so the load and
// baseline before it (tens of seconds for large models) do not make the first ETA wrong.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace fracsweep {

class Progress {
 public:
  // `enabled` is false on every rank but 0; `interval_s` <= 0 disables periodic lines.
  Progress(int64_t total, double interval_s, bool enabled, std::FILE* out = stderr);
  void update(int64_t done);  // prints when interval_s has passed since the last line
  void finish(int64_t done);  // final line (always, when enabled)
  // Work in rounds (adaptive searches): later `done` counts are within a round that starts
  // after `done_before` trials; `total` becomes the new total (for a search, a bound).
  void start_round(int64_t done_before, int64_t total);
  static std::string format_duration(double seconds);  // "1:02:03", "4:05"

 private:
  using Clock = std::chrono::steady_clock;
  void observe(int64_t done, Clock::time_point now);  // notes the first completed trial
  std::string line(int64_t done, Clock::time_point now) const;
  int64_t total_;
  int64_t round_offset_ = 0;  // trials done before the current round
  double interval_s_;
  bool enabled_;
  std::FILE* out_;
  Clock::time_point start_;
  Clock::time_point last_print_;
  // The first update with done > 0: where the trial rate is measured from.
  bool first_seen_ = false;
  int64_t first_done_ = 0;
  Clock::time_point first_time_;
};

}  // namespace fracsweep
