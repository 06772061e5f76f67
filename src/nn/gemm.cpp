// The one place that calls BLIS (see gemm.hpp). BLIS keeps its configuration per process:
// the kernel set is fixed by the first BLIS call, so gemm_init records what it chose in one
// process-wide record and refuses to change the kernel set afterwards.
#include "fracsweep/nn/gemm.hpp"

#include <blis.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>

#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

// What gemm_init decided for this process; empty until the first call.
struct GemmState {
  std::mutex mutex;
  std::optional<GemmSetup> setup;  // the setup gemm_init was first called with
  GemmInfo info;
};

GemmState& gemm_state() {
  static GemmState state;
  return state;
}

const char* kernels_name(BlisKernels kernels) {
  switch (kernels) {
    case BlisKernels::automatic:
      return "auto";
    case BlisKernels::native:
      return "native";
    case BlisKernels::skx:
      return "skx";
    case BlisKernels::haswell:
      return "haswell";
    case BlisKernels::zen3:
      return "zen3";
  }
  return "?";
}

// Whether this BLIS build contains the skx configuration (the x86_64 family builds do).
#ifdef BLIS_CONFIG_SKX
constexpr bool blis_has_skx = true;
#else
constexpr bool blis_has_skx = false;
#endif

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

bool cpu_has_avx2_fma() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// BLIS's arch_t id of a forced kernel set, after checking that this CPU can run it. BLIS 0.9's
// skx kernels need AVX-512F/DQ/BW/VL; its zen3 and haswell kernels need AVX2 and FMA.
arch_t forced_arch(BlisKernels kernels) {
  const bool needs_avx512 = kernels == BlisKernels::skx;
  check_input(!needs_avx512 || blis_has_skx,
              "BLIS kernels 'skx': this BLIS build does not contain them; use 'auto'");
  const bool supported = needs_avx512 ? cpu_has_avx512() : cpu_has_avx2_fma();
  if (!supported) {
    throw InputError(std::string("BLIS kernels '") + kernels_name(kernels) + "': this CPU lacks " +
                     (needs_avx512 ? "AVX-512 (F/DQ/BW/VL)" : "AVX2/FMA") +
                     "; use 'auto' or 'native'");
  }
  switch (kernels) {
    case BlisKernels::skx:
      return BLIS_ARCH_SKX;
    case BlisKernels::zen3:
      return BLIS_ARCH_ZEN3;
    default:
      return BLIS_ARCH_HASWELL;
  }
}

// The kernel set gemm_init asks BLIS for: `arch` empty leaves BLIS's own choice.
struct KernelChoice {
  std::optional<arch_t> arch;
  std::string reason;  // GemmInfo::selected_by
};

// A BLIS_ARCH_TYPE set by the user wins, but it must name a BLIS configuration (BLIS aborts
// otherwise) and must not select AVX-512 kernels on a CPU without AVX-512 (BLIS would die of
// an illegal instruction later). BLIS reads it with atoi, as here.
KernelChoice kernels_from_environment(const char* value) {
  const int id = std::atoi(value);
  check_input(id >= 0 && id < BLIS_NUM_ARCHS, std::string("BLIS_ARCH_TYPE=") + value +
                                                  " is not a BLIS configuration id (0 to " +
                                                  std::to_string(BLIS_NUM_ARCHS - 1) + ")");
  const bool avx512_kernels = id == BLIS_ARCH_SKX || id == BLIS_ARCH_KNL;
  check_input(!avx512_kernels || cpu_has_avx512(),
              std::string("BLIS_ARCH_TYPE=") + value +
                  " selects AVX-512 kernels but this CPU lacks AVX-512; unset it");
  return {std::nullopt, "BLIS_ARCH_TYPE from environment"};
}

KernelChoice choose_kernels(BlisKernels kernels) {
  if (const char* value = std::getenv("BLIS_ARCH_TYPE")) return kernels_from_environment(value);
  switch (kernels) {
    case BlisKernels::native:
      return {std::nullopt, "native (BLIS's own dispatch)"};
    case BlisKernels::automatic:
      if (!blis_has_skx) return {std::nullopt, "auto (BLIS built without skx: own dispatch)"};
      if (cpu_has_avx512()) return {BLIS_ARCH_SKX, "auto (avx512f)"};
      return {std::nullopt, "auto (no avx512f: BLIS's own dispatch)"};
    default:
      return {forced_arch(kernels), std::string("forced (") + kernels_name(kernels) + ")"};
  }
}

