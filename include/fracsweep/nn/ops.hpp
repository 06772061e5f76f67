#pragma once
// Row-wise kernels of the Llama forward pass. Each has a plain twin in ops_ref.hpp that the
// tests compare against (rope_table + rope_rows together against ref::rope_rows). Hot loops:
// no allocation, no exceptions, no logging. Kernels on enough data run on the rank's OpenMP
// threads (threads.hpp), split by rows or heads: results do not depend on the thread count.
#include <cstdint>
#include <vector>

namespace fracsweep {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, for r < rows; x, out (rows, d).
void rmsnorm_rows(const float* x, const float* weight, float* out, int64_t rows, int64_t d,
                  float eps);

// Rotary embedding on adjacent pairs (llama2.c convention): pair (2i, 2i+1) of each head of
// row r rotates by positions[r] * theta^(-2i / head_dim). The angles depend on the position
// only, so they are tabulated once (per model) and looked up for q and k of every layer.
//   rope_table: table (n_positions, head_dim) for positions 0 .. n_positions - 1: cos of pair
//               i's angle at column 2i, sin at 2i + 1.
//   rope_rows:  in place on x (rows, n_heads * head_dim); every positions[r] < the table's rows.
void rope_table(int64_t n_positions, int64_t head_dim, float theta, float* table);
void rope_rows(float* x, const int32_t* positions, const float* table, int64_t rows,
               int64_t n_heads, int64_t head_dim);

// Causal grouped-query attention of one sequence of `len` tokens.
//   q   (len, n_heads * head_dim)    row stride q_stride
//   k,v (len, n_kv_heads * head_dim) row stride kv_stride
//   out (len, n_heads * head_dim)    row stride out_stride
//   scratch: at least attention_scratch_floats(len, head_dim) floats.
void attention_causal(const float* q, int64_t q_stride, const float* k, const float* v,
                      int64_t kv_stride, float* out, int64_t out_stride, int64_t len,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* scratch);
// The same attention for the queries of positions first .. len - 1 only (incremental decoding:
// keys and values of positions 0 .. len - 1 are cached): q and out hold len - first rows, the
// first one at position `first`; k and v hold len rows. Each output row is bitwise the row
// attention_causal computes for that position.
void attention_causal_rows(const float* q, int64_t q_stride, const float* k, const float* v,
                           int64_t kv_stride, float* out, int64_t out_stride, int64_t first,
                           int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                           float* scratch);
int64_t attention_scratch_floats(int64_t len, int64_t head_dim);

// One causal attention problem of attention_causal_spans: queries of positions first .. len - 1
// in rows q_row .. q_row + len - first - 1 of q and out; keys and values of positions 0 .. len - 1
// in rows kv_row .. kv_row + len - 1 of k and v.
struct AttentionSpan {
  int64_t q_row = 0;
  int64_t kv_row = 0;
  int64_t first = 0;
  int64_t len = 0;
};
// attention_causal_rows of every span (the sequences of a batch, or the new rows of a decoded
// sequence), in parallel over (span, kv head). Each output row is bitwise the one
// attention_causal_rows computes. scratch: grown to attention_scratch_floats(longest span,
// head_dim) per thread on first use, reused afterwards.
void attention_causal_spans(const float* q, int64_t q_stride, const float* k, const float* v,
                            int64_t kv_stride, float* out, int64_t out_stride,
                            const std::vector<AttentionSpan>& spans, int64_t n_heads,
                            int64_t n_kv_heads, int64_t head_dim, std::vector<float>& scratch);

// gate[i] = silu(gate[i]) * up[i] for i < n  (SwiGLU).
void swiglu(float* gate, const float* up, int64_t n);

// x[i] += y[i] for i < n.
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace fracsweep
