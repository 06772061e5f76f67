// ops.hpp: every fast kernel against its plain double-accumulating twin in ops_ref.hpp on random
// inputs of several shapes (odd sizes, padded strides), plus hand-computed values.
#define BOOST_TEST_MODULE ops
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "fracsweep/nn/fast_exp.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_ref.hpp"

namespace fs = fracsweep;

namespace {

std::vector<float> random_floats(int64_t n, float low, float high, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& value : values) value = distribution(generator);
  return values;
}

// max_i |got_i - want_i| / max_i |want_i|: the error relative to the output's scale.
double max_relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  BOOST_TEST_REQUIRE(got.size() == want.size());
  double largest_error = 0.0;
  double largest_value = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    largest_error = std::max(largest_error, std::abs(static_cast<double>(got[i]) - want[i]));
    largest_value = std::max(largest_value, std::abs(static_cast<double>(want[i])));
  }
  return largest_value > 0.0 ? largest_error / largest_value : largest_error;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rmsnorm_matches_reference) {
  for (const auto& [rows, d] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {5, 64}, {17, 173}, {4, 1000}}) {
    const std::vector<float> x = random_floats(rows * d, -3.0f, 3.0f, 1);
    const std::vector<float> weight = random_floats(d, 0.5f, 1.5f, 2);
    std::vector<float> fast(x.size());
    std::vector<float> plain(x.size());
    fs::rmsnorm_rows(x.data(), weight.data(), fast.data(), rows, d, 1e-5f);
    fs::ref::rmsnorm_rows(x.data(), weight.data(), plain.data(), rows, d, 1e-5f);
    BOOST_TEST(max_relative_error(fast, plain) < 1e-6, "rows=" << rows << " d=" << d);
  }
}

