#include "fracsweep/par/progress.hpp"

#include <cmath>

namespace fracsweep {

Progress::Progress(int64_t total, double interval_s, bool enabled, std::FILE* out)
    : total_(total),
      interval_s_(interval_s),
      enabled_(enabled),
      out_(out),
      start_(Clock::now()),
      last_print_(start_) {}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld", s / 60, s % 60);
  }
  return buffer;
}

void Progress::observe(int64_t done, Clock::time_point now) {
  if (first_seen_ || done <= 0) return;
  first_seen_ = true;
  first_done_ = done;
  first_time_ = now;
}

std::string Progress::line(int64_t done, Clock::time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // Trials per second since the first completed trial; unknown until a later one arrives.
  const double trial_time =
      first_seen_ ? std::chrono::duration<double>(now - first_time_).count() : 0.0;
  const double rate = trial_time > 0 && done > first_done_
                          ? static_cast<double>(done - first_done_) / trial_time
                          : 0.0;
  const double eta = done >= total_ ? 0.0
                     : rate > 0     ? static_cast<double>(total_ - done) / rate
                                    : NAN;
  const double percent =
      total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0;
  char buffer[160];
  std::snprintf(buffer, sizeof buffer,
                "[fracsweep] %lld/%lld trials (%.1f%%)  %.2f trials/s  elapsed %s  ETA %s",
                static_cast<long long>(done), static_cast<long long>(total_), percent, rate,
                format_duration(elapsed).c_str(), format_duration(eta).c_str());
  return buffer;
}

void Progress::start_round(int64_t done_before, int64_t total) {
  round_offset_ = done_before;
  total_ = total;
}

void Progress::update(int64_t done_in_round) {
  if (!enabled_) return;
  const int64_t done = round_offset_ + done_in_round;
  const auto now = Clock::now();
  observe(done, now);
  if (interval_s_ <= 0) return;
  if (std::chrono::duration<double>(now - last_print_).count() < interval_s_) return;
  last_print_ = now;
  std::fprintf(out_, "%s\n", line(done, now).c_str());
  std::fflush(out_);
}

void Progress::finish(int64_t done_in_round) {
  if (!enabled_) return;
  const int64_t done = round_offset_ + done_in_round;
  const auto now = Clock::now();
  observe(done, now);
  std::fprintf(out_, "%s\n", line(done, now).c_str());
  std::fflush(out_);
}

}  // namespace fracsweep
