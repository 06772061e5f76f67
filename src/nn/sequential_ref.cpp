// Plain twins of the sequential layer kernels: the textbook formula of each layer, direct loops
// (convolution without im2col or GEMM), sums and transcendental functions in double.
#include <cmath>
#include <limits>

#include "fracsweep/nn/log_sum_exp.hpp"
#include "fracsweep/nn/sequential.hpp"

namespace fracsweep::ref {

void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                    const float* bias, float* y) {
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        sum += static_cast<double>(x[e * in + i]) * weight[o * in + i];
      y[e * out + o] = static_cast<float>(sum);
    }
  }
}

void conv2d_forward(int64_t n, const Window2d& w, int64_t out_channels, const float* x,
                    const float* weight, const float* bias, float* y) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t o = 0; o < out_channels; ++o) {
      for (int64_t oy = 0; oy < out_h; ++oy) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          double sum = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < w.channels; ++c) {
            for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
              for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
                const int64_t iy = oy * w.stride + ky - w.padding,
                              ix = ox * w.stride + kx - w.padding;
                if (iy < 0 || iy >= w.height || ix < 0 || ix >= w.width) continue;
                sum +=
                    static_cast<double>(x[((e * w.channels + c) * w.height + iy) * w.width + ix]) *
                    weight[((o * w.channels + c) * w.kernel_h + ky) * w.kernel_w + kx];
              }
            }
          }
          y[((e * out_channels + o) * out_h + oy) * out_w + ox] = static_cast<float>(sum);
        }
      }
    }
  }
}

void batchnorm_forward(int64_t n, int64_t channels, int64_t spatial, const float* gamma,
                       const float* beta, const float* mean, const float* var, double eps,
                       float* x) {
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < spatial; ++i) {
        float& value = x[(e * channels + c) * spatial + i];
        const double normalised = (value - static_cast<double>(mean[c])) / std::sqrt(var[c] + eps);
        value = static_cast<float>(normalised * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0));
      }
    }
  }
}

void relu_forward(int64_t count, float* x) {
  for (int64_t i = 0; i < count; ++i) {
    if (x[i] < 0) x[i] = 0;
  }
}

void gelu_forward(int64_t count, float* x) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(v * 0.5 * std::erfc(-v / std::sqrt(2.0)));
  }
}

void tanh_forward(int64_t count, float* x) {
  for (int64_t i = 0; i < count; ++i)
    x[i] = static_cast<float>(std::tanh(static_cast<double>(x[i])));
}

void maxpool2d_forward(int64_t n, const Window2d& w, const float* x, float* y) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < w.channels; ++c) {
      for (int64_t oy = 0; oy < out_h; ++oy) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              const float v = x[((e * w.channels + c) * w.height + oy * w.stride + ky) * w.width +
                                ox * w.stride + kx];
              if (std::isnan(v)) best = v;  // NaN anywhere in the window wins
              if (!std::isnan(best) && v > best) best = v;
            }
          }
          y[((e * w.channels + c) * out_h + oy) * out_w + ox] = best;
        }
      }
    }
  }
}

void avgpool2d_forward(int64_t n, const Window2d& w, const float* x, float* y) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < w.channels; ++c) {
      for (int64_t oy = 0; oy < out_h; ++oy) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          double sum = 0;
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              sum += x[((e * w.channels + c) * w.height + oy * w.stride + ky) * w.width +
                       ox * w.stride + kx];
            }
          }
          y[((e * w.channels + c) * out_h + oy) * out_w + ox] =
              static_cast<float>(sum / static_cast<double>(w.kernel_h * w.kernel_w));
        }
      }
    }
  }
}

// Both through metrics' plain log-sum-exp twin (double throughout).
void softmax_forward(int64_t n, int64_t features, float* x) {
  for (int64_t e = 0; e < n; ++e) {
    float* row = x + e * features;
    const double log_sum = log_sum_exp_ref(row, features);
    for (int64_t i = 0; i < features; ++i) row[i] = static_cast<float>(std::exp(row[i] - log_sum));
  }
}

void log_softmax_forward(int64_t n, int64_t features, float* x) {
  for (int64_t e = 0; e < n; ++e) {
    float* row = x + e * features;
    const double log_sum = log_sum_exp_ref(row, features);
    for (int64_t i = 0; i < features; ++i) row[i] = static_cast<float>(row[i] - log_sum);
  }
}

}  // namespace fracsweep::ref