BOOST_AUTO_TEST_CASE(rmsnorm_hand_computed) {
  // Row (3, 4): mean square 12.5, so out = x / sqrt(12.5 + eps) * weight.
  const std::vector<float> x = {3.0f, 4.0f};
  const std::vector<float> weight = {1.0f, 2.0f};
  std::vector<float> out(2);
  fs::rmsnorm_rows(x.data(), weight.data(), out.data(), 1, 2, 0.0f);
  BOOST_TEST(out[0] == 3.0f / std::sqrt(12.5f), boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[1] == 8.0f / std::sqrt(12.5f), boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(rope_hand_computed) {
  // One head of 4 (pairs (0,1) and (2,3)); pair p turns by position * theta^(-2p/4).
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f,   // position 1, theta 10000: angles 1, 0.01
                          1.0f, 2.0f, 3.0f, 4.0f};  // position 0: unchanged
  const std::vector<int32_t> positions = {1, 0};
  std::vector<float> table(6 * 4);  // positions 0 to 5
  fs::rope_table(6, 4, 10000.0f, table.data());
  fs::rope_rows(x.data(), positions.data(), table.data(), 2, 1, 4);
  const std::vector<float> expected = {-1.1426396637f, 1.9220755965f, 2.9598506679f, 4.0297995017f,
                                       1.0f,           2.0f,          3.0f,          4.0f};
  for (size_t i = 0; i < x.size(); ++i) {
    BOOST_TEST(x[i] == expected[i], boost::test_tools::tolerance(2e-6f));
  }
  // Position 5, theta 100: angles 5 and 0.5.
  std::vector<float> y = {1.0f, 2.0f, 3.0f, 4.0f};
  const int32_t position = 5;
  fs::rope_table(6, 4, 100.0f, table.data());
  fs::rope_rows(y.data(), &position, table.data(), 1, 1, 4);
  const std::vector<float> expected_y = {2.2015107348f, -0.3915999037f, 0.7150455313f,
                                         4.9486068634f};
  for (size_t i = 0; i < y.size(); ++i) {
    BOOST_TEST(y[i] == expected_y[i], boost::test_tools::tolerance(2e-6f));
  }
}

BOOST_AUTO_TEST_CASE(rope_matches_reference) {
  struct Shape {
    int64_t rows, n_heads, head_dim;
  };
  for (const Shape& s :
       {Shape{1, 1, 2}, Shape{7, 8, 8}, Shape{33, 4, 16}, Shape{5, 3, 64}, Shape{9, 2, 6}}) {
    std::vector<float> fast = random_floats(s.rows * s.n_heads * s.head_dim, -2.0f, 2.0f, 3);
    std::vector<float> plain = fast;
    std::vector<int32_t> positions(static_cast<size_t>(s.rows));
    std::mt19937 generator(4);
    for (int32_t& p : positions) p = std::uniform_int_distribution<int32_t>(0, 1023)(generator);
    std::vector<float> table(static_cast<size_t>(1024 * s.head_dim));  // positions 0 to 1023
    fs::rope_table(1024, s.head_dim, 10000.0f, table.data());
    fs::rope_rows(fast.data(), positions.data(), table.data(), s.rows, s.n_heads, s.head_dim);
    fs::ref::rope_rows(plain.data(), positions.data(), s.rows, s.n_heads, s.head_dim, 10000.0f);
    BOOST_TEST(max_relative_error(fast, plain) < 1e-6,
               "rows=" << s.rows << " heads=" << s.n_heads << " head_dim=" << s.head_dim);
  }
}

namespace {

struct AttentionShape {
  int64_t len, n_heads, n_kv_heads, head_dim;
};

// Runs both attentions with rows padded by 3 (q, out) and 5 (k, v) floats; returns the fast
// and reference outputs, padding included (the padding must come back untouched).
std::pair<std::vector<float>, std::vector<float>> run_attention(const AttentionShape& s,
                                                                float query_scale, uint32_t seed) {
  const int64_t q_stride = s.n_heads * s.head_dim + 3;
  const int64_t kv_stride = s.n_kv_heads * s.head_dim + 5;
  std::vector<float> q = random_floats(s.len * q_stride, -query_scale, query_scale, seed);
  const std::vector<float> k = random_floats(s.len * kv_stride, -1.0f, 1.0f, seed + 1);
  const std::vector<float> v = random_floats(s.len * kv_stride, -1.0f, 1.0f, seed + 2);
  std::vector<float> fast(static_cast<size_t>(s.len * q_stride), -7.0f);
  std::vector<float> plain = fast;
  std::vector<float> scratch(static_cast<size_t>(fs::attention_scratch_floats(s.len, s.head_dim)));
  fs::attention_causal(q.data(), q_stride, k.data(), v.data(), kv_stride, fast.data(), q_stride,
                       s.len, s.n_heads, s.n_kv_heads, s.head_dim, scratch.data());
  fs::ref::attention_causal(q.data(), q_stride, k.data(), v.data(), kv_stride, plain.data(),
                            q_stride, s.len, s.n_heads, s.n_kv_heads, s.head_dim);
  return {fast, plain};
}

}  // namespace

BOOST_AUTO_TEST_CASE(attention_matches_reference) {
  // MHA and GQA; head_dim 1 to 64, multiples of 8 or not (vector and scalar paths); lengths
  // across the 8-query blocks and 8-key chunks.
  for (const AttentionShape& s :
       {AttentionShape{1, 1, 1, 1}, AttentionShape{2, 4, 4, 8}, AttentionShape{7, 8, 4, 8},
        AttentionShape{33, 6, 2, 16}, AttentionShape{130, 2, 1, 64}, AttentionShape{47, 3, 3, 5},
        AttentionShape{300, 8, 4, 8}, AttentionShape{50, 4, 2, 12}}) {
    const auto [fast, plain] = run_attention(s, 1.0f, 10);
    BOOST_TEST(max_relative_error(fast, plain) < 2e-6, "len=" << s.len << " heads=" << s.n_heads
                                                              << "/" << s.n_kv_heads
                                                              << " head_dim=" << s.head_dim);
  }
}

BOOST_AUTO_TEST_CASE(attention_survives_large_scores) {
  // Scores in the thousands overflow exp unless the maximum is subtracted first.
  const auto [fast, plain] = run_attention(AttentionShape{40, 4, 2, 16}, 400.0f, 20);
  BOOST_TEST(std::all_of(fast.begin(), fast.end(), [](float x) { return std::isfinite(x); }));
  BOOST_TEST(max_relative_error(fast, plain) < 1e-5);
}

BOOST_AUTO_TEST_CASE(attention_hand_computed) {
  // Two tokens, one head of 2. Token 0 sees only itself: output = v0. Token 1 has q = 0, so
  // equal weights: output = (v0 + v1) / 2.
  const std::vector<float> q = {5.0f, -1.0f, 0.0f, 0.0f};
  const std::vector<float> k = {1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<float> v = {1.0f, 10.0f, 3.0f, 20.0f};
  std::vector<float> out(4);
  std::vector<float> scratch(static_cast<size_t>(fs::attention_scratch_floats(2, 2)));
  fs::attention_causal(q.data(), 2, k.data(), v.data(), 2, out.data(), 2, 2, 1, 1, 2,
                       scratch.data());
  BOOST_TEST(out[0] == 1.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[1] == 10.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[2] == 2.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[3] == 15.0f, boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(attention_propagates_non_finite_keys) {
  // An infinite key (as from a perturbed weight) must poison exactly the queries that see it.
  const int64_t len = 20;
  const int64_t head_dim = 8;
  const std::vector<float> q = random_floats(len * head_dim, -1.0f, 1.0f, 30);
  std::vector<float> k = random_floats(len * head_dim, -1.0f, 1.0f, 31);
  const std::vector<float> v = random_floats(len * head_dim, -1.0f, 1.0f, 32);
  const int64_t poisoned = 11;
  k[poisoned * head_dim + 3] = std::numeric_limits<float>::infinity();
  std::vector<float> out(static_cast<size_t>(len * head_dim));
  std::vector<float> scratch(static_cast<size_t>(fs::attention_scratch_floats(len, head_dim)));
  fs::attention_causal(q.data(), head_dim, k.data(), v.data(), head_dim, out.data(), head_dim, len,
                       1, 1, head_dim, scratch.data());
  for (int64_t t = 0; t < len; ++t) {
    const bool finite = std::all_of(out.begin() + t * head_dim, out.begin() + (t + 1) * head_dim,
                                    [](float x) { return std::isfinite(x); });
    // A query with q[3] < 0 gives that key a score of -inf, i.e. weight 0: still finite.
    const bool sees_plus_infinity = t >= poisoned && q[t * head_dim + 3] > 0.0f;
    if (t < poisoned) BOOST_TEST(finite, "token " << t);
    if (sees_plus_infinity) BOOST_TEST(!finite, "token " << t);
  }
}

BOOST_AUTO_TEST_CASE(swiglu_matches_reference) {
  for (int64_t n : {1, 15, 16, 17, 1037}) {
    std::vector<float> fast = random_floats(n, -20.0f, 20.0f, 40);
    const std::vector<float> up = random_floats(n, -2.0f, 2.0f, 41);
    std::vector<float> plain = fast;
    fs::swiglu(fast.data(), up.data(), n);
    fs::ref::swiglu(plain.data(), up.data(), n);
    for (size_t i = 0; i < fast.size(); ++i) {
      // Element-wise: SiLU's exp is a polynomial, accurate to a few ulp over its whole range.
      BOOST_TEST(fast[i] == plain[i], boost::test_tools::tolerance(1e-6f));
    }
  }
}

BOOST_AUTO_TEST_CASE(swiglu_hand_computed_and_extremes) {
  std::vector<float> gate = {0.0f, 1.0f, -2.0f, 3.0f, -200.0f, 200.0f};
  const std::vector<float> up = {5.0f, 1.0f, 1.0f, 0.5f, 1.0f, 1.0f};
  fs::swiglu(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  BOOST_TEST(gate[0] == 0.0f);
  BOOST_TEST(gate[1] == 0.7310585786f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(gate[2] == -0.2384058440f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(gate[3] == 1.4288611902f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(std::abs(gate[4]) < 1e-30f);  // silu(-200) = -200 e^-200: zero in float
  BOOST_TEST(gate[5] == 200.0f);
}

BOOST_AUTO_TEST_CASE(add_inplace_matches_reference_exactly) {
  for (int64_t n : {1, 9, 64, 1001}) {
    std::vector<float> fast = random_floats(n, -1e3f, 1e3f, 50);
    const std::vector<float> y = random_floats(n, -1.0f, 1.0f, 51);
    std::vector<float> plain = fast;
    fs::add_inplace(fast.data(), y.data(), n);
    fs::ref::add_inplace(plain.data(), y.data(), n);
    BOOST_TEST(fast == plain, boost::test_tools::per_element());  // one rounding both ways
  }
}

BOOST_AUTO_TEST_CASE(fast_exp_documented_values_at_the_edges) {
  // fast_exp.hpp: below -87 exactly 0 (also far below, where the exponent arithmetic would
  // overflow int32 without the clamp), e^-87 is still a normal float, 0 gives 1, NaN stays NaN.
  for (float x :
       {-1e30f, -1.5e7f, -1e7f, -88.0f, -87.5f, -std::numeric_limits<float>::infinity()}) {
    BOOST_TEST(fs::fast_exp(x) == 0.0f, "x = " << x);
    BOOST_TEST(!std::signbit(fs::fast_exp(x)), "x = " << x);
  }
  const double exact = std::exp(-87.0);
  BOOST_TEST(std::fabs(fs::fast_exp(-87.0f) - exact) / exact < 1.5e-7);
  BOOST_TEST(std::isnormal(fs::fast_exp(-87.0f)));
  BOOST_TEST(fs::fast_exp(0.0f) == 1.0f);
  BOOST_TEST(fs::fast_exp(-0.0f) == 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  BOOST_TEST(std::isnan(fs::fast_exp(nan)));
  BOOST_TEST(std::isnan(fs::fast_exp(-nan)));
  BOOST_TEST(std::signbit(fs::fast_exp(-nan)));
  BOOST_TEST(std::fabs(fs::fast_exp(88.0f) - std::exp(88.0)) / std::exp(88.0) < 1.5e-7);
}

BOOST_AUTO_TEST_CASE(attention_with_huge_negative_scores_gives_weights_not_garbage) {
  // Scores of -1e7 against 0 (what bit flips or huge scales put into q and k): the shifted
  // exponent is far below -87, so that key weighs exactly 0 and the output is the value of the
  // key with the largest score. Before fast_exp clamped its argument, exp(-1e7) was signed
  // overflow (undefined behaviour), which the -fsanitize=undefined build of this test reports.
  constexpr int64_t len = 2;
  constexpr int64_t head_dim = 1;
  const std::vector<float> q = {1.0f, 1e3f};   // (len, head_dim)
  const std::vector<float> k = {-1e4f, 0.0f};  // scores of query 1: -1e7 and 0 (x 1/sqrt(1))
  const std::vector<float> v = {3.0f, 5.0f};
  std::vector<float> out(len * head_dim);  // (len, head_dim)
  std::vector<float> scratch(static_cast<size_t>(fs::attention_scratch_floats(len, head_dim)));
  fs::attention_causal(q.data(), head_dim, k.data(), v.data(), head_dim, out.data(), head_dim, len,
                       1, 1, head_dim, scratch.data());
  BOOST_TEST(out[0] == 3.0f);  // one key only
  BOOST_TEST(out[1] == 5.0f);
}
