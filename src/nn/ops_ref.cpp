// Reference kernels (see ops_ref.hpp): the obvious loops, every sum in double, for tests.
#include "fracsweep/nn/ops_ref.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fracsweep::ref {

namespace {

// C (m x n) = A B + beta C with A's element (i, p) at a[i * a_row + p * a_col] and B's element
// (p, j) at b[p * b_row + j * b_col]; sums in double. beta = 0 overwrites (C may hold garbage,
// even NaN), as in BLAS.
void matmul_strided(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                    const float* b, int64_t b_row, int64_t b_col, float* c, int64_t ldc,
                    float beta) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        sum += static_cast<double>(a[i * a_row + p * a_col]) *
               static_cast<double>(b[p * b_row + j * b_col]);
      }
      float& target = c[i * ldc + j];
      target = beta == 0.0f ? static_cast<float>(sum)
                            : static_cast<float>(sum + static_cast<double>(beta) * target);
    }
  }
}

}  // namespace

void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w,
               int64_t ldw, float* c, int64_t ldc, float beta) {
  matmul_strided(m, n, k, a, lda, 1, w, 1, ldw, c, ldc, beta);
}

void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta) {
  matmul_strided(m, n, k, a, lda, 1, b, ldb, 1, c, ldc, beta);
}

void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta) {
  matmul_strided(m, n, k, a, 1, lda, b, ldb, 1, c, ldc, beta);
}

void rmsnorm_rows(const float* x, const float* weight, float* out, int64_t rows, int64_t d,
                  float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_squares = 0.0;
    for (int64_t i = 0; i < d; ++i) sum_squares += static_cast<double>(x[r * d + i]) * x[r * d + i];
    const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) {
      out[r * d + i] = static_cast<float>(x[r * d + i] * inv_rms * weight[i]);
    }
  }
}

void rope_rows(float* x, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
               float theta) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < n_heads; ++h) {
      for (int64_t i = 0; i < head_dim; i += 2) {
        const double frequency =
            1.0 / std::pow(static_cast<double>(theta),
                           static_cast<double>(i) / static_cast<double>(head_dim));
        const double angle = positions[r] * frequency;
        float* pair = x + r * n_heads * head_dim + h * head_dim + i;
        const double first = pair[0];
        const double second = pair[1];
        pair[0] = static_cast<float>(first * std::cos(angle) - second * std::sin(angle));
        pair[1] = static_cast<float>(first * std::sin(angle) + second * std::cos(angle));
      }
    }
  }
}

void attention_causal(const float* q, int64_t q_stride, const float* k, const float* v,
                      int64_t kv_stride, float* out, int64_t out_stride, int64_t len,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  attention_causal_rows(q, q_stride, k, v, kv_stride, out, out_stride, 0, len, n_heads, n_kv_heads,
                        head_dim);
}

void attention_causal_rows(const float* q, int64_t q_stride, const float* k, const float* v,
                           int64_t kv_stride, float* out, int64_t out_stride, int64_t first,
                           int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  std::vector<double> weights(static_cast<size_t>(len));  // (len) softmax weights of one query
  const int64_t heads_per_kv = n_heads / n_kv_heads;
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t kv_offset = (h / heads_per_kv) * head_dim;
    for (int64_t t = first; t < len; ++t) {
      const float* query = q + (t - first) * q_stride + h * head_dim;
      double largest = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) {
        const float* key = k + j * kv_stride + kv_offset;
        double score = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) score += static_cast<double>(query[d]) * key[d];
        weights[j] = score / std::sqrt(static_cast<double>(head_dim));
        largest = std::max(largest, weights[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= t; ++j) {
        weights[j] = std::exp(weights[j] - largest);
        sum += weights[j];
      }
      for (int64_t d = 0; d < head_dim; ++d) {
        double mixed = 0.0;
        for (int64_t j = 0; j <= t; ++j) mixed += weights[j] * v[j * kv_stride + kv_offset + d];
        out[(t - first) * out_stride + h * head_dim + d] = static_cast<float>(mixed / sum);
      }
    }
  }
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    gate[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<double>(x[i]) + y[i]);
}

}  // namespace fracsweep::ref
