// gemm.hpp: set-up records the kernel set BLIS really uses; matmul_nt (BLIS) against the
// double-accumulating ref::matmul_nt on random shapes with odd sizes and padded strides.
#define BOOST_TEST_MODULE gemm
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/ops_ref.hpp"
#include "fracsweep/util/error.hpp"

namespace fs = fracsweep;

namespace {

// Whether the user chose the kernels; read before gemm_init, which may set BLIS_ARCH_TYPE.
const bool arch_type_from_user = std::getenv("BLIS_ARCH_TYPE") != nullptr;

// BLIS fixes its kernel set at its first call: configure it before any test runs.
struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-1.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& value : values) value = distribution(generator);
  return values;
}

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

}  // namespace

BOOST_AUTO_TEST_CASE(init_records_the_kernel_set) {
  const fs::GemmInfo info = fs::gemm_info();
  BOOST_TEST(info.blis_version.find('.') != std::string::npos);  // e.g. "0.9.0"
  BOOST_TEST(info.threads == 1);
  BOOST_TEST_MESSAGE("BLIS " << info.blis_version << " kernels " << info.kernel_set << " ("
                             << info.selected_by << ")");
  if (arch_type_from_user) {
    BOOST_TEST(info.selected_by == "BLIS_ARCH_TYPE from environment");
  } else if (cpu_has_avx512()) {
    BOOST_TEST(info.selected_by == "auto (avx512f)");
    BOOST_TEST(info.kernel_set == "skx");
  } else {
    BOOST_TEST(info.selected_by == "auto (no avx512f: BLIS's own dispatch)");
    BOOST_TEST(info.kernel_set != "skx");
  }
}

BOOST_AUTO_TEST_CASE(init_is_idempotent_and_kernels_cannot_change) {
  const fs::GemmInfo again = fs::gemm_init(fs::GemmSetup{});
  BOOST_TEST(again.kernel_set == fs::gemm_info().kernel_set);
  BOOST_CHECK_THROW(fs::gemm_init(fs::GemmSetup{fs::BlisKernels::haswell, 1}), fs::InputError);
  BOOST_CHECK_THROW(fs::gemm_init(fs::GemmSetup{fs::BlisKernels::automatic, 0}), fs::InputError);
}

BOOST_AUTO_TEST_CASE(parse_kernel_names) {
  BOOST_TEST((fs::parse_blis_kernels("auto") == fs::BlisKernels::automatic));
  BOOST_TEST((fs::parse_blis_kernels("native") == fs::BlisKernels::native));
  BOOST_TEST((fs::parse_blis_kernels("skx") == fs::BlisKernels::skx));
  BOOST_TEST((fs::parse_blis_kernels("haswell") == fs::BlisKernels::haswell));
  BOOST_TEST((fs::parse_blis_kernels("zen3") == fs::BlisKernels::zen3));
  BOOST_CHECK_THROW(fs::parse_blis_kernels("avx512"), fs::InputError);
}

namespace {

struct NtShape {
  int64_t m, n, k, pad_a, pad_w, pad_c;
};

using MatmulNt = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                          const float* w, int64_t ldw, float* c, int64_t ldc, float beta);

