// The layer kernels of the sequential backward pass (sequential_backward.hpp): each layer's
// gradient with respect to its input and parameters, and the input statistics Wanda's norms
// need. Their plain twins are in sequential_backward_ref.cpp; the network pass that strings
// them together is sequential_backward.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/sequential_backward.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

// --- backward kernels

void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias) {
  // dx (n, in) = dy (n, out) * W (out, in)
  if (dx) matmul_nn(n, in, out, dy, out, weight, in, dx, in);
  // dW (out, in) += dy^T (out, n) * x (n, in)
  if (dweight) matmul_tn(out, in, n, dy, out, x, in, dweight, in, 1.0f);
  if (dbias) {
    // Column sums of dy in double, a block of columns at a time so rows are read contiguously.
    constexpr int64_t block = 16;
    for (int64_t o0 = 0; o0 < out; o0 += block) {
      const int64_t width = std::min(block, out - o0);
      double sum[block] = {};
      for (int64_t e = 0; e < n; ++e) {
        const float* row = dy + e * out + o0;
        for (int64_t j = 0; j < width; ++j) sum[j] += row[j];
      }
      for (int64_t j = 0; j < width; ++j) dbias[o0 + j] += static_cast<float>(sum[j]);
    }
  }
}

namespace {

// columns (n * OH * OW, C * KH * KW) = the input values each output position's window reads
// (0 in the padding), as conv2d_forward lays them out.
void im2col(int64_t n, const Window2d& w, const float* x, float* columns) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  for (int64_t e = 0; e < n; ++e) {
    const float* image = x + e * w.channels * w.height * w.width;  // (C, H, W)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        float* row = columns + ((e * out_h + oy) * out_w + ox) * w.patch_size();
        for (int64_t c = 0; c < w.channels; ++c) {
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            const int64_t iy = oy * w.stride - w.padding + ky;
            for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
              const int64_t ix = ox * w.stride - w.padding + kx;
              const bool inside = iy >= 0 && iy < w.height && ix >= 0 && ix < w.width;
              *row++ = inside ? image[(c * w.height + iy) * w.width + ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

// dx (n, C, H, W) = 0, then each im2col entry of `columns` added back to the input value it
// was read from (padding entries are dropped).
void col2im_add(int64_t n, const Window2d& w, const float* columns, float* dx) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  std::fill(dx, dx + n * w.channels * w.height * w.width, 0.0f);
  for (int64_t e = 0; e < n; ++e) {
    float* image = dx + e * w.channels * w.height * w.width;  // (C, H, W)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const float* row = columns + ((e * out_h + oy) * out_w + ox) * w.patch_size();
        for (int64_t c = 0; c < w.channels; ++c) {
          for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
            const int64_t iy = oy * w.stride - w.padding + ky;
            const bool row_inside = iy >= 0 && iy < w.height;
            for (int64_t kx = 0; kx < w.kernel_w; ++kx, ++row) {
              const int64_t ix = ox * w.stride - w.padding + kx;
              if (row_inside && ix >= 0 && ix < w.width)
                image[(c * w.height + iy) * w.width + ix] += *row;
            }
          }
        }
      }
    }
  }
}

}  // namespace

void conv2d_backward(int64_t n, const Window2d& window, int64_t out_channels, const float* x,
                     const float* weight, const float* dy, float* columns, float* dy_rows,
                     float* dx, float* dweight, float* dbias) {
  const Window2d& w = window;
  const int64_t count = w.positions(), patch = w.patch_size(), rows = n * count;
  // dy_rows (n * positions, O): dy (n, O, positions) with the channel last, as the forward GEMM
  // produced it.
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t o = 0; o < out_channels; ++o) {
      const float* plane = dy + (e * out_channels + o) * count;  // (OH, OW)
      float* column = dy_rows + e * count * out_channels + o;
      for (int64_t p = 0; p < count; ++p) column[p * out_channels] = plane[p];
    }
  }
  if (dweight) {
    im2col(n, w, x, columns);
    // dW (O, patch) += dy_rows^T (O, rows) * columns (rows, patch)
    matmul_tn(out_channels, patch, rows, dy_rows, out_channels, columns, patch, dweight, patch,
              1.0f);
  }
  if (dbias) {
    for (int64_t o = 0; o < out_channels; ++o) {
      double sum = 0;
      for (int64_t e = 0; e < n; ++e) {
        const float* plane = dy + (e * out_channels + o) * count;
        for (int64_t p = 0; p < count; ++p) sum += plane[p];
      }
      dbias[o] += static_cast<float>(sum);
    }
  }
  if (dx) {
    // dcolumns (rows, patch) = dy_rows (rows, O) * W (O, patch), over the im2col rows.
    matmul_nn(rows, patch, out_channels, dy_rows, out_channels, weight, patch, columns, patch);
    col2im_add(n, w, columns, dx);
  }
}

void batchnorm_backward(int64_t n, int64_t channels, int64_t spatial, const float* x,
                        const float* gamma, const float* mean, const float* var, double eps,
                        const float* dy, float* dx, float* dgamma, float* dbeta, float* dmean,
                        float* dvar) {
  for (int64_t c = 0; c < channels; ++c) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    const double g = gamma ? gamma[c] : 1.0;
    const auto scale = static_cast<float>(g * inv_std);  // as in batchnorm_forward
    const auto s = static_cast<float>(inv_std);
    const float m = mean[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t e = 0; e < n; ++e) {
      const int64_t base = (e * channels + c) * spatial;
      const float* dy_plane = dy + base;
      const float* x_plane = x + base;
      for (int64_t i = 0; i < spatial; ++i) {
        sum_dy += dy_plane[i];
        sum_dy_xhat += static_cast<double>(dy_plane[i]) * ((x_plane[i] - m) * s);
      }
      if (dx) {
        float* dx_plane = dx + base;
        for (int64_t i = 0; i < spatial; ++i) dx_plane[i] = dy_plane[i] * scale;
      }
    }
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dmean) dmean[c] += static_cast<float>(-g * inv_std * sum_dy);
    if (dvar) dvar[c] += static_cast<float>(-0.5 * g * inv_std * inv_std * sum_dy_xhat);
  }
}

