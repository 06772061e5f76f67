// Fast row-wise kernels (see ops.hpp) for GCC at -O3 -march=x86-64-v3. Plain loops where GCC
// vectorises them: reductions keep independent partial sums in lanes (IEEE order would forbid
// reordering one sum), exp is fast_exp.hpp's branch-free polynomial instead of a libm call, and
// selects go through integer masks. Attention's two register-blocked products use GCC's vector
// extension.
#include "fracsweep/nn/ops.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "float8.hpp"
#include "fracsweep/nn/fast_exp.hpp"
#include "fracsweep/nn/threads.hpp"

namespace fracsweep {
namespace {

// Partial sums per reduction: two 8-float AVX2 registers, so consecutive adds are independent.
constexpr int64_t reduction_lanes = 16;

float sum_of_squares(const float* x, int64_t n) {
  float partial[reduction_lanes] = {};
  int64_t i = 0;
  for (; i + reduction_lanes <= n; i += reduction_lanes) {
    for (int64_t lane = 0; lane < reduction_lanes; ++lane) {
      partial[lane] += x[i + lane] * x[i + lane];
    }
  }
  float total = 0.0f;
  for (; i < n; ++i) total += x[i] * x[i];
  for (float value : partial) total += value;
  return total;
}

// row[j] = exp(row[j] - largest) for j < n, a multiple of 8 (attention's padded rows);
// returns their sum, accumulated in 8 lanes.
float exp_shifted_and_sum(float* row, int64_t n, float largest) {
  float partial[8] = {};
  for (int64_t i = 0; i < n; i += 8) {
    for (int64_t lane = 0; lane < 8; ++lane) {
      const float e = fast_exp(row[i + lane] - largest);
      row[i + lane] = e;
      partial[lane] += e;
    }
  }
  // A tree instead of 8 dependent adds: this runs once per query and head.
  return ((partial[0] + partial[4]) + (partial[2] + partial[6])) +
         ((partial[1] + partial[5]) + (partial[3] + partial[7]));
}

}  // namespace

void rmsnorm_rows(const float* x, const float* weight, float* out, int64_t rows, int64_t d,
                  float eps) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * rows * d))
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    float* out_row = out + r * d;
    const float inv_rms = 1.0f / std::sqrt(sum_of_squares(row, d) / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) out_row[i] = row[i] * inv_rms * weight[i];
  }
}

void rope_table(int64_t n_positions, int64_t head_dim, float theta, float* table) {
  for (int64_t i = 0; i < head_dim; i += 2) {
    const double frequency = std::pow(static_cast<double>(theta),
                                      -static_cast<double>(i) / static_cast<double>(head_dim));
    for (int64_t position = 0; position < n_positions; ++position) {
      const double angle = static_cast<double>(position) * frequency;
      table[position * head_dim + i] = static_cast<float>(std::cos(angle));
      table[position * head_dim + i + 1] = static_cast<float>(std::sin(angle));
    }
  }
}

void rope_rows(float* x, const int32_t* positions, const float* table, int64_t rows,
               int64_t n_heads, int64_t head_dim) {
#pragma omp parallel for schedule(static) if (worth_threads(2 * rows * n_heads * head_dim))
  for (int64_t r = 0; r < rows; ++r) {
    const float* cos_sin = table + positions[r] * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (r * n_heads + h) * head_dim;
      for (int64_t i = 0; i < head_dim; i += 2) {
        const float first = head[i];
        const float second = head[i + 1];
        head[i] = first * cos_sin[i] - second * cos_sin[i + 1];
        head[i + 1] = first * cos_sin[i + 1] + second * cos_sin[i];
      }
    }
  }
}

