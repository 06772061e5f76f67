#pragma once
// The one place that calls BLIS: set-up (kernel set, the rank's threads) and the three GEMM forms
// the forward and backward passes need (C = A W^T, C = A B, C = A^T B), all row-major.
#include <cstdint>
#include <string>

namespace fracsweep {

// Which BLIS kernel set to use. `automatic` picks `skx` (AVX-512) when the CPU has AVX-512F
// and this BLIS build contains it, otherwise what BLIS dispatches by itself; a BLIS_ARCH_TYPE
// already in the environment always wins. Must be decided before the first BLIS call.
enum class BlisKernels { automatic, native, skx, haswell, zen3 };

struct GemmSetup {
  BlisKernels kernels = BlisKernels::automatic;
  // Threads per rank, for BLIS and for the OpenMP kernels of nn/ and eval/ alike (threads.hpp).
  int threads = 1;
};

// What BLIS ended up using, for provenance.
struct GemmInfo {
  std::string blis_version;  // e.g. "0.9.0"
  std::string kernel_set;    // BLIS's name of the active configuration, e.g. "skx"
  std::string selected_by;   // "auto (avx512f)", "BLIS_ARCH_TYPE from environment", ...
  int threads = 1;
  // Non-empty when the kernel set is BLIS's unoptimised `generic` one on a CPU that could run
  // optimised kernels: what was selected, what the CPU supports, and the flag that fixes it.
  std::string warning;
};

// Configures BLIS once per process (idempotent when called again with the same setup) and sets
// the OpenMP thread count of the calling thread's parallel regions to setup.threads.
GemmInfo gemm_init(const GemmSetup& setup);
GemmInfo gemm_info();
BlisKernels parse_blis_kernels(const std::string& text);  // throws InputError

// Rows of A up to which matmul_nt_decoding computes C row by row as matrix-vector products
// (BLIS's bli_sgemv, which reads W where it lies) instead of one bli_sgemm (which packs all of W
// on every call: BLIS 0.9's skx kernels have no small-m path, and decoding one token is m = 1).
// Measured on the projections of the 110M and 1.1B Llamas (BLIS 0.9, AVX-512 AMD EPYC, 1
// thread): with skx kernels the row path takes 0.10-0.20 of sgemm's time at m = 1, 0.18-0.31
// at m = 4, and breaks even between m = 16 and 32; with haswell kernels 0.55-0.96 at m = 1 and
// 0.9-1.1 at m = 4. Both kernel sets use the same (AVX2) sgemv kernels.
constexpr int64_t gemv_max_rows = 4;

// C (m x n) = A (m x k, row stride lda) * W^T, with W (n x k, row stride ldw) row-major;
// C row stride ldc. beta = 0 overwrites C, beta = 1 accumulates. A row of C does not depend on
// m: a batch computed in chunks gives the same bits.
void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w,
               int64_t ldw, float* c, int64_t ldc, float beta = 0.0f);

// matmul_nt for incremental decoding, whose rows are verified by a batched pass (evaluator.hpp):
// for m <= gemv_max_rows each row of C is computed on its own by matrix-vector products over
// fixed blocks of W's rows shared out among the rank's threads (a row does not depend on m nor
// on the thread count), otherwise it is matmul_nt. Those rows round differently from
// matmul_nt's, so the batched passes never use it.
void matmul_nt_decoding(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* w, int64_t ldw, float* c, int64_t ldc, float beta = 0.0f);

// C (m x n) = A (m x k, row stride lda) * B (k x n, row stride ldb); C row stride ldc.
// The backward pass of y = x W^T for the input: dx = dy W.
void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta = 0.0f);

// C (m x n) = A^T * B, with A (k x m, row stride lda) and B (k x n, row stride ldb); C row
// stride ldc. The backward pass of y = x W^T for the weights: dW = dy^T x (k = tokens).
void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta = 0.0f);

}  // namespace fracsweep
