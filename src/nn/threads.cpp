#include "fracsweep/nn/threads.hpp"

#include <omp.h>
#include <sched.h>

namespace fracsweep {

int affinity_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return 1;  // unknown: the safe choice
  const int cores = CPU_COUNT(&mask);
  return cores >= 1 ? cores : 1;
}

int parallel_threads() {
  return omp_get_max_threads();
}

}  // namespace fracsweep