namespace {

// Attention works on blocks of `query_block` consecutive queries of one head. Their scores
// against 8 keys at a time, and their weighted sums of values over 8 head dimensions at a time,
// stay in query_block registers of 8 floats (float8.hpp).
using simd::float8;
using simd::lanes8;
using simd::load8;
using simd::padded_keys;
using simd::splat8;
using simd::store8;
constexpr int64_t query_block = 8;

// scores (query_block, padded_len), columns [0, keys_end) = queries (query_block, head_dim)
// times keys_t (head_dim, padded_len), for the block of queries t0 .. t0 + query_block - 1,
// with the causal mask: -inf where key > t0 + r. keys_end is a multiple of 8. Returns each
// row's largest score in row_max (NaN scores are skipped: they make the row NaN later).
void block_scores(const float* queries, const float* keys_t, int64_t padded_len, int64_t head_dim,
                  int64_t t0, int64_t keys_end, float* scores, float* row_max) {
  constexpr float minus_infinity = -std::numeric_limits<float>::infinity();
  const float8 lane_index = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f};
  float8 largest[query_block];
  for (float8& value : largest) value = splat8(minus_infinity);
  for (int64_t j = 0; j < keys_end; j += lanes8) {
    float8 sums[query_block] = {};
    for (int64_t d = 0; d < head_dim; ++d) {
      const float8 keys = load8(keys_t + d * padded_len + j);
      for (int64_t r = 0; r < query_block; ++r) sums[r] += queries[r * head_dim + d] * keys;
    }
    if (j + lanes8 - 1 > t0) {  // some keys of this chunk come after some query of the block
      const float8 key = lane_index + static_cast<float>(j - t0);  // key - t0 per lane
      for (int64_t r = 0; r < query_block; ++r) {
        sums[r] = key > static_cast<float>(r) ? splat8(minus_infinity) : sums[r];
      }
    }
    for (int64_t r = 0; r < query_block; ++r) {
      largest[r] = sums[r] > largest[r] ? sums[r] : largest[r];
      store8(scores + r * padded_len + j, sums[r]);
    }
  }
  for (int64_t r = 0; r < query_block; ++r) {
    row_max[r] = minus_infinity;
    for (int64_t l = 0; l < lanes8; ++l) {
      row_max[r] = largest[r][l] > row_max[r] ? largest[r][l] : row_max[r];
    }
  }
}

// out[r - first_row, d] = inv_sum[r] * sum_{j <= t0 + r} weights[r, j] v[j, d] for
// first_row <= r < rows, d < head_dim: queries t0 + first_row .. t0 + rows - 1 of the block
// t0 .. t0 + query_block - 1 (each row's sums do not depend on which other rows are computed).
// weights (query_block, padded_len); v rows kv_stride apart; out rows out_stride apart. Keys after
// a query are never touched (not even with weight 0, which a non-finite value would turn into NaN).
void block_weighted_sum(const float* weights, int64_t padded_len, const float* inv_sum,
                        const float* v, int64_t kv_stride, int64_t t0, int64_t head_dim, float* out,
                        int64_t out_stride, int64_t first_row, int64_t rows) {
  int64_t d0 = 0;
  for (; d0 + lanes8 <= head_dim; d0 += lanes8) {
    float8 sums[query_block] = {};
    for (int64_t j = 0; j < t0; ++j) {  // keys every query of the block sees
      const float8 value = load8(v + j * kv_stride + d0);
      for (int64_t r = 0; r < query_block; ++r) sums[r] += weights[r * padded_len + j] * value;
    }
    for (int64_t r = first_row; r < rows; ++r) {
      for (int64_t j = t0; j <= t0 + r; ++j) {  // the causal triangle inside the block
        sums[r] += weights[r * padded_len + j] * load8(v + j * kv_stride + d0);
      }
      store8(out + (r - first_row) * out_stride + d0, sums[r] * inv_sum[r]);
    }
  }
  for (; d0 < head_dim; ++d0) {  // head_dim not a multiple of 8
    for (int64_t r = first_row; r < rows; ++r) {
      float sum = 0.0f;
      for (int64_t j = 0; j <= t0 + r; ++j) {
        sum += weights[r * padded_len + j] * v[j * kv_stride + d0];
      }
      out[(r - first_row) * out_stride + d0] = sum * inv_sum[r];
    }
  }
}

}  // namespace

int64_t attention_scratch_floats(int64_t len, int64_t head_dim) {
  return (head_dim + query_block) * padded_keys(len) + query_block * head_dim;
}

void attention_causal(const float* q, int64_t q_stride, const float* k, const float* v,
                      int64_t kv_stride, float* out, int64_t out_stride, int64_t len,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* scratch) {
  attention_causal_rows(q, q_stride, k, v, kv_stride, out, out_stride, 0, len, n_heads, n_kv_heads,
                        head_dim, scratch);
}

