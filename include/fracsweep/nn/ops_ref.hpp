#pragma once
// Plain reference twins of the optimized kernels (gemm.hpp, ops.hpp): the obvious loops,
// accumulating in double, for tests. Same shapes and conventions as the fast versions.
#include <cstdint>

namespace fracsweep::ref {

void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w,
               int64_t ldw, float* c, int64_t ldc, float beta = 0.0f);
void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta = 0.0f);
void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, float beta = 0.0f);
void rmsnorm_rows(const float* x, const float* weight, float* out, int64_t rows, int64_t d,
                  float eps);
void rope_rows(float* x, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
               float theta);
void attention_causal(const float* q, int64_t q_stride, const float* k, const float* v,
                      int64_t kv_stride, float* out, int64_t out_stride, int64_t len,
                      int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
void attention_causal_rows(const float* q, int64_t q_stride, const float* k, const float* v,
                           int64_t kv_stride, float* out, int64_t out_stride, int64_t first,
                           int64_t len, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
void swiglu(float* gate, const float* up, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace fracsweep::ref
