// Replays fuzz inputs through a target's LLVMFuzzerTestOneInput without libFuzzer, so every
// build (gcc or clang, with or without sanitizers) runs the regression corpus in
// tests/fuzz_regressions/<target>/. Arguments: files or directories of inputs. An input fails
// when it crashes, throws anything but InputError (the target lets it escape), or runs longer
// than the stated bound; outside ASan builds the address space is capped so an input that makes
// a reader allocate gigabytes fails with bad_alloc instead of exhausting the machine.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr double max_seconds_per_input = 10.0;           // the fixed readers take milliseconds
constexpr rlim_t address_space_limit = rlim_t{3} << 30;  // 3 GiB

#if defined(__SANITIZE_ADDRESS__)
constexpr bool under_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool under_asan = true;
#else
constexpr bool under_asan = false;
#endif
#else
constexpr bool under_asan = false;
#endif

// Runs one input; true when it passes.
bool replay(const std::filesystem::path& input) {
  std::ifstream in(input, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());  // (file)
  const auto start = std::chrono::steady_clock::now();
  try {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  } catch (const std::exception& error) {
    std::printf("FAIL %s: escaped exception: %s\n", input.c_str(), error.what());
    return false;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (seconds > max_seconds_per_input) {
    std::printf("FAIL %s: took %.1f s (bound %.0f s)\n", input.c_str(), seconds,
                max_seconds_per_input);
    return false;
  }
  std::printf("ok   %s (%.3f s)\n", input.c_str(), seconds);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (!under_asan) {
    const rlimit limit{address_space_limit, address_space_limit};
    setrlimit(RLIMIT_AS, &limit);
  }
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path argument(argv[i]);
    if (std::filesystem::is_directory(argument)) {
      for (const auto& entry : std::filesystem::directory_iterator(argument))
        inputs.push_back(entry.path());
    } else {
      inputs.push_back(argument);
    }
  }
  if (inputs.empty()) {
    std::printf("no inputs given\n");
    return 1;
  }
  int failures = 0;
  for (const auto& input : inputs) failures += replay(input) ? 0 : 1;
  std::printf("%zu inputs, %d failed\n", inputs.size(), failures);
  return failures == 0 ? 0 : 1;
}
