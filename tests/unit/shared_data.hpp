#pragma once
// Access to ../shared (real models, data, reference fixtures) from unit tests.
// Absent on a user's fresh clone: tests that need it are skipped with a message. Under CI
// (CI=true) its absence is a failure, never a silent skip.
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fracsweep::test {

inline std::string shared_root() {
  const char* env = std::getenv("FRACSWEEP_SHARED");
  return env ? env : "../shared";
}

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// The repository's root (jobs/, the built-in default model): FRACSWEEP_SOURCE_DIR, which ctest
// sets, else three levels above this header.
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("FRACSWEEP_SOURCE_DIR");
  return env ? std::filesystem::path(env)
             : std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

// Path of `relative` under the shared root; fails the test when it does not exist.
inline std::string shared_file(const std::string& relative) {
  std::string path = shared_root() + "/" + relative;
  BOOST_TEST_REQUIRE(std::filesystem::exists(path),
                     "shared fixture missing: " << path << " (set FRACSWEEP_SHARED)");
  return path;
}

// Precondition decorator: skip when ../shared is absent, except under CI where the test runs
// and fails on the first missing file.
struct needs_shared {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    if (std::filesystem::exists(shared_root() + "/fixtures/stories260K/expected.json")) {
      return true;
    }
    if (under_ci()) return true;  // run and fail loudly
    boost::test_tools::assertion_result skip(false);
    skip.message() << "skipped: shared data not found at " << shared_root()
                   << " (set FRACSWEEP_SHARED to the directory holding models/ and fixtures/)";
    return skip;
  }
};

}  // namespace fracsweep::test
