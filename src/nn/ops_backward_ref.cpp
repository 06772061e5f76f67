// Reference twins of the backward kernels (see ops_backward.hpp): the textbook derivative of
// each forward formula, written out directly, every sum in double, for tests.
#include <algorithm>
#include <cmath>
#include <vector>

#include "fracsweep/nn/ops_backward.hpp"
#include "fracsweep/nn/ops_ref.hpp"

namespace fracsweep::ref {

void rmsnorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                           double* dweight, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_squares = 0.0;
    for (int64_t i = 0; i < d; ++i) sum_squares += static_cast<double>(x[r * d + i]) * x[r * d + i];
    const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(d) + eps);
    // Jacobian d out_i / d x_j = w_i (r [i = j] - r^3 x_i x_j / d), applied to dout.
    for (int64_t j = 0; j < d; ++j) {
      double grad = 0.0;
      for (int64_t i = 0; i < d; ++i) {
        const double jacobian =
            weight[i] * ((i == j ? inv_rms : 0.0) - inv_rms * inv_rms * inv_rms *
                                                        static_cast<double>(x[r * d + i]) *
                                                        x[r * d + j] / static_cast<double>(d));
        grad += jacobian * dout[r * d + i];
      }
      dx[r * d + j] = static_cast<float>(dx[r * d + j] + grad);
      dweight[j] += static_cast<double>(dout[r * d + j]) * x[r * d + j] * inv_rms;
    }
  }
}

void rope_rows_backward(float* dx, const int32_t* positions, int64_t rows, int64_t n_heads,
                        int64_t head_dim, float theta) {
  // The transpose of a rotation is the rotation by minus the angle: the forward twin at minus
  // each position.
  std::vector<int32_t> negated(positions, positions + rows);  // (rows)
  for (int32_t& position : negated) position = -position;
  ref::rope_rows(dx, negated.data(), rows, n_heads, head_dim, theta);
}

void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    const double sigmoid = 1.0 / (1.0 + std::exp(-g));
    const double grad = dh[i];
    dgate[i] = static_cast<float>(grad * up[i] * (sigmoid + g * sigmoid * (1.0 - sigmoid)));
    dup[i] = static_cast<float>(grad * g * sigmoid);
  }
}

void attention_causal_backward(const float* q, int64_t q_stride, const float* k, const float* v,
                               int64_t kv_stride, const float* dout, int64_t dout_stride, float* dq,
                               int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                               int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  const int64_t heads_per_kv = n_heads / n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const size_t kv_count = static_cast<size_t>(len * n_kv_heads * head_dim);
  std::vector<double> dk_sum(kv_count, 0.0);        // (len, n_kv_heads * head_dim)
  std::vector<double> dv_sum(kv_count, 0.0);        // (len, n_kv_heads * head_dim)
  std::vector<double> p(static_cast<size_t>(len));  // (len) softmax weights of one query
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t kv_column = (h / heads_per_kv) * head_dim;
    for (int64_t t = 0; t < len; ++t) {
      const float* query = q + t * q_stride + h * head_dim;
      const float* grad_out = dout + t * dout_stride + h * head_dim;
      double largest = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) {
        double score = 0.0;
        for (int64_t d = 0; d < head_dim; ++d)
          score += static_cast<double>(query[d]) * k[j * kv_stride + kv_column + d];
        p[j] = score * scale;
        largest = std::max(largest, p[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - largest));
      for (int64_t j = 0; j <= t; ++j) p[j] /= sum;
      // Softmax Jacobian: d score_j = p_j (dp_j - sum_i p_i dp_i), dp_j = dout . v_j.
      std::vector<double> dp(static_cast<size_t>(t + 1));
      double expected = 0.0;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d)
          dot += static_cast<double>(grad_out[d]) * v[j * kv_stride + kv_column + d];
        dp[j] = dot;
        expected += p[j] * dot;
      }
      for (int64_t d = 0; d < head_dim; ++d) {
        double dquery = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          const double dscore = p[j] * (dp[j] - expected) * scale;
          dquery += dscore * k[j * kv_stride + kv_column + d];
          dk_sum[j * n_kv_heads * head_dim + kv_column + d] += dscore * query[d];
          dv_sum[j * n_kv_heads * head_dim + kv_column + d] += p[j] * grad_out[d];
        }
        dq[t * dq_stride + h * head_dim + d] = static_cast<float>(dquery);
      }
    }
  }
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t c = 0; c < n_kv_heads * head_dim; ++c) {
      dk[t * dkv_stride + c] = static_cast<float>(dk_sum[t * n_kv_heads * head_dim + c]);
      dv[t * dkv_stride + c] = static_cast<float>(dv_sum[t * n_kv_heads * head_dim + c]);
    }
  }
}

}  // namespace fracsweep::ref
