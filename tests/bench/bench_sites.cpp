// Site-choice benchmark: times permutation_prefix (rng.hpp), the sites of one random trial as
// in-scope indices, for k sites of an n-parameter scope, and reports the peak resident memory it
// added beyond its k-entry result. No model is allocated. Threads: OMP_NUM_THREADS.
//
//   fracsweep_bench_sites N K [runs=1]
//
// e.g. N = 130000000 K = N (every parameter of a 110M-class model) or N = 1100000000
// K = 11000000 (f = 1e-2 of a 1.1B model). Prints wall and process CPU seconds per run (the
// first run's peak memory growth), and a checksum of the sites, which must not change with the
// thread count. Written against the permutation_prefix signature alone, so the same file builds
// against an older rng.cpp to compare recipes.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <string>
#include <vector>

#include "fracsweep/perturb/rng.hpp"

namespace {

double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Order-sensitive FNV-1a 64 over the entries: equal sites in equal order give equal sums.
uint64_t checksum(const std::vector<int64_t>& sites) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (int64_t site : sites) {
    hash ^= static_cast<uint64_t>(site);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3 || argc > 4) {
      std::fprintf(stderr, "usage: fracsweep_bench_sites N K [runs=1]\n");
      return 2;
    }
    const int64_t n = std::stoll(argv[1]);
    const int64_t k = std::stoll(argv[2]);
    const int runs = argc > 3 ? std::stoi(argv[3]) : 1;
    if (n < 1 || k < 0 || k > n || runs < 1) {
      std::fprintf(stderr, "fracsweep_bench_sites: need N >= 1, 0 <= K <= N, runs >= 1\n");
      return 2;
    }
    const char* threads = std::getenv("OMP_NUM_THREADS");
    const fracsweep::KeyedRng rng(fracsweep::key_from_text("fracsweep-bench-sites"));
    const double result_mb = static_cast<double>(k) * sizeof(int64_t) / (1024.0 * 1024.0);
    std::printf("n %lld  k %lld  OMP_NUM_THREADS %s  result %.0f MB\n", static_cast<long long>(n),
                static_cast<long long>(k), threads ? threads : "(unset)", result_mb);
    for (int run = 0; run < runs; ++run) {
      const double rss_before = peak_rss_mb();
      const double cpu_start = cpu_seconds();
      const auto wall_start = std::chrono::steady_clock::now();
      const std::vector<int64_t> sites = fracsweep::permutation_prefix(rng, n, k, 0);  // (k)
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
      const double cpu = cpu_seconds() - cpu_start;
      const double rss_after = peak_rss_mb();
      std::printf("run %d  wall %.2f s  cpu %.2f s  checksum %016llx", run, wall, cpu,
                  static_cast<unsigned long long>(checksum(sites)));
      if (run == 0) {  // later runs reuse the freed pages: the peak no longer moves
        std::printf("  peak RSS %.0f -> %.0f MB (+%.0f MB beyond the result)", rss_before,
                    rss_after, rss_after - rss_before - result_mb);
      }
      std::printf("\n");
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fracsweep_bench_sites: %s\n", error.what());
    return 2;
  }
}
