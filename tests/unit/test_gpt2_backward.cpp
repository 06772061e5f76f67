// gpt2_ops_backward.hpp: each GPT-2 backward kernel against its ref twin (and GELU's and
// LayerNorm's against finite differences).
#define BOOST_TEST_MODULE gpt2_backward

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2_ops_backward.hpp"

namespace fs = fracsweep;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

std::vector<float> random_floats(int64_t n, uint32_t seed, float half_width = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-half_width, half_width);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& value : values) value = distribution(generator);
  return values;
}

// max |a - b| / max |b| over two equally long sequences.
template <class A, class B>
double relative_error(const A& a, const B& b) {
  double worst = 0.0, largest = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    largest = std::max(largest, std::abs(static_cast<double>(b[i])));
  }
  return worst / largest;
}

}  // namespace

BOOST_AUTO_TEST_CASE(layernorm_backward_matches_reference_and_finite_differences) {
  const int64_t rows = 7, d = 37;
  std::vector<float> x = random_floats(rows * d, 1, 2.0f);
  for (int64_t i = 0; i < d; ++i) x[i] = 3.0f + 1e-3f * x[i];  // a row of small variance
  const std::vector<float> weight = random_floats(d, 2), dout = random_floats(rows * d, 3),
                           initial = random_floats(rows * d, 4);
  std::vector<float> dx_fast = initial, dx_plain = initial;
  std::vector<double> dw_fast(d, 0.5), dw_plain(d, 0.5), db_fast(d, -0.25), db_plain(d, -0.25);
  fs::layernorm_rows_backward(x.data(), weight.data(), dout.data(), dx_fast.data(), dw_fast.data(),
                              db_fast.data(), rows, d, 1e-5f);
  fs::ref::layernorm_rows_backward(x.data(), weight.data(), dout.data(), dx_plain.data(), dw_plain.data(),
                                   db_plain.data(), rows, d, 1e-5f);
  BOOST_TEST(relative_error(dx_fast, dx_plain) < 1e-5);
  BOOST_TEST(relative_error(dw_fast, dw_plain) < 1e-5);
  BOOST_TEST(relative_error(db_fast, db_plain) < 1e-6);
  BOOST_TEST(relative_error(dx_plain, initial) > 1e-2);  // it really accumulated something
  // The ref twin against central differences of sum_i dout_i layernorm(x)_i, in double.
  for (int64_t r : {int64_t{0}, int64_t{4}}) {
    const auto objective = [&](std::vector<double> row) {
      double mean = 0.0, variance = 0.0;
      for (double v : row) mean += v;
      mean /= static_cast<double>(d);
      for (double v : row) variance += (v - mean) * (v - mean);
      variance /= static_cast<double>(d);
      double total = 0.0;
      for (int64_t i = 0; i < d; ++i) total += dout[r * d + i] * ((row[i] - mean) / std::sqrt(variance + 1e-5) * weight[i]);
      return total;
    };
    const std::vector<double> row(x.begin() + r * d, x.begin() + (r + 1) * d);
    std::vector<double> fd(static_cast<size_t>(d)), got(static_cast<size_t>(d));
    const double h = r == 0 ? 1e-8 : 1e-6;  // row 0's scale is 1e-3 of the others'
    for (int64_t j = 0; j < d; ++j) {
      std::vector<double> up = row, down = row;
      up[j] += h;
      down[j] -= h;
      fd[j] = (objective(up) - objective(down)) / (2.0 * h);
      got[j] = static_cast<double>(dx_plain[r * d + j]) - initial[r * d + j];
    }
    BOOST_TEST(relative_error(got, fd) < 1e-5, "row " << r);
  }
}

BOOST_AUTO_TEST_CASE(gelu_backward_matches_reference_and_finite_differences) {
  const int64_t n = 301;
  std::vector<float> x = random_floats(n, 7, 6.0f);
  x[0] = -30.0f;  // saturated: slope 0
  x[1] = 30.0f;   // saturated: slope 1
  const std::vector<float> dy = random_floats(n, 8);
  std::vector<float> dx(n), dx_ref(n), in_place = dy;
  fs::gelu_tanh_backward(x.data(), dy.data(), dx.data(), n);
  fs::ref::gelu_tanh_backward(x.data(), dy.data(), dx_ref.data(), n);
  fs::gelu_tanh_backward(x.data(), in_place.data(), in_place.data(), n);
  BOOST_TEST(relative_error(dx, dx_ref) < 1e-5);
  BOOST_TEST((in_place == dx));  // dx may alias dy
  BOOST_TEST(dx[0] == 0.0f);
  BOOST_TEST(dx[1] == dy[1]);
  for (int64_t i = 0; i < n; ++i) {  // d/dx of dy * gelu(x), in double
    const auto y = [&](double v) {
      return dy[i] * 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
    };
    const double fd = (y(x[i] + 1e-6) - y(x[i] - 1e-6)) / 2e-6;
    BOOST_TEST(std::abs(dx_ref[i] - fd) < 1e-5 * std::max(1.0, std::abs(fd)), "element " << i);
  }
}

BOOST_AUTO_TEST_CASE(bias_backward_sums_columns) {
  const int64_t rows = 9, d = 13;
  const std::vector<float> dy = random_floats(rows * d, 9);
  std::vector<double> sums(d, 1.0), sums_ref(d, 1.0);
  fs::add_bias_rows_backward(dy.data(), rows, d, sums.data());
  fs::ref::add_bias_rows_backward(dy.data(), rows, d, sums_ref.data());
  BOOST_TEST(relative_error(sums, sums_ref) < 1e-12);
  double column_3 = 1.0;
  for (int64_t r = 0; r < rows; ++r) column_3 += dy[r * d + 3];
  BOOST_TEST(std::abs(sums_ref[3] - column_3) < 1e-12);
}