// Derivative 0 at x = 0 (and for NaN: the comparison is false).
void relu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  for (int64_t i = 0; i < count; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

// d/dx x Phi(x) = Phi(x) + x phi(x).
void gelu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  constexpr float inv_sqrt2 = 0.70710678118654752f, inv_sqrt_2pi = 0.39894228040143268f;
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * inv_sqrt2));
    const float pdf = inv_sqrt_2pi * std::exp(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

void tanh_backward(int64_t count, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void maxpool2d_backward(int64_t n, const Window2d& w, const float* x, const float* dy, float* dx) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  std::fill(dx, dx + n * w.channels * w.height * w.width, 0.0f);
  for (int64_t plane = 0; plane < n * w.channels; ++plane) {
    const float* in = x + plane * w.height * w.width;  // (H, W)
    float* grad = dx + plane * w.height * w.width;     // (H, W)
    const float* result = dy + plane * out_h * out_w;  // (OH, OW)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        // The forward's fold: start at -inf, take v when v > acc or v is NaN, until acc is NaN.
        const int64_t corner = oy * w.stride * w.width + ox * w.stride;
        int64_t chosen = corner;
        float acc = -std::numeric_limits<float>::infinity();
        for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
          for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
            const int64_t at = corner + ky * w.width + kx;
            const float v = in[at];
            if ((v > acc || std::isnan(v)) && !std::isnan(acc)) {
              acc = v;
              chosen = at;
            }
          }
        }
        grad[chosen] += result[oy * out_w + ox];
      }
    }
  }
}

void avgpool2d_backward(int64_t n, const Window2d& w, const float* dy, float* dx) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  const float inv_area = 1.0f / static_cast<float>(w.kernel_h * w.kernel_w);  // as the forward
  std::fill(dx, dx + n * w.channels * w.height * w.width, 0.0f);
  for (int64_t plane = 0; plane < n * w.channels; ++plane) {
    float* grad = dx + plane * w.height * w.width;     // (H, W)
    const float* result = dy + plane * out_h * out_w;  // (OH, OW)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const float share = result[oy * out_w + ox] * inv_area;
        for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
          float* line = grad + (oy * w.stride + ky) * w.width + ox * w.stride;
          for (int64_t kx = 0; kx < w.kernel_w; ++kx) line[kx] += share;
        }
      }
    }
  }
}

void softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx) {
  for (int64_t e = 0; e < n; ++e) {
    const float* p = y + e * features;
    const float* g = dy + e * features;
    float* d = dx + e * features;
    double dot = 0;
    for (int64_t i = 0; i < features; ++i) dot += static_cast<double>(g[i]) * p[i];
    const auto shift = static_cast<float>(dot);
    for (int64_t i = 0; i < features; ++i) d[i] = p[i] * (g[i] - shift);
  }
}

void log_softmax_backward(int64_t n, int64_t features, const float* y, const float* dy, float* dx) {
  for (int64_t e = 0; e < n; ++e) {
    const float* logp = y + e * features;
    const float* g = dy + e * features;
    float* d = dx + e * features;
    double sum = 0;
    for (int64_t i = 0; i < features; ++i) sum += g[i];
    const auto total = static_cast<float>(sum);
    for (int64_t i = 0; i < features; ++i) d[i] = g[i] - std::exp(logp[i]) * total;
  }
}

// --- input statistics

void column_sum_squares(int64_t rows, int64_t features, const float* x, double* sq) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * features;
    for (int64_t j = 0; j < features; ++j) sq[j] += static_cast<double>(row[j]) * row[j];
  }
}

void conv2d_column_sum_squares(int64_t n, const Window2d& w, const float* x, double* sq) {
  const int64_t out_h = w.out_height(), out_w = w.out_width();
  for (int64_t c = 0; c < w.channels; ++c) {
    for (int64_t ky = 0; ky < w.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
        double sum = 0;
        for (int64_t e = 0; e < n; ++e) {
          const float* image = x + (e * w.channels + c) * w.height * w.width;  // (H, W)
          for (int64_t oy = 0; oy < out_h; ++oy) {
            const int64_t iy = oy * w.stride - w.padding + ky;
            if (iy < 0 || iy >= w.height) continue;
            for (int64_t ox = 0; ox < out_w; ++ox) {
              const int64_t ix = ox * w.stride - w.padding + kx;
              if (ix < 0 || ix >= w.width) continue;
              const float v = image[iy * w.width + ix];
              sum += static_cast<double>(v) * v;
            }
          }
        }
        sq[(c * w.kernel_h + ky) * w.kernel_w + kx] += sum;
      }
    }
  }
}

void batchnorm_normalised_sum_squares(int64_t n, int64_t channels, int64_t spatial, const float* x,
                                      const float* mean, const float* var, double eps, double* sq) {
  for (int64_t c = 0; c < channels; ++c) {
    const auto s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    double sum = 0;
    for (int64_t e = 0; e < n; ++e) {
      const float* plane = x + (e * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) {
        const float xhat = (plane[i] - mean[c]) * s;
        sum += static_cast<double>(xhat) * xhat;
      }
    }
    sq[c] += sum;
  }
}

}  // namespace fracsweep
