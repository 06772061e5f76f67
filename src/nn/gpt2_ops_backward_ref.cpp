// Reference twins of GPT-2's backward kernels (see gpt2_ops_backward.hpp): the textbook
// derivative of each forward formula, written out directly, every sum in double, for tests.
#include <cmath>
#include <numbers>

#include "fracsweep/nn/gpt2_ops_backward.hpp"

namespace fracsweep::ref {

void layernorm_rows_backward(const float* x, const float* weight, const float* dout, float* dx,
                             double* dweight, double* dbias, int64_t rows, int64_t d, float eps) {
  const auto n = static_cast<double>(d);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    double mean = 0.0;
    for (int64_t i = 0; i < d; ++i) mean += row[i];
    mean /= n;
    double variance = 0.0;
    for (int64_t i = 0; i < d; ++i) variance += (row[i] - mean) * (row[i] - mean);
    variance /= n;
    const double inv = 1.0 / std::sqrt(variance + eps);
    // Jacobian d out_i / d x_j = w_i inv ([i = j] - 1/d - xhat_i xhat_j / d), applied to dout.
    for (int64_t j = 0; j < d; ++j) {
      const double xhat_j = (row[j] - mean) * inv;
      double grad = 0.0;
      for (int64_t i = 0; i < d; ++i) {
        const double xhat_i = (row[i] - mean) * inv;
        const double jacobian =
            weight[i] * inv * ((i == j ? 1.0 : 0.0) - 1.0 / n - xhat_i * xhat_j / n);
        grad += jacobian * dout[r * d + i];
      }
      dx[r * d + j] = static_cast<float>(dx[r * d + j] + grad);
      dweight[j] += dout[r * d + j] * xhat_j;
      dbias[j] += dout[r * d + j];
    }
  }
}

void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  const double c = std::sqrt(2.0 / std::numbers::pi), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double t = std::tanh(c * (v + a * v * v * v));
    const double slope = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * a * v * v);
    dx[i] = static_cast<float>(dy[i] * slope);
  }
}

void add_bias_rows_backward(const float* dy, int64_t rows, int64_t d, double* dbias) {
  for (int64_t j = 0; j < d; ++j) {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) sum += dy[r * d + j];
    dbias[j] += sum;
  }
}

}  // namespace fracsweep::ref
