// Plain twins of the sequential backward kernels: the textbook derivative of each layer, direct
// loops (the convolution's input gradient gathered per input value, without im2col or GEMM),
// sums and transcendental functions in double.
#include <cmath>
#include <limits>
#include <vector>

#include "fracsweep/nn/sequential_backward.hpp"

namespace fracsweep::ref {

void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias) {
  if (dx) {
    for (int64_t e = 0; e < n; ++e) {
      for (int64_t i = 0; i < in; ++i) {
        double sum = 0;
        for (int64_t o = 0; o < out; ++o)
          sum += static_cast<double>(dy[e * out + o]) * weight[o * in + i];
        dx[e * in + i] = static_cast<float>(sum);
      }
    }
  }
  for (int64_t o = 0; o < out; ++o) {
    if (dweight) {
      for (int64_t i = 0; i < in; ++i) {
        double sum = 0;
        for (int64_t e = 0; e < n; ++e) sum += static_cast<double>(dy[e * out + o]) * x[e * in + i];
        dweight[o * in + i] += static_cast<float>(sum);
      }
    }
    if (dbias) {
      double sum = 0;
      for (int64_t e = 0; e < n; ++e) sum += dy[e * out + o];
      dbias[o] += static_cast<float>(sum);
    }
  }
}

void conv2d_backward(int64_t n, const Window2d& w, int64_t out_channels, const float* x,
                     const float* weight, const float* dy, float* dx, float* dweight,
                     float* dbias) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  auto dy_at = [&](int64_t e, int64_t o, int64_t oy, int64_t ox) {
    return static_cast<double>(dy[((e * out_channels + o) * out_h + oy) * out_w + ox]);
  };
  auto weight_at = [&](int64_t o, int64_t c, int64_t ky, int64_t kx) {
    return static_cast<double>(weight[((o * w.channels + c) * w.kernel_h + ky) * w.kernel_w + kx]);
  };
  if (dx) {
    // Input value (c, iy, ix) is read by output (oy, ox) through kernel tap (ky, kx) when
    // oy * stride - padding + ky = iy (and likewise for x).
    for (int64_t e = 0; e < n; ++e) {
      for (int64_t c = 0; c < w.channels; ++c) {
        for (int64_t iy = 0; iy < w.height; ++iy) {
          for (int64_t ix = 0; ix < w.width; ++ix) {
            double sum = 0;
            for (int64_t o = 0; o < out_channels; ++o) {
              for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
                const int64_t sy = iy + w.padding - ky;
                if (sy < 0 || sy % w.stride != 0 || sy / w.stride >= out_h) continue;
                for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
                  const int64_t sx = ix + w.padding - kx;
                  if (sx < 0 || sx % w.stride != 0 || sx / w.stride >= out_w) continue;
                  sum += dy_at(e, o, sy / w.stride, sx / w.stride) * weight_at(o, c, ky, kx);
                }
              }
            }
            dx[((e * w.channels + c) * w.height + iy) * w.width + ix] = static_cast<float>(sum);
          }
        }
      }
    }
  }
  for (int64_t o = 0; o < out_channels; ++o) {
    if (dweight) {
      for (int64_t c = 0; c < w.channels; ++c) {
        for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
          for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
            double sum = 0;
            for (int64_t e = 0; e < n; ++e) {
              for (int64_t oy = 0; oy < out_h; ++oy) {
                for (int64_t ox = 0; ox < out_w; ++ox) {
                  const int64_t iy = oy * w.stride + ky - w.padding,
                                ix = ox * w.stride + kx - w.padding;
                  if (iy < 0 || iy >= w.height || ix < 0 || ix >= w.width) continue;
                  sum += dy_at(e, o, oy, ox) *
                         x[((e * w.channels + c) * w.height + iy) * w.width + ix];
                }
              }
            }
            dweight[((o * w.channels + c) * w.kernel_h + ky) * w.kernel_w + kx] +=
                static_cast<float>(sum);
          }
        }
      }
    }
    if (dbias) {
      double sum = 0;
      for (int64_t e = 0; e < n; ++e) {
        for (int64_t oy = 0; oy < out_h; ++oy) {
          for (int64_t ox = 0; ox < out_w; ++ox) sum += dy_at(e, o, oy, ox);
        }
      }
      dbias[o] += static_cast<float>(sum);
    }
  }
}

void batchnorm_backward(int64_t n, int64_t channels, int64_t spatial, const float* x,
                        const float* gamma, const float* mean, const float* var, double eps,
                        const float* dy, float* dx, float* dgamma, float* dbeta, float* dmean,
                        float* dvar) {
  for (int64_t c = 0; c < channels; ++c) {
    const double g = gamma ? gamma[c] : 1.0, v = var[c] + eps;
    double sum_dy = 0, sum_dy_centred = 0;
    for (int64_t e = 0; e < n; ++e) {
      for (int64_t i = 0; i < spatial; ++i) {
        const int64_t at = (e * channels + c) * spatial + i;
        sum_dy += dy[at];
        sum_dy_centred += static_cast<double>(dy[at]) * (static_cast<double>(x[at]) - mean[c]);
        if (dx) dx[at] = static_cast<float>(dy[at] * g / std::sqrt(v));
      }
    }
    // y = (x - mean) v^(-1/2) g + beta: dy/dg = (x - mean) v^(-1/2), dy/dmean = -g v^(-1/2),
    // dy/dvar = -(x - mean) g v^(-3/2) / 2.
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_centred / std::sqrt(v));
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dmean) dmean[c] += static_cast<float>(-g / std::sqrt(v) * sum_dy);
    if (dvar) dvar[c] += static_cast<float>(-0.5 * g * std::pow(v, -1.5) * sum_dy_centred);
  }
}

