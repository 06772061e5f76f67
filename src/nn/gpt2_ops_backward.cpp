// Backward kernels of GPT-2's row-wise operations (see gpt2_ops_backward.hpp). They run once per
// gradient next to GEMMs that cost O(d) times more, so they are plain loops; each recomputes
// what it needs of the forward values (LayerNorm's mean and scale with the forward's own
// layernorm_row_scale, GELU's tanh) from the forward's input.
#include "fracsweep/nn/gpt2_ops_backward.hpp"

#include <cmath>

#include "gpt2_weights.hpp"

namespace fracsweep {

void layernorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                             double* dweight, double* dbias, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * d;
    const float* dout_row = dout + r * d;
    float* dx_row = dx + r * d;
    // Mean and scale exactly as the forward pass computed them.
    const auto [mean, inv] = gpt2_detail::layernorm_row_scale(x_row, d, eps);
    // With g = dout * weight: dx_j = inv (g_j - mean(g) - xhat_j mean(g xhat)).
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t i = 0; i < d; ++i) {
      const float xhat = (x_row[i] - mean) * inv;
      const float g = dout_row[i] * weight[i];
      sum_g += g;
      sum_g_xhat += static_cast<double>(g) * xhat;
      dweight[i] += static_cast<double>(dout_row[i]) * xhat;
      dbias[i] += dout_row[i];
    }
    const auto mean_g = static_cast<float>(sum_g / static_cast<double>(d));
    const auto mean_g_xhat = static_cast<float>(sum_g_xhat / static_cast<double>(d));
    for (int64_t i = 0; i < d; ++i) {
      const float xhat = (x_row[i] - mean) * inv;
      dx_row[i] += inv * (dout_row[i] * weight[i] - mean_g - xhat * mean_g_xhat);
    }
  }
}

void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  constexpr float sqrt_2_over_pi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    // y = v/2 (1 + tanh u), u = c (v + a v^3): y' = (1 + tanh u)/2 + v/2 (1 - tanh^2 u) c (1 + 3 a
    // v^2).
    const float v = x[i];
    const float t = std::tanh(sqrt_2_over_pi * (v + 0.044715f * v * v * v));
    const float slope = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * sqrt_2_over_pi *
                                                (1.0f + 3.0f * 0.044715f * v * v);
    dx[i] = dy[i] * slope;
  }
}

void add_bias_rows_backward(const float* dy, int64_t rows, int64_t d, double* dbias) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = dy + r * d;
    for (int64_t j = 0; j < d; ++j) dbias[j] += row[j];
  }
}

}  // namespace fracsweep