// Applies `choice` through BLIS_ARCH_TYPE, which BLIS reads once, when it initialises; checks
// that BLIS took it (it does not when something called BLIS before gemm_init). BLIS 0.9 must
// be initialised (bli_init) before bli_arch_query_id, or a set BLIS_ARCH_TYPE makes it abort.
void apply_kernels(const KernelChoice& choice) {
  if (choice.arch) {
    setenv("BLIS_ARCH_TYPE", std::to_string(static_cast<int>(*choice.arch)).c_str(), 1);
  }
  bli_init();
  if (!choice.arch) return;
  const arch_t active = bli_arch_query_id();
  check_invariant(active == *choice.arch, std::string("BLIS kept kernel set '") +
                                              bli_arch_string(active) + "' instead of '" +
                                              bli_arch_string(*choice.arch) +
                                              "': BLIS was called before gemm_init");
}

// The warning of GemmInfo::warning: BLIS 0.9's `generic` kernels are plain C, ~4.5x slower than
// `haswell` at our shapes; `native` silently falls back to them where BLIS does not recognise
// the CPU (this machine kind's AVX-512 Xeon).
std::string generic_kernels_warning(const std::string& kernel_set, const std::string& selected_by) {
  if (kernel_set != "generic") return "";
  const bool avx512 = cpu_has_avx512();
  if (!avx512 && !cpu_has_avx2_fma()) return "";
  return std::string("BLIS selected its generic (unoptimised) kernels [") + selected_by +
         "] on a CPU with " + (avx512 ? "AVX-512 (F/DQ/BW/VL) and AVX2/FMA" : "AVX2/FMA") +
         ": GEMMs run several times slower; use --blis-kernels auto (or " +
         (avx512 && blis_has_skx ? "skx or haswell" : "haswell") +
         ") and leave BLIS_ARCH_TYPE unset";
}

// BLIS's dimension and stride type (64-bit in Debian's build); the one cast site.
dim_t to_dim(int64_t value) {
  return static_cast<dim_t>(value);
}

}  // namespace

BlisKernels parse_blis_kernels(const std::string& text) {
  for (BlisKernels kernels : {BlisKernels::automatic, BlisKernels::native, BlisKernels::skx,
                              BlisKernels::haswell, BlisKernels::zen3}) {
    if (text == kernels_name(kernels)) return kernels;
  }
  throw InputError("BLIS kernel set '" + text +
                   "' is unknown; expected one of auto, native, skx, haswell, zen3");
}

GemmInfo gemm_init(const GemmSetup& setup) {
  check_input(setup.threads >= 1,
              "threads per rank must be at least 1, found " + std::to_string(setup.threads));
  GemmState& state = gemm_state();
  std::lock_guard lock(state.mutex);
  if (state.setup) {
    check_input(state.setup->kernels == setup.kernels,
                std::string("BLIS kernel set is already '") + kernels_name(state.setup->kernels) +
                    "' in this process and cannot change to '" + kernels_name(setup.kernels) + "'");
  } else {
    const KernelChoice choice = choose_kernels(setup.kernels);
    apply_kernels(choice);
    state.info.selected_by = choice.reason;
  }
  bli_thread_set_num_threads(to_dim(setup.threads));
  omp_set_num_threads(setup.threads);
  state.setup = setup;
  state.info.blis_version = bli_info_get_version_str();
  state.info.kernel_set = bli_arch_string(bli_arch_query_id());
  state.info.threads = setup.threads;
  state.info.warning = generic_kernels_warning(state.info.kernel_set, state.info.selected_by);
  return state.info;
}

GemmInfo gemm_info() {
  GemmState& state = gemm_state();
  std::lock_guard lock(state.mutex);
  if (!state.setup) {
    throw RunError("internal error: gemm_info() called before gemm_init()");
  }
  return state.info;
}