// `matmul` (matmul_nt or matmul_nt_decoding) against ref::matmul_nt (double accumulation) on
// `s`, for beta 0 and 1, with row strides padded by s.pad_*; the padding of C must stay untouched.
void check_matmul_nt(MatmulNt matmul, const NtShape& s) {
  const int64_t lda = s.k + s.pad_a;
  const int64_t ldw = s.k + s.pad_w;
  const int64_t ldc = s.n + s.pad_c;
  const std::vector<float> a = random_floats(s.m * lda, 1);  // (m, lda)
  const std::vector<float> w = random_floats(s.n * ldw, 2);  // (n, ldw)
  for (float beta : {0.0f, 1.0f}) {
    // beta = 0 must ignore C entirely, NaNs included; beta = 1 accumulates onto it.
    const std::vector<float> initial =  // (m, ldc)
        beta == 0.0f ? std::vector<float>(static_cast<size_t>(s.m * ldc),
                                          std::numeric_limits<float>::quiet_NaN())
                     : random_floats(s.m * ldc, 3);
    std::vector<float> fast = initial;
    std::vector<float> plain = initial;
    matmul(s.m, s.n, s.k, a.data(), lda, w.data(), ldw, fast.data(), ldc, beta);
    fs::ref::matmul_nt(s.m, s.n, s.k, a.data(), lda, w.data(), ldw, plain.data(), ldc, beta);
    // Per element, float accumulation of k products stays within k * 2^-24 of the sum of
    // their magnitudes (plus |C| when accumulating); random signs make it far smaller.
    double worst_ratio = 0.0;  // error / bound
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t at = static_cast<size_t>(i * ldc + j);
        if (j >= s.n) {  // padding
          BOOST_TEST((std::isnan(fast[at]) ? std::isnan(initial[at]) : fast[at] == initial[at]));
          continue;
        }
        BOOST_TEST(std::isfinite(fast[at]), "m=" << s.m << " n=" << s.n << " k=" << s.k
                                                 << " beta=" << beta << " C[" << i << "," << j
                                                 << "] = " << fast[at]);
        double magnitude = beta * std::abs(initial[at]);
        for (int64_t p = 0; p < s.k; ++p) {
          magnitude += std::abs(static_cast<double>(a[i * lda + p]) * w[j * ldw + p]);
        }
        const double bound = static_cast<double>(s.k + 1) * std::ldexp(1.0, -24) * magnitude;
        worst_ratio = std::max(worst_ratio, std::abs(fast[at] - plain[at]) / bound);
      }
    }
    BOOST_TEST(worst_ratio <= 1.0, "m=" << s.m << " n=" << s.n << " k=" << s.k << " beta=" << beta
                                        << " error/bound=" << worst_ratio);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(matmul_nt_matches_reference) {
  // Single rows/columns, odd sizes, the forward's (n_tok, 64 / 32 / 172 / 512) shapes, and
  // padded row strides.
  for (const NtShape& s :
       {NtShape{1, 1, 1, 0, 0, 0}, NtShape{1, 37, 13, 3, 0, 1}, NtShape{17, 1, 64, 0, 5, 0},
        NtShape{31, 29, 23, 1, 2, 3}, NtShape{300, 64, 64, 0, 0, 0}, NtShape{257, 32, 64, 0, 0, 0},
        NtShape{130, 172, 64, 0, 0, 0}, NtShape{130, 64, 172, 0, 0, 0},
        NtShape{100, 512, 64, 0, 0, 0}, NtShape{65, 33, 300, 7, 9, 11}}) {
    check_matmul_nt(fs::matmul_nt, s);
  }
}

// matmul_nt_decoding's row path (m <= gemv_max_rows: one bli_sgemv per block of W's rows and row
// of A) at m = 1,
// 2, 3 and the threshold +-1 (the GEMM path just above it), on odd n and k, padded strides,
// n over several blocks with a tail that is not a multiple of 8 (k = 64: blocks of 512 rows;
// k = 5001: blocks of 8), k = 1 and the decoding shapes of a small Llama (dim 48, hidden 136,
// vocab 97, kv_dim 24).
BOOST_AUTO_TEST_CASE(matmul_nt_row_path_matches_reference) {
  for (const int64_t m : {int64_t{1}, int64_t{2}, int64_t{3}, fs::gemv_max_rows - 1,
                          fs::gemv_max_rows, fs::gemv_max_rows + 1}) {
    for (const NtShape& s :
         {NtShape{m, 1100, 64, 0, 0, 0}, NtShape{m, 37, 5001, 3, 5, 2}, NtShape{m, 29, 1, 1, 0, 3},
          NtShape{m, 13, 23, 7, 9, 11}, NtShape{m, 48, 48, 0, 0, 0}, NtShape{m, 24, 48, 0, 0, 0},
          NtShape{m, 136, 48, 0, 0, 0}, NtShape{m, 48, 136, 0, 0, 0},
          NtShape{m, 97, 48, 0, 0, 0}}) {
      check_matmul_nt(fs::matmul_nt_decoding, s);
    }
  }
}

