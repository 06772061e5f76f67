#pragma once
// Backward passes of the Llama/GPT-2 row-wise kernels (ops.hpp): given what the forward kernel
// read and the gradient at its output, the gradient at its inputs and weights. Each has a plain
// twin in namespace `ref` below (direct loops, sums in double) that the tests compare against.
// Hot loops: no allocation, no exceptions, no logging.
#include <cstdint>

namespace fracsweep {

// Backward of rmsnorm_rows (out = x / rms(x) * weight) over x (rows, d):
//   dx (rows, d)     += d out / d x applied to dout (rows, d)  (accumulates: the residual
//                       stream's own gradient is already in dx)
//   dweight (d)      += sum over rows of dout * x / rms(x)     (double: rows can be 10^5)
void rmsnorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                           double* dweight, int64_t rows, int64_t d, float eps);

// Backward of rope_rows, in place on the gradient dx (rows, n_heads * head_dim): the rotation
// is orthogonal, so its backward pass rotates each pair by minus the angle (same table).
void rope_rows_backward(float* dx, const int32_t* positions, const float* table, int64_t rows,
                        int64_t n_heads, int64_t head_dim);

// Backward of swiglu (h = silu(gate) * up) over n elements, from the forward's inputs:
//   dgate[i] = dh[i] * up[i] * silu'(gate[i]),  dup[i] = dh[i] * silu(gate[i]).
// dgate / dup may alias dh (each element is read before it is written).
void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                     int64_t n);

// Backward of attention_causal for one sequence of `len` tokens, from the forward's inputs
// q (len, n_heads * head_dim; row stride q_stride) and k, v (len, n_kv_heads * head_dim; row
// stride kv_stride), and dout (len, n_heads * head_dim; row stride dout_stride):
//   dq (len, n_heads * head_dim; row stride dq_stride)      overwritten
//   dk, dv (len, n_kv_heads * head_dim; row stride dkv_stride) overwritten (heads that share a
//                                                            kv head add up, in head order)
// The softmax of each query is recomputed from q and k (nothing is kept from the forward).
// scratch: at least attention_backward_scratch_floats(len, head_dim) floats.
void attention_causal_backward(const float* q, int64_t q_stride, const float* k, const float* v,
                               int64_t kv_stride, const float* dout, int64_t dout_stride, float* dq,
                               int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                               int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                               float* scratch);
int64_t attention_backward_scratch_floats(int64_t len, int64_t head_dim);

// sums[j] += sum over rows of x[r, j]^2 for x (rows, cols; row stride ld): the squared input
// norms of Wanda's |w| * ||x_j||_2 (gradient.hpp's input_norm).
void add_column_squares(const float* x, int64_t rows, int64_t cols, int64_t ld, double* sums);

namespace ref {
void rmsnorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                           double* dweight, int64_t rows, int64_t d, float eps);
void rope_rows_backward(float* dx, const int32_t* positions, int64_t rows, int64_t n_heads,
                        int64_t head_dim, float theta);
void swiglu_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                     int64_t n);
void attention_causal_backward(const float* q, int64_t q_stride, const float* k, const float* v,
                               int64_t kv_stride, const float* dout, int64_t dout_stride, float* dq,
                               int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                               int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
}  // namespace ref

}  // namespace fracsweep