namespace {

// A caller's shape error (an internal error): negative sizes, a row stride that does not
// cover its row, or C's narrower than n. `name` and the strides are for the message only.
void check_shape(const char* name, int64_t m, int64_t n, int64_t k, int64_t a_row, int64_t a_col,
                 int64_t b_row, int64_t b_col, int64_t ldc, bool strides_cover) {
  // Called in hot loops: the message is built only on failure.
  if (m >= 0 && n >= 0 && k >= 0 && strides_cover && ldc >= n) return;
  throw RunError(std::string("internal error: ") + name + " shape m=" + std::to_string(m) +
                 " n=" + std::to_string(n) + " k=" + std::to_string(k) + " with strides a=(" +
                 std::to_string(a_row) + "," + std::to_string(a_col) + ") b=(" +
                 std::to_string(b_row) + "," + std::to_string(b_col) +
                 ") ldc=" + std::to_string(ldc) + " (row strides must cover the rows)");
}

// The one call of bli_sgemm: C (m x n) = A (m x k) * B (k x n) + beta C, every operand given by
// its row and column strides, so that transposes are only a matter of strides.
void gemm_strided(const char* name, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row,
                  int64_t a_col, const float* b, int64_t b_row, int64_t b_col, float* c,
                  int64_t ldc, float beta, bool strides_cover) {
  check_shape(name, m, n, k, a_row, a_col, b_row, b_col, ldc, strides_cover);
  if (m == 0 || n == 0) return;
  float alpha = 1.0f;
  bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, to_dim(m), to_dim(n), to_dim(k), &alpha,
            const_cast<float*>(a), to_dim(a_row), to_dim(a_col), const_cast<float*>(b),
            to_dim(b_row), to_dim(b_col), &beta, c, to_dim(ldc), 1);
}

// Bytes of W per block of matmul_nt_decoding's row path: a block stays in L2 while the rows of A
// pass over it, so W is read from memory once however many rows there are.
constexpr int64_t gemv_block_bytes = int64_t{128} << 10;

// W's rows per block: depends on k alone, never on the thread count. A multiple of 8, the
// fusing factor of BLIS 0.9's sgemv kernels for skx, haswell and zen3 (bli_sdotxf_zen_int_8
// takes 8 rows of W at a time; a call's last rows short of 8 go one by one through dotxv).
int64_t gemv_block_rows(int64_t k) {
  const int64_t row_bytes = static_cast<int64_t>(sizeof(float)) * std::max<int64_t>(k, 1);
  return std::max<int64_t>(8, gemv_block_bytes / row_bytes / 8 * 8);
}

// The one call of bli_sgemv: matmul_nt_decoding for 0 < m <= gemv_max_rows,
// C[i, block] = W[block, :] a_i + beta C[i, block], one call per (block of W's rows, row i of A).
// Blocks go to the rank's threads; each element of C is computed by exactly one call, whose
// operands do not depend on the thread count. bli_sgemv runs on the calling thread (BLIS threads
// level 3 only).
void matmul_nt_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w,
                    int64_t ldw, float* c, int64_t ldc, float beta) {
  const int64_t block = gemv_block_rows(k);
  const int64_t n_blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (worth_threads(n * k))
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t first = b * block;
    const int64_t rows = std::min(block, n - first);
    float alpha = 1.0f;
    float beta_c = beta;  // BLIS takes scalars by non-const pointer
    for (int64_t i = 0; i < m; ++i) {
      bli_sgemv(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, to_dim(rows), to_dim(k), &alpha,
                const_cast<float*>(w + first * ldw), to_dim(ldw), 1,
                const_cast<float*>(a + i * lda), 1, &beta_c, c + i * ldc + first, 1);
    }
  }
}

}  // namespace

void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w,
               int64_t ldw, float* c, int64_t ldc, float beta) {
  // B = W^T (k x n): element (p, j) is w[j*ldw + p], so row stride 1, column stride ldw.
  gemm_strided("matmul_nt", m, n, k, a, lda, 1, w, 1, ldw, c, ldc, beta, lda >= k && ldw >= k);
}

void matmul_nt_decoding(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* w, int64_t ldw, float* c, int64_t ldc, float beta) {
  if (m > gemv_max_rows) {
    matmul_nt(m, n, k, a, lda, w, ldw, c, ldc, beta);
    return;
  }
  check_shape("matmul_nt_decoding", m, n, k, lda, 1, 1, ldw, ldc, lda >= k && ldw >= k);
  if (m == 0 || n == 0) return;
  matmul_nt_rows(m, n, k, a, lda, w, ldw, c, ldc, beta);
}

void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta) {
  gemm_strided("matmul_nn", m, n, k, a, lda, 1, b, ldb, 1, c, ldc, beta, lda >= k && ldb >= n);
}

void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta) {
  // A^T (m x k): element (i, p) is a[p*lda + i], so row stride 1, column stride lda.
  gemm_strided("matmul_tn", m, n, k, a, 1, lda, b, ldb, 1, c, ldc, beta, lda >= m && ldb >= n);
}

}  // namespace fracsweep