void relu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  for (int64_t i = 0; i < count; ++i) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}

void gelu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  const double pi = std::acos(-1.0);
  for (int64_t i = 0; i < count; ++i) {
    const double v = x[i];
    const double cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * pi);
    dx[i] = static_cast<float>(dy[i] * (cdf + v * pdf));
  }
}

void tanh_backward(int64_t count, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < count; ++i) {
    const double t = y[i];
    dx[i] = static_cast<float>(dy[i] * (1.0 - t * t));
  }
}

void maxpool2d_backward(int64_t n, const Window2d& w, const float* x, const float* dy, float* dx) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  const int64_t size = n * w.channels * w.height * w.width;
  std::vector<double> sum(static_cast<size_t>(size), 0.0);  // (n, C, H, W)
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < w.channels; ++c) {
      const int64_t plane = (e * w.channels + c) * w.height * w.width;
      for (int64_t oy = 0; oy < out_h; ++oy) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          // The window's maximum as ref::maxpool2d_forward computes it, then the first element
          // (row by row) equal to it, or the first NaN.
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              const float v = x[plane + (oy * w.stride + ky) * w.width + ox * w.stride + kx];
              if (std::isnan(v)) best = v;
              if (!std::isnan(best) && v > best) best = v;
            }
          }
          int64_t chosen = -1;
          for (int64_t ky = 0; ky < w.kernel_h && chosen < 0; ++ky) {
            for (int64_t kx = 0; kx < w.kernel_w && chosen < 0; ++kx) {
              const int64_t at = plane + (oy * w.stride + ky) * w.width + ox * w.stride + kx;
              if (std::isnan(best) ? std::isnan(x[at]) : x[at] == best) chosen = at;
            }
          }
          sum[static_cast<size_t>(chosen)] += dy[((e * w.channels + c) * out_h + oy) * out_w + ox];
        }
      }
    }
  }
  for (int64_t i = 0; i < size; ++i) dx[i] = static_cast<float>(sum[static_cast<size_t>(i)]);
}

void avgpool2d_backward(int64_t n, const Window2d& w, const float* dy, float* dx) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  const double area = static_cast<double>(w.kernel_h * w.kernel_w);
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < w.channels; ++c) {
      for (int64_t iy = 0; iy < w.height; ++iy) {
        for (int64_t ix = 0; ix < w.width; ++ix) {
          // Windows (oy, ox) covering (iy, ix): oy * stride <= iy < oy * stride + kernel.
          double sum = 0;
          for (int64_t oy = 0; oy < out_h; ++oy) {
            if (iy < oy * w.stride || iy >= oy * w.stride + w.kernel_h) continue;
            for (int64_t ox = 0; ox < out_w; ++ox) {
              if (ix < ox * w.stride || ix >= ox * w.stride + w.kernel_w) continue;
              sum += dy[((e * w.channels + c) * out_h + oy) * out_w + ox];
            }
          }
          dx[((e * w.channels + c) * w.height + iy) * w.width + ix] =
              static_cast<float>(sum / area);
        }
      }
    }
  }
}

void softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx) {
  for (int64_t e = 0; e < n; ++e) {
    // dx_i = sum_j dy_j dp_j/dx_i = sum_j dy_j p_j (delta_ij - p_i)
    for (int64_t i = 0; i < features; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < features; ++j) {
        const double pj = y[e * features + j], pi = y[e * features + i];
        sum += dy[e * features + j] * pj * ((i == j ? 1.0 : 0.0) - pi);
      }
      dx[e * features + i] = static_cast<float>(sum);
    }
  }
}

void log_softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx) {
  for (int64_t e = 0; e < n; ++e) {
    // dx_i = sum_j dy_j (delta_ij - p_i), p_i = exp(y_i)
    for (int64_t i = 0; i < features; ++i) {
      const double pi = std::exp(static_cast<double>(y[e * features + i]));
      double sum = 0;
      for (int64_t j = 0; j < features; ++j)
        sum += dy[e * features + j] * ((i == j ? 1.0 : 0.0) - pi);
      dx[e * features + i] = static_cast<float>(sum);
    }
  }
}

void column_sum_squares(int64_t rows, int64_t features, const float* x, double* sq) {
  for (int64_t j = 0; j < features; ++j) {
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r)
      sum += static_cast<double>(x[r * features + j]) * x[r * features + j];
    sq[j] += sum;
  }
}

void conv2d_column_sum_squares(int64_t n, const Window2d& w, const float* x, double* sq) {
  // Row by row of the im2col matrix: (e, oy, ox) x (c, ky, kx), padding reads 0.
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t oy = 0; oy < w.out_height(); ++oy) {
      for (int64_t ox = 0; ox < w.out_width(); ++ox) {
        for (int64_t c = 0; c < w.channels; ++c) {
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              const int64_t iy = oy * w.stride + ky - w.padding,
                            ix = ox * w.stride + kx - w.padding;
              if (iy < 0 || iy >= w.height || ix < 0 || ix >= w.width) continue;
              const double v = x[((e * w.channels + c) * w.height + iy) * w.width + ix];
              sq[(c * w.kernel_h + ky) * w.kernel_w + kx] += v * v;
            }
          }
        }
      }
    }
  }
}

void batchnorm_normalised_sum_squares(int64_t n, int64_t channels, int64_t spatial, const float* x,
                                      const float* mean, const float* var, double eps, double* sq) {
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t e = 0; e < n; ++e) {
      for (int64_t i = 0; i < spatial; ++i) {
        const double xhat = (x[(e * channels + c) * spatial + i] - static_cast<double>(mean[c])) /
                            std::sqrt(var[c] + eps);
        sq[c] += xhat * xhat;
      }
    }
  }
}

}  // namespace fracsweep::ref
