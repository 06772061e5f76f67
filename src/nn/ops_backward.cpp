// Backward kernels of the row-wise Llama/GPT-2 operations (see ops_backward.hpp). They run once
// per gradient, next to GEMMs that cost O(d) times more, so they are plain loops the compiler
// vectorises along the head or feature dimension; the exponentials are fast_exp's, as in the
// forward kernels whose outputs they differentiate.
#include "fracsweep/nn/ops_backward.hpp"

#include <algorithm>
#include <cmath>

#include "fracsweep/nn/fast_exp.hpp"

namespace fracsweep {

void rmsnorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                           double* dweight, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * d;
    const float* dout_row = dout + r * d;
    float* dx_row = dx + r * d;
    float sum_squares = 0.0f;
    float dot = 0.0f;  // sum_i dout_i weight_i x_i
    for (int64_t i = 0; i < d; ++i) {
      sum_squares += x_row[i] * x_row[i];
      dot += dout_row[i] * weight[i] * x_row[i];
    }
    const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(d) + eps);
    // d/dx_j of x_i r w_i with r = (mean(x^2) + eps)^(-1/2): r w_j [i = j] - x_i w_i r^3 x_j / d.
    const float correction = dot * inv_rms * inv_rms * inv_rms / static_cast<float>(d);
    for (int64_t i = 0; i < d; ++i) {
      dx_row[i] += inv_rms * weight[i] * dout_row[i] - correction * x_row[i];
      dweight[i] += static_cast<double>(dout_row[i] * x_row[i] * inv_rms);
    }
  }
}

void rope_rows_backward(float* dx, const int32_t* positions, const float* table, int64_t rows,
                        int64_t n_heads, int64_t head_dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* cos_sin = table + positions[r] * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = dx + (r * n_heads + h) * head_dim;
      for (int64_t i = 0; i < head_dim; i += 2) {  // the transposed rotation
        const float first = head[i];
        const float second = head[i + 1];
        head[i] = first * cos_sin[i] + second * cos_sin[i + 1];
        head[i + 1] = second * cos_sin[i] - first * cos_sin[i + 1];
      }
    }
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // sigmoid(g) as in the forward: e^-g saturates at e^88 for g < -88.
    const float minus_gate = select_by_mask(gate[i] < -88.0f, 88.0f, -gate[i]);
    const float sigmoid = 1.0f / (1.0f + fast_exp(minus_gate));
    const float silu = gate[i] * sigmoid;
    const float silu_slope = sigmoid * (1.0f + gate[i] * (1.0f - sigmoid));
    const float grad = dh[i];
    dgate[i] = grad * up[i] * silu_slope;
    dup[i] = grad * silu;
  }
}

int64_t attention_backward_scratch_floats(int64_t len) { return 2 * len; }

void attention_causal_backward(const float* q, int64_t q_stride, const float* k, const float* v,
                               int64_t kv_stride, const float* dout, int64_t dout_stride, float* dq,
                               int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                               int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                               float* scratch) {
  float* weights = scratch;             // (len) softmax weights of one query
  float* weight_grads = scratch + len;  // (len) d objective / d score of one query
  const int64_t heads_per_kv = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t kv_head = 0; kv_head < n_kv_heads; ++kv_head) {
    const int64_t kv_column = kv_head * head_dim;
    for (int64_t t = 0; t < len; ++t) {
      std::fill_n(dk + t * dkv_stride + kv_column, head_dim, 0.0f);
      std::fill_n(dv + t * dkv_stride + kv_column, head_dim, 0.0f);
    }
    for (int64_t head = kv_head * heads_per_kv; head < (kv_head + 1) * heads_per_kv; ++head) {
      const int64_t column = head * head_dim;
      for (int64_t t = 0; t < len; ++t) {
        const float* query = q + t * q_stride + column;
        const float* grad_out = dout + t * dout_stride + column;
        // Softmax over keys 0 .. t of scale * q.k, as the forward computed it.
        float largest = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          const float* key = k + j * kv_stride + kv_column;
          float score = 0.0f;
          for (int64_t d = 0; d < head_dim; ++d) score += query[d] * scale * key[d];
          weights[j] = score;
          largest = std::max(largest, score);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= t; ++j) {
          weights[j] = fast_exp(weights[j] - largest);
          sum += weights[j];
        }
        const float inv_sum = 1.0f / sum;
        // out = sum_j p_j v_j: dp_j = dout . v_j; d score_j = p_j (dp_j - sum_i p_i dp_i).
        float expected = 0.0f;
        for (int64_t j = 0; j <= t; ++j) {
          weights[j] *= inv_sum;
          const float* value = v + j * kv_stride + kv_column;
          float dot = 0.0f;
          for (int64_t d = 0; d < head_dim; ++d) dot += grad_out[d] * value[d];
          weight_grads[j] = dot;
          expected += weights[j] * dot;
        }
        float* dquery = dq + t * dq_stride + column;
        std::fill_n(dquery, head_dim, 0.0f);
        for (int64_t j = 0; j <= t; ++j) {
          const float dscore = weights[j] * (weight_grads[j] - expected) * scale;
          const float* key = k + j * kv_stride + kv_column;
          float* dkey = dk + j * dkv_stride + kv_column;
          float* dvalue = dv + j * dkv_stride + kv_column;
          for (int64_t d = 0; d < head_dim; ++d) {
            dquery[d] += dscore * key[d];
            dkey[d] += dscore * query[d];
            dvalue[d] += weights[j] * grad_out[d];
          }
        }
      }
    }
  }
}

void add_column_squares(const float* x, int64_t rows, int64_t cols, int64_t ld, double* sums) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * ld;
    for (int64_t j = 0; j < cols; ++j) sums[j] += static_cast<double>(row[j]) * row[j];
  }
}

}  // namespace fracsweep
