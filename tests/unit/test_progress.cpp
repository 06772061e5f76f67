#define BOOST_TEST_MODULE progress
// Progress lines: done/total, a trial rate and an ETA measured from the first completed trial,
// so a long load before it does not inflate the ETA.
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "fracsweep/par/progress.hpp"

using fracsweep::Progress;

namespace {

// The text written to a temporary FILE*.
struct CapturedFile {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file{std::tmpfile(), &std::fclose};
  std::string text() const {
    std::fflush(file.get());
    std::rewind(file.get());
    std::string out;
    for (int c = std::fgetc(file.get()); c != EOF; c = std::fgetc(file.get()))
      out.push_back(static_cast<char>(c));
    return out;
  }
};

// The trial rate printed in `line` ("... 12.50 trials/s ...").
double rate_in(const std::string& line) {
  const size_t end = line.find(" trials/s");
  BOOST_TEST_REQUIRE(end != std::string::npos, line);
  const size_t begin = line.rfind(' ', end - 1) + 1;
  return std::stod(line.substr(begin, end - begin));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(progress)

BOOST_AUTO_TEST_CASE(rate_and_eta_count_trials_not_the_load) {
  CapturedFile out;
  Progress progress(100, /*interval_s=*/0, /*enabled=*/true, out.file.get());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // load + baseline
  progress.update(1);                                            // the first trial
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  progress.finish(3);  // two more trials in ~20 ms
  const std::string text = out.text();
  BOOST_TEST_INFO("output: " << text);
  BOOST_TEST(text.find("[fracsweep] 3/100 trials (3.0%)") == 0);
  // Two trials in ~0.02 s: ~100 trials/s (at least 5 even on a loaded machine); counting the
  // load would give at most 3 / 1.02 s = 2.9.
  BOOST_TEST(rate_in(text) > 5.0);
}

BOOST_AUTO_TEST_CASE(no_rate_before_a_second_trial_and_only_rank_0_prints) {
  CapturedFile out;
  Progress progress(10, 0, true, out.file.get());
  progress.finish(1);
  BOOST_TEST(out.text().find("0.00 trials/s") != std::string::npos);
  BOOST_TEST(out.text().find("ETA ?") != std::string::npos);
  CapturedFile silent;
  Progress other_rank(10, 0, false, silent.file.get());
  other_rank.update(5);
  other_rank.finish(10);
  BOOST_TEST(silent.text().empty());
}

BOOST_AUTO_TEST_CASE(durations) {
  BOOST_TEST(Progress::format_duration(65) == "1:05");
  BOOST_TEST(Progress::format_duration(3723) == "1:02:03");
  BOOST_TEST(Progress::format_duration(-1) == "?");
}

BOOST_AUTO_TEST_SUITE_END()