namespace {

// attention_causal_rows for the query heads of one kv head (they share its transposed keys).
void attention_kv_head(const float* q, int64_t q_stride, const float* k, const float* v,
                       int64_t kv_stride, float* out, int64_t out_stride, int64_t first,
                       int64_t len, int64_t kv_head, int64_t heads_per_kv, int64_t head_dim,
                       float* scratch) {
  const int64_t padded_len = padded_keys(len);
  float* keys_t = scratch;                              // (head_dim, padded_len) one kv head's keys
  float* weights = keys_t + head_dim * padded_len;      // (query_block, padded_len) scores, weights
  float* queries = weights + query_block * padded_len;  // (query_block, head_dim) scaled
  float row_max[query_block];                           // largest score of each query of the block
  float inv_sum[query_block];                           // 1 / softmax denominator of each
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Queries come in the blocks of attention_causal (aligned to query_block from position 0), so
  // that a row's arithmetic is the same whichever rows are computed with it.
  const int64_t first_block = first / query_block * query_block;
  // Transposed keys; padding columns are zero so that scores there stay finite.
  for (int64_t d = 0; d < head_dim; ++d) {
    float* keys_d = keys_t + d * padded_len;
    for (int64_t t = 0; t < len; ++t) keys_d[t] = k[t * kv_stride + kv_head * head_dim + d];
    std::fill(keys_d + len, keys_d + padded_len, 0.0f);
  }
  const float* values = v + kv_head * head_dim;
  for (int64_t head = kv_head * heads_per_kv; head < (kv_head + 1) * heads_per_kv; ++head) {
    for (int64_t t0 = first_block; t0 < len; t0 += query_block) {
      const int64_t first_row = std::max<int64_t>(0, first - t0);  // rows before it: not ours
      const int64_t rows = std::min(query_block, len - t0);
      // Rows not computed (before first_row, past the sequence) stay zero.
      std::fill(queries, queries + query_block * head_dim, 0.0f);
      for (int64_t r = first_row; r < rows; ++r) {
        const float* query = q + (t0 + r - first) * q_stride + head * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) queries[r * head_dim + d] = query[d] * scale;
      }
      const int64_t keys_end = padded_keys(t0 + rows);  // covers the last query's keys
      block_scores(queries, keys_t, padded_len, head_dim, t0, keys_end, weights, row_max);
      for (int64_t r = first_row; r < rows; ++r) {
        // Masked scores are -inf: their weights are exactly 0.
        float* row = weights + r * padded_len;
        inv_sum[r] = 1.0f / exp_shifted_and_sum(row, keys_end, row_max[r]);
      }
      block_weighted_sum(weights, padded_len, inv_sum, values, kv_stride, t0, head_dim,
                         out + (t0 + first_row - first) * out_stride + head * head_dim, out_stride,
                         first_row, rows);
    }
  }
}

}  // namespace

void attention_causal_rows(const float* q, int64_t q_stride, const float* k, const float* v,
                           int64_t kv_stride, float* out, int64_t out_stride, int64_t first,
                           int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                           float* scratch) {
  for (int64_t kv_head = 0; kv_head < n_kv_heads; ++kv_head) {
    attention_kv_head(q, q_stride, k, v, kv_stride, out, out_stride, first, len, kv_head,
                      n_heads / n_kv_heads, head_dim, scratch);
  }
}

void attention_causal_spans(const float* q, int64_t q_stride, const float* k, const float* v,
                            int64_t kv_stride, float* out, int64_t out_stride,
                            const std::vector<AttentionSpan>& spans, int64_t n_heads,
                            int64_t n_kv_heads, int64_t head_dim, std::vector<float>& scratch) {
  int64_t longest = 0;
  int64_t work = 0;  // floats read and written: keys and values, queries and outputs
  for (const AttentionSpan& span : spans) {
    longest = std::max(longest, span.len);
    work += 2 * span.len * n_kv_heads * head_dim + 2 * (span.len - span.first) * n_heads * head_dim;
  }
  const int threads = omp_get_max_threads();
  const int64_t slot = attention_scratch_floats(longest, head_dim);  // one thread's scratch
  // Grows once (first call, or more threads than before); reused afterwards.
  if (scratch.size() < static_cast<size_t>(threads * slot)) {
    scratch.resize(static_cast<size_t>(threads * slot));
  }
  const auto n_tasks = static_cast<int64_t>(spans.size()) * n_kv_heads;
  float* const scratch_base = scratch.data();
  // Tasks differ in cost (sequence lengths): handed out one at a time.
#pragma omp parallel for schedule(dynamic) if (worth_threads(work))
  for (int64_t task = 0; task < n_tasks; ++task) {
    const AttentionSpan& span = spans[static_cast<size_t>(task / n_kv_heads)];
    attention_kv_head(q + span.q_row * q_stride, q_stride, k + span.kv_row * kv_stride,
                      v + span.kv_row * kv_stride, kv_stride, out + span.q_row * out_stride,
                      out_stride, span.first, span.len, task % n_kv_heads, n_heads / n_kv_heads,
                      head_dim, scratch_base + omp_get_thread_num() * slot);
  }
}

void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threads(3 * n))
  for (int64_t i = 0; i < n; ++i) {
    // e^-g saturates at e^88 for g < -88, where silu(g) = g e^g is below 1e-36 anyway.
    const float minus_gate = select_by_mask(gate[i] < -88.0f, 88.0f, -gate[i]);
    gate[i] = gate[i] / (1.0f + fast_exp(minus_gate)) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threads(3 * n))
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace fracsweep
