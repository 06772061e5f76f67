// Backward kernels of the row-wise Llama/GPT-2 operations (see ops_backward.hpp). They run once
// per gradient, next to GEMMs that cost O(d) times more, so they are plain loops the compiler
// vectorises along the head or feature dimension; the exponentials are fast_exp's, as in the
// forward kernels whose outputs they differentiate.
#include "fracsweep/nn/ops_backward.hpp"

#include <algorithm>
#include <cmath>

#include "float8.hpp"
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

namespace {

using simd::float8;
using simd::lanes8;
using simd::load8;
using simd::padded_keys;
using simd::store8;

// Queries handled together, as in the forward kernel: each key chunk loaded is used by all.
constexpr int64_t query_block = 8;

// out (query_block, padded) columns [0, keys_end) = rows (query_block, head_dim) times
// columns_t (head_dim, padded): scores q.k_j, or dp_j = dout.v_j.
void block_products(const float* rows, const float* columns_t, int64_t padded, int64_t head_dim,
                    int64_t keys_end, float* out) {
  for (int64_t j = 0; j < keys_end; j += lanes8) {
    float8 sums[query_block] = {};
    for (int64_t d = 0; d < head_dim; ++d) {
      const float8 column = load8(columns_t + d * padded + j);
      for (int64_t r = 0; r < query_block; ++r) sums[r] += rows[r * head_dim + d] * column;
    }
    for (int64_t r = 0; r < query_block; ++r) store8(out + r * padded + j, sums[r]);
  }
}

// sum over j < n of a[j] * b[j], in 8 independent partial sums (n a multiple of 8).
float dot_lanes(const float* a, const float* b, int64_t n) {
  float8 partial = {};
  for (int64_t j = 0; j < n; j += lanes8) partial += load8(a + j) * load8(b + j);
  return ((partial[0] + partial[4]) + (partial[2] + partial[6])) +
         ((partial[1] + partial[5]) + (partial[3] + partial[7]));
}

}  // namespace

int64_t attention_backward_scratch_floats(int64_t len, int64_t head_dim) {
  return (4 * head_dim + 2 * query_block) * padded_keys(len) + 2 * query_block * head_dim;
}

// Per kv head, keys and values are transposed to (head_dim, padded) so that every loop over
// keys is contiguous, and their gradients accumulate in that layout (transposed back at the
// end). Queries go in blocks of 8: scores, softmax, dp and d score of the block, then dq, and
// one update of dk and dv per key chunk for the whole block. (Long: one register-blocked kernel,
// kept whole so that its block buffers and loop bounds stay in one view.)
void attention_causal_backward(const float* q, int64_t q_stride, const float* k, const float* v,
                               int64_t kv_stride, const float* dout, int64_t dout_stride, float* dq,
                               int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                               int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                               float* scratch) {
  const int64_t padded = padded_keys(len);
  float* keys_t = scratch;                          // (head_dim, padded) one kv head's keys
  float* values_t = keys_t + head_dim * padded;     // (head_dim, padded) its values
  float* dkeys_t = values_t + head_dim * padded;    // (head_dim, padded) d / d keys
  float* dvalues_t = dkeys_t + head_dim * padded;   // (head_dim, padded) d / d values
  float* probs = dvalues_t + head_dim * padded;     // (query_block, padded) softmax weights
  float* dscores = probs + query_block * padded;    // (query_block, padded) dp, then d score
  float* queries = dscores + query_block * padded;  // (query_block, head_dim) the block's q
  float* grads = queries + query_block * head_dim;  // (query_block, head_dim) its dout
  const int64_t heads_per_kv = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t kv_head = 0; kv_head < n_kv_heads; ++kv_head) {
    const int64_t kv_column = kv_head * head_dim;
    // Padding columns are zero: products there stay finite and add nothing.
    std::fill_n(keys_t, 4 * head_dim * padded, 0.0f);
    for (int64_t t = 0; t < len; ++t) {
      for (int64_t d = 0; d < head_dim; ++d) {
        keys_t[d * padded + t] = k[t * kv_stride + kv_column + d];
        values_t[d * padded + t] = v[t * kv_stride + kv_column + d];
      }
    }
    for (int64_t head = kv_head * heads_per_kv; head < (kv_head + 1) * heads_per_kv; ++head) {
      const int64_t column = head * head_dim;
      for (int64_t t0 = 0; t0 < len; t0 += query_block) {
        const int64_t rows = std::min(query_block, len - t0);
        const int64_t keys_end = padded_keys(t0 + rows);         // covers the last query's keys
        std::fill_n(queries, 2 * query_block * head_dim, 0.0f);  // rows past the end stay 0
        for (int64_t r = 0; r < rows; ++r) {
          std::copy_n(q + (t0 + r) * q_stride + column, head_dim, queries + r * head_dim);
          std::copy_n(dout + (t0 + r) * dout_stride + column, head_dim, grads + r * head_dim);
        }
        // Softmax over keys 0 .. t0 + r of scale * q.k, as the forward computed it; masked
        // keys and rows past the end weigh exactly 0.
        block_products(queries, keys_t, padded, head_dim, keys_end, probs);
        block_products(grads, values_t, padded, head_dim, keys_end, dscores);
        for (int64_t r = 0; r < query_block; ++r) {
          float* p = probs + r * padded;
          float* ds = dscores + r * padded;
          const int64_t keys = r < rows ? t0 + r + 1 : 0;
          float largest = -INFINITY;
          for (int64_t j = 0; j < keys; ++j) largest = std::max(largest, p[j] * scale);
          float sum = 0.0f;
          for (int64_t j = 0; j < keys; ++j) sum += (p[j] = fast_exp(p[j] * scale - largest));
          const float inv_sum = keys > 0 ? 1.0f / sum : 0.0f;
          for (int64_t j = 0; j < keys; ++j) p[j] *= inv_sum;
          std::fill(p + keys, p + keys_end, 0.0f);
          // d score_j = p_j (dp_j - sum_i p_i dp_i), scaled back to d (q.k).
          const float expected = dot_lanes(p, ds, keys_end);
          for (int64_t j = 0; j < keys_end; ++j) ds[j] = p[j] * (ds[j] - expected) * scale;
        }
        // dq_r = sum_j d score_rj k_j.
        for (int64_t r = 0; r < rows; ++r) {
          float* dquery = dq + (t0 + r) * dq_stride + column;
          for (int64_t d = 0; d < head_dim; ++d) {
            dquery[d] = dot_lanes(dscores + r * padded, keys_t + d * padded, keys_end);
          }
        }
        // dk_j += sum_r d score_rj q_r;  dv_j += sum_r p_rj dout_r.
        for (int64_t d = 0; d < head_dim; ++d) {
          for (int64_t j = 0; j < keys_end; j += lanes8) {
            float8 dkey = load8(dkeys_t + d * padded + j);
            float8 dvalue = load8(dvalues_t + d * padded + j);
            for (int64_t r = 0; r < query_block; ++r) {
              dkey += load8(dscores + r * padded + j) * queries[r * head_dim + d];
              dvalue += load8(probs + r * padded + j) * grads[r * head_dim + d];
            }
            store8(dkeys_t + d * padded + j, dkey);
            store8(dvalues_t + d * padded + j, dvalue);
          }
        }
      }
    }
    for (int64_t t = 0; t < len; ++t) {
      for (int64_t d = 0; d < head_dim; ++d) {
        dk[t * dkv_stride + kv_column + d] = dkeys_t[d * padded + t];
        dv[t * dkv_stride + kv_column + d] = dvalues_t[d * padded + t];
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