// Each row of C from matmul_nt_decoding's row path is bitwise the same whatever m is (a decoded row
// does not depend on how many rows were decoded with it) and, on both paths, whatever the thread
// count (gemm_init's setup.threads): the blocks of W's rows are fixed by k, not by the threads.
BOOST_AUTO_TEST_CASE(matmul_nt_rows_do_not_depend_on_m_or_threads) {
  const fs::BlisKernels kernels = fs::BlisKernels::automatic;
  for (const NtShape& s : {NtShape{fs::gemv_max_rows, 1100, 64, 1, 2, 3},
                           NtShape{fs::gemv_max_rows, 300, 513, 0, 0, 0},
                           NtShape{fs::gemv_max_rows + 1, 1100, 64, 0, 0, 0}}) {
    const int64_t lda = s.k + s.pad_a, ldw = s.k + s.pad_w, ldc = s.n + s.pad_c;
    const std::vector<float> a = random_floats(s.m * lda, 7);        // (m, lda)
    const std::vector<float> w = random_floats(s.n * ldw, 8);        // (n, ldw)
    const std::vector<float> initial = random_floats(s.m * ldc, 9);  // (m, ldc)
    for (const float beta : {0.0f, 1.0f}) {
      std::vector<std::vector<float>> results;  // (threads 1, 2) x (m, ldc)
      for (const int threads : {1, 2}) {
        fs::gemm_init(fs::GemmSetup{kernels, threads});
        results.push_back(initial);
        fs::matmul_nt_decoding(s.m, s.n, s.k, a.data(), lda, w.data(), ldw, results.back().data(),
                               ldc, beta);
      }
      fs::gemm_init(fs::GemmSetup{kernels, 1});
      BOOST_TEST((results[0] == results[1]), "m=" << s.m << " n=" << s.n << " k=" << s.k
                                                  << " beta=" << beta << ": 1 vs 2 threads");
      if (s.m > fs::gemv_max_rows) continue;
      for (int64_t i = 0; i < s.m; ++i) {  // row i alone, at m = 1
        std::vector<float> row(initial.begin() + i * ldc, initial.begin() + (i + 1) * ldc);
        fs::matmul_nt_decoding(1, s.n, s.k, a.data() + i * lda, lda, w.data(), ldw, row.data(), ldc,
                               beta);
        BOOST_TEST(std::equal(row.begin(), row.end(), results[0].begin() + i * ldc),
                   "row " << i << " of m=" << s.m << " n=" << s.n << " k=" << s.k
                          << " beta=" << beta << " differs when computed alone");
      }
    }
  }
}

