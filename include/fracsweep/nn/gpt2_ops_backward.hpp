#pragma once
// Backward passes of GPT-2's own row-wise kernels (LayerNorm, tanh-GELU and the bias add of
// gpt2.cpp's forward pass; attention's backward pass is ops_backward.hpp's, which reads GPT-2's
// interleaved q | k | v rows through strides): given what the forward kernel read and the
// gradient at its output, the gradient at its inputs and parameters. Each has a plain twin in
// namespace `ref` below (direct loops, sums in double) that the tests compare against.
// Hot loops: no allocation, no exceptions, no logging.
#include <cstdint>

namespace fracsweep {

// Backward of layernorm_rows (out = (x - mean) / sqrt(var + eps) * weight + bias, per row of
// x (rows, d)), with xhat = (x - mean) / sqrt(var + eps):
//   dx (rows, d)  += d out / d x applied to dout (rows, d)  (accumulates: the residual
//                    stream's own gradient is already in dx)
//   dweight (d)   += sum over rows of dout * xhat            (double: rows can be 10^5)
//   dbias (d)     += sum over rows of dout
void layernorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                             double* dweight, double* dbias, int64_t rows, int64_t d, float eps);

// Backward of gelu_tanh (y = x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))) over n
// elements, from the forward's input x: dx[i] = dy[i] * gelu'(x[i]). dx may alias dy.
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n);

// Backward of add_bias_rows (y[r, :] = x[r, :] + bias) for the bias: dbias[j] += sum over rows
// of dy[r, j], dy (rows, d). (The gradient at x is dy itself.)
void add_bias_rows_backward(const float* dy, int64_t rows, int64_t d, double* dbias);

namespace ref {
void layernorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                             double* dweight, double* dbias, int64_t rows, int64_t d, float eps);
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n);
void add_bias_rows_backward(const float* dy, int64_t rows, int64_t d, double* dbias);
}  // namespace ref

}  // namespace fracsweep
