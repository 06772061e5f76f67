#pragma once
// Threads of one rank. BLIS's GEMMs and the OpenMP kernels of nn/ and eval/ use the same count,
// which gemm_init sets (GemmSetup::threads). Every parallel kernel splits its work into rows,
// heads or sequences whose results do not depend on how they are split, and any sum across them
// is taken in a fixed order afterwards: outputs are bitwise the same at every thread count.
#include <cstdint>

namespace fracsweep {

// Cores this process may run on: the size of its CPU affinity mask (mpirun --bind-to and Slurm's
// --cpus-per-task set it), not every core of the node. At least 1.
int affinity_cores();

// Threads the kernels' parallel regions use now (the last gemm_init's setup.threads).
int parallel_threads();

// Work, in floats read or written, below which a kernel stays on one thread: starting a parallel
// region costs microseconds, more than splitting less work saves (decoding one token, tiny
// models).
constexpr int64_t min_parallel_floats = int64_t{1} << 15;

// Whether `floats` of work is worth a parallel region (the `if` clause of the kernels' pragmas).
constexpr bool worth_threads(int64_t floats) {
  return floats >= min_parallel_floats;
}

}  // namespace fracsweep