// matmul_nn and matmul_tn (the backward pass's dx = dy W and dW = dy^T x) against their ref
// twins, with padded strides; the bound is the one above, for k products per element.
BOOST_AUTO_TEST_CASE(matmul_nn_and_tn_match_reference) {
  struct Shape {
    int64_t m, n, k, pad;
  };
  for (const Shape& s : {Shape{1, 1, 1, 0}, Shape{17, 29, 13, 3}, Shape{64, 64, 300, 0},
                         Shape{172, 64, 130, 5}, Shape{512, 64, 100, 0}}) {
    for (const bool transposed_a : {false, true}) {
      const int64_t lda = (transposed_a ? s.m : s.k) + s.pad;  // A is (k x m) when transposed
      const int64_t ldb = s.n + s.pad;
      const int64_t ldc = s.n + s.pad;
      const std::vector<float> a = random_floats((transposed_a ? s.k : s.m) * lda, 4);
      const std::vector<float> b = random_floats(s.k * ldb, 5);
      for (const float beta : {0.0f, 1.0f}) {
        const std::vector<float> initial = random_floats(s.m * ldc, 6);
        std::vector<float> fast = initial;
        std::vector<float> plain = initial;
        if (transposed_a) {
          fs::matmul_tn(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, fast.data(), ldc, beta);
          fs::ref::matmul_tn(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, plain.data(), ldc, beta);
        } else {
          fs::matmul_nn(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, fast.data(), ldc, beta);
          fs::ref::matmul_nn(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, plain.data(), ldc, beta);
        }
        double worst_ratio = 0.0;
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < ldc; ++j) {
            const size_t at = static_cast<size_t>(i * ldc + j);
            if (j >= s.n) {  // padding untouched
              BOOST_TEST(fast[at] == initial[at]);
              continue;
            }
            double magnitude = beta * std::abs(initial[at]);
            for (int64_t p = 0; p < s.k; ++p) {
              const float a_ip = transposed_a ? a[p * lda + i] : a[i * lda + p];
              magnitude += std::abs(static_cast<double>(a_ip) * b[p * ldb + j]);
            }
            const double bound = static_cast<double>(s.k + 1) * std::ldexp(1.0, -24) * magnitude;
            worst_ratio = std::max(worst_ratio, std::abs(fast[at] - plain[at]) / bound);
          }
        }
        BOOST_TEST(worst_ratio <= 1.0, (transposed_a ? "tn" : "nn")
                                           << " m=" << s.m << " n=" << s.n << " k=" << s.k
                                           << " error/bound=" << worst_ratio);
      }
    }
  }
  // A stride that does not cover a row is an internal error, not a silent wrong answer.
  std::vector<float> c(4);
  BOOST_CHECK_THROW(fs::matmul_nn(2, 2, 3, c.data(), 2, c.data(), 2, c.data(), 2), fs::RunError);
  BOOST_CHECK_THROW(fs::matmul_tn(2, 2, 3, c.data(), 1, c.data(), 2, c.data(), 2), fs::RunError);
}

BOOST_AUTO_TEST_CASE(matmul_nt_empty_and_bad_shapes) {
  std::vector<float> c = {5.0f};
  const std::vector<float> a = {1.0f};
  fs::matmul_nt(0, 1, 1, a.data(), 1, a.data(), 1, c.data(), 1);
  fs::matmul_nt(1, 0, 1, a.data(), 1, a.data(), 1, c.data(), 1);
  BOOST_TEST(c[0] == 5.0f);
  fs::matmul_nt(1, 1, 0, a.data(), 1, a.data(), 1, c.data(), 1);  // empty sum, beta 0
  BOOST_TEST(c[0] == 0.0f);
  BOOST_CHECK_THROW(fs::matmul_nt(2, 2, 3, a.data(), 2, a.data(), 3, c.data(), 2), fs::RunError);
  BOOST_CHECK_THROW(fs::matmul_nt(2, 2, 3, a.data(), 3, a.data(), 3, c.data(), 1), fs::RunError);
  // The same for the decoding form (its row path).
  c[0] = 5.0f;
  fs::matmul_nt_decoding(0, 1, 1, a.data(), 1, a.data(), 1, c.data(), 1);
  fs::matmul_nt_decoding(1, 0, 1, a.data(), 1, a.data(), 1, c.data(), 1);
  BOOST_TEST(c[0] == 5.0f);
  fs::matmul_nt_decoding(1, 1, 0, a.data(), 1, a.data(), 1, c.data(), 1);
  BOOST_TEST(c[0] == 0.0f);
  BOOST_CHECK_THROW(fs::matmul_nt_decoding(2, 2, 3, a.data(), 2, a.data(), 3, c.data(), 2),
                    fs::RunError);
  BOOST_CHECK_THROW(fs::matmul_nt_decoding(2, 2, 3, a.data(), 3, a.data(), 3, c.data(), 1),
                    fs::RunError);
}
