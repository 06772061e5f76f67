#define BOOST_TEST_MODULE metrics
// Behaviour-change metrics on hand-built rows (vocab 3-4). Expected values come from plain
// double-precision formulas written out here: softmax, -log p[target], sum p_ref log(p_ref/p).
// log_sum_exp uses float exponentials (documented: within ~3e-7 of the exact value), so NLL
// and KL are compared with an absolute tolerance of 2e-6.
#include <algorithm>
#include <array>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "fracsweep/eval/metrics.hpp"
#include "fracsweep/nn/fast_exp.hpp"
#include "fracsweep/nn/log_sum_exp.hpp"

using fracsweep::argmax_row;
using fracsweep::leading_matches;
using fracsweep::log_sum_exp;
using fracsweep::log_sum_exp_ref;
using fracsweep::make_reference_row;
using fracsweep::MetricAccumulator;
using fracsweep::ReferenceRow;
using fracsweep::row_is_finite;
using fracsweep::TrialMetrics;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();
constexpr int64_t vocab = 3;
constexpr double metric_tolerance = 2e-6;  // absolute, for NLL and KL means
using Row = std::array<float, vocab>;

// Plain softmax in double.
std::vector<double> softmax(const Row& logits) {
  std::vector<double> p(vocab);  // (vocab)
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) total += std::exp(static_cast<double>(logits[i]));
  for (int64_t i = 0; i < vocab; ++i) p[i] = std::exp(static_cast<double>(logits[i])) / total;
  return p;
}

double nll(const Row& logits, int32_t target) {
  return -std::log(softmax(logits)[target]);
}

double kl(const Row& reference, const Row& perturbed) {
  const std::vector<double> p = softmax(reference), q = softmax(perturbed);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += p[i] * std::log(p[i] / q[i]);
  return sum;
}

// A reference row and the storage its probabilities live in.
struct Reference {
  explicit Reference(const Row& logits)
      : row(make_reference_row(logits.data(), vocab, probs.data())) {}
  Row probs{};  // (vocab) softmax of the unperturbed logits
  ReferenceRow row;
};

// Three positions with hand-chosen argmaxes:
//   position 0: reference argmax 1, perturbed argmax 0, target 0 -> disagree, correct
//   position 1: reference argmax 2, perturbed argmax 2, target 2 -> agree, correct
//   position 2: reference argmax 2, perturbed argmax 1, target 2 -> disagree, wrong
const std::array<Row, 3> reference_logits = {Row{1.0f, 2.0f, 0.0f}, Row{0.5f, 0.5f, 3.0f},
                                             Row{-1.0f, 0.0f, 1.0f}};
const std::array<Row, 3> perturbed_logits = {Row{2.0f, 1.0f, 0.0f}, Row{0.0f, 1.0f, 4.0f},
                                             Row{0.0f, 0.5f, 0.25f}};
const std::array<int32_t, 3> targets = {0, 2, 2};

bool is_nan(double value) {
  return std::isnan(value);
}

bool close(double actual, double expected) {
  return std::fabs(actual - expected) <= metric_tolerance;
}

// (rows, vocab) logits uniform in [-spread, spread], from a fixed engine.
std::vector<float> random_rows(int64_t rows, int64_t width, float spread, unsigned seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> logit(-spread, spread);
  std::vector<float> values(static_cast<size_t>(rows * width));  // (rows, width)
  for (float& v : values) v = logit(engine);
  return values;
}

}  // namespace

BOOST_AUTO_TEST_CASE(log_sum_exp_and_argmax_on_small_rows) {
  const Row logits = {1.0f, 2.0f, 3.0f};
  const double exact = 3.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  BOOST_TEST(log_sum_exp_ref(logits.data(), vocab) == exact, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(std::fabs(log_sum_exp(logits.data(), vocab) - exact) < 3e-7);
  // Large logits, the largest not first, must not overflow exp.
  const Row large = {-1000.0f, 1000.0f, 1000.0f};
  BOOST_TEST(log_sum_exp_ref(large.data(), vocab) == 1000.0 + std::log(2.0),
             boost::test_tools::tolerance(1e-14));
  BOOST_TEST(std::fabs(log_sum_exp(large.data(), vocab) - (1000.0 + std::log(2.0))) < 3e-7);

  const std::array<float, 4> tie = {1.0f, 3.0f, 3.0f, 2.0f};
  BOOST_TEST(argmax_row(tie.data(), 4) == 1);  // first of the tied maxima
  BOOST_TEST(argmax_row(logits.data(), vocab) == 2);
  for (const Row& bad : {Row{nan_f, 5.0f, 0.0f}, Row{0.0f, inf_f, 0.0f}, Row{-inf_f, 1.0f, 2.0f}}) {
    BOOST_TEST(argmax_row(bad.data(), vocab) == -1);
    BOOST_TEST(!row_is_finite(bad.data(), vocab));
  }
  BOOST_TEST(row_is_finite(logits.data(), vocab));
}

BOOST_AUTO_TEST_CASE(argmax_finds_the_first_maximum_in_vector_lanes_and_tail) {
  // Widths around the 8-lane blocks; the maximum (tied twice) placed at every pair of positions.
  for (int64_t width : {1, 7, 8, 9, 17, 24, 31}) {
    for (int64_t first = 0; first < width; ++first) {
      for (int64_t second = first; second < width; ++second) {
        std::vector<float> row(static_cast<size_t>(width), -1.0f);  // (width)
        row[static_cast<size_t>(first)] = 2.5f;
        row[static_cast<size_t>(second)] = 2.5f;
        BOOST_TEST_REQUIRE(argmax_row(row.data(), width) == first, "width " << width);
      }
    }
  }
  std::vector<float> row(19, 0.0f);  // (19) a NaN in the scalar tail
  row[18] = nan_f;
  BOOST_TEST(argmax_row(row.data(), 19) == -1);
  BOOST_TEST(!row_is_finite(row.data(), 19));
  row[18] = -0.0f;
  BOOST_TEST(row_is_finite(row.data(), 19));
}

BOOST_AUTO_TEST_CASE(fast_exp_and_log_sum_exp_meet_their_documented_accuracy) {
  // fast_exp (log_sum_exp's exp): relative error < 1.5e-7 against std::exp on a dense grid of
  // [-87, 0] (its documented bound; the Taylor truncation is < 6e-9, the rest is rounding).
  double worst = 0;
  for (int i = 0; i <= 870000; ++i) {
    const float x = -static_cast<float>(i) * 1e-4f;
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fracsweep::fast_exp(x) - exact) / exact);
  }
  BOOST_TEST(worst < 1.5e-7);
  BOOST_TEST(fracsweep::fast_exp(0.0f) == 1.0f);
  // log_sum_exp: within 3e-7 of the std::exp twin on wide random rows of many widths.
  for (int64_t width : {1, 3, 8, 9, 100, 512, 32000}) {
    const std::vector<float> rows = random_rows(20, width, 30.0f, static_cast<unsigned>(width));
    for (int64_t r = 0; r < 20; ++r) {
      const float* row = rows.data() + r * width;
      BOOST_TEST_REQUIRE(std::fabs(log_sum_exp(row, width) - log_sum_exp_ref(row, width)) < 3e-7,
                         "width " << width);
    }
  }
}

BOOST_AUTO_TEST_CASE(unchanged_rows_have_zero_kl_up_to_double_rounding) {
  // Not exactly 0 (metrics.cpp's comment says it is): the two-term form leaves a double
  // rounding residue (~1e-17 at vocab 3, ~2e-13 at vocab 32000 with logits in [-12, 12]); it
  // must stay far below any KL a perturbation could cause.
  double worst = 0;
  for (int64_t width : {3, 8, 13, 512, 32000}) {
    const std::vector<float> rows = random_rows(50, width, 12.0f, static_cast<unsigned>(width + 1));
    std::vector<float> probs(static_cast<size_t>(width));  // (width)
    for (int64_t r = 0; r < 50; ++r) {
      const float* row = rows.data() + r * width;
      MetricAccumulator accumulator;
      accumulator.add(row, width, make_reference_row(row, width, probs.data()), 0);
      const TrialMetrics m = accumulator.finish();
      BOOST_TEST_REQUIRE(m.mean_kl >= 0.0);
      worst = std::max(worst, m.mean_kl);
      BOOST_TEST_REQUIRE(m.top1_agreement == 1.0);
    }
  }
  BOOST_TEST_MESSAGE("largest KL of an unchanged row: " << worst);
  BOOST_TEST(worst < 1e-11);
}

BOOST_AUTO_TEST_CASE(reference_row_is_the_softmax_with_its_constants) {
  const std::array<float, 4> logits = {2.0f, 1.0f, 0.5f, -1.0f};
  std::array<float, 4> probs{};  // (4)
  const ReferenceRow row = make_reference_row(logits.data(), 4, probs.data());
  BOOST_TEST(row.probs == probs.data());
  BOOST_TEST(row.argmax == 0);
  double total = 0, expected_sum_p_log_p = 0;
  for (int i = 0; i < 4; ++i) total += std::exp(static_cast<double>(logits[i]));
  for (int i = 0; i < 4; ++i) {
    const double p = std::exp(static_cast<double>(logits[i])) / total;
    BOOST_TEST(probs[i] == p, boost::test_tools::tolerance(5e-7));  // lse within 3e-7
    expected_sum_p_log_p += p * std::log(p);
  }
  BOOST_TEST(probs[0] + probs[1] + probs[2] + probs[3] == 1.0, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(row.mass == 1.0, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(row.sum_p_log_p == expected_sum_p_log_p, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(finite_positions_match_hand_formulas) {
  MetricAccumulator accumulator;
  double nll_sum = 0, kl_sum = 0, kl_max = 0;
  for (size_t t = 0; t < 3; ++t) {
    const Reference reference(reference_logits[t]);
    accumulator.add(perturbed_logits[t].data(), vocab, reference.row, targets[t]);
    nll_sum += nll(perturbed_logits[t], targets[t]);
    const double kl_t = kl(reference_logits[t], perturbed_logits[t]);
    kl_sum += kl_t;
    kl_max = std::max(kl_max, kl_t);
  }
  const TrialMetrics m = accumulator.finish();
  BOOST_TEST(m.positions == 3);
  BOOST_TEST(m.nonfinite_positions == 0);
  BOOST_TEST(close(m.mean_nll, nll_sum / 3), m.mean_nll << " vs " << nll_sum / 3);
  BOOST_TEST(close(m.mean_nll_finite, nll_sum / 3));
  BOOST_TEST(close(m.perplexity, std::exp(nll_sum / 3)));
  BOOST_TEST(close(m.mean_kl, kl_sum / 3), m.mean_kl << " vs " << kl_sum / 3);
  BOOST_TEST(close(m.mean_kl_finite, kl_sum / 3));
  BOOST_TEST(close(m.max_kl, kl_max));
  BOOST_TEST(m.accuracy == 2.0 / 3.0);
  BOOST_TEST(m.top1_agreement == 1.0 / 3.0);
}

BOOST_AUTO_TEST_CASE(identical_logits_have_zero_kl_and_full_agreement) {
  MetricAccumulator accumulator;
  double nll_sum = 0;
  for (size_t t = 0; t < 3; ++t) {
    const Reference reference(reference_logits[t]);
    accumulator.add(reference_logits[t].data(), vocab, reference.row, targets[t]);
    nll_sum += nll(reference_logits[t], targets[t]);
  }
  const TrialMetrics m = accumulator.finish();
  BOOST_TEST(m.mean_kl >= 0.0);
  BOOST_TEST(m.max_kl < 1e-14);  // zero up to double rounding
  BOOST_TEST(m.top1_agreement == 1.0);
  BOOST_TEST(close(m.mean_nll, nll_sum / 3));
}

BOOST_AUTO_TEST_CASE(metrics_are_invariant_to_a_constant_logit_shift) {
  // softmax(l + c) = softmax(l): shifting the perturbed logits by 64 (exact in float for
  // these values) must leave NLL and KL unchanged.
  MetricAccumulator plain, shifted;
  for (size_t t = 0; t < 3; ++t) {
    const Reference reference(reference_logits[t]);
    Row moved = perturbed_logits[t];
    for (float& logit : moved) logit += 64.0f;
    plain.add(perturbed_logits[t].data(), vocab, reference.row, targets[t]);
    shifted.add(moved.data(), vocab, reference.row, targets[t]);
  }
  const TrialMetrics a = plain.finish(), b = shifted.finish();
  BOOST_TEST(close(a.mean_nll, b.mean_nll));
  BOOST_TEST(close(a.mean_kl, b.mean_kl));
  BOOST_TEST(a.top1_agreement == b.top1_agreement);
}

BOOST_AUTO_TEST_CASE(nonfinite_rows_disagree_and_poison_only_the_unrestricted_means) {
  // Positions 0 and 1 of the finite case, plus a NaN row and an Inf row whose argmax (if
  // they were finite) would agree with the reference and hit the target. Both orders.
  const Row nan_row = {nan_f, 0.0f, 9.0f}, inf_row = {0.0f, 0.0f, inf_f};
  const double nll_finite = (nll(perturbed_logits[0], 0) + nll(perturbed_logits[1], 2)) / 2;
  const double kl0 = kl(reference_logits[0], perturbed_logits[0]);
  const double kl1 = kl(reference_logits[1], perturbed_logits[1]);
  for (bool nonfinite_first : {true, false}) {
    MetricAccumulator accumulator;
    const Reference ref0(reference_logits[0]), ref1(reference_logits[1]);
    const Reference ref_bad(reference_logits[1]);  // argmax 2, like the bad rows' largest entry
    auto add_finite = [&] {
      accumulator.add(perturbed_logits[0].data(), vocab, ref0.row, 0);
      accumulator.add(perturbed_logits[1].data(), vocab, ref1.row, 2);
    };
    if (!nonfinite_first) add_finite();
    accumulator.add(nan_row.data(), vocab, ref_bad.row, 2);
    accumulator.add(inf_row.data(), vocab, ref_bad.row, 2);
    if (nonfinite_first) add_finite();

    const TrialMetrics m = accumulator.finish();
    BOOST_TEST(m.positions == 4);
    BOOST_TEST(m.nonfinite_positions == 2);
    BOOST_TEST(is_nan(m.mean_nll));
    BOOST_TEST(is_nan(m.perplexity));
    BOOST_TEST(is_nan(m.mean_kl));
    BOOST_TEST(is_nan(m.max_kl));
    BOOST_TEST(close(m.mean_nll_finite, nll_finite));
    BOOST_TEST(close(m.mean_kl_finite, (kl0 + kl1) / 2));
    // Finite rows: position 0 disagrees but is correct, position 1 agrees and is correct;
    // the bad rows count as disagreeing and wrong.
    BOOST_TEST(m.accuracy == 2.0 / 4.0);
    BOOST_TEST(m.top1_agreement == 1.0 / 4.0);
  }
}

BOOST_AUTO_TEST_CASE(only_nonfinite_rows_leave_finite_means_undefined) {
  MetricAccumulator accumulator;
  const Reference reference(reference_logits[0]);
  const Row minus_inf_row = {-inf_f, 1.0f, 2.0f};
  accumulator.add(minus_inf_row.data(), vocab, reference.row, 1);
  const TrialMetrics m = accumulator.finish();
  BOOST_TEST(m.positions == 1);
  BOOST_TEST(m.nonfinite_positions == 1);
  BOOST_TEST(m.top1_agreement == 0.0);
  BOOST_TEST(m.accuracy == 0.0);
  BOOST_TEST(is_nan(m.mean_nll_finite));
  BOOST_TEST(is_nan(m.mean_kl_finite));
}

BOOST_AUTO_TEST_CASE(empty_accumulator_reports_no_positions) {
  const TrialMetrics m = MetricAccumulator().finish();
  BOOST_TEST(m.positions == 0);
  BOOST_TEST(is_nan(m.mean_nll));
  BOOST_TEST(is_nan(m.top1_agreement));
  BOOST_TEST(is_nan(m.accuracy));
}

BOOST_AUTO_TEST_CASE(leading_matches_counts_the_agreeing_prefix) {
  // (4, vocab) rows with argmaxes 2, 0, 1, 1.
  const std::array<float, 4 * vocab> logits = {0.0f, 1.0f, 2.0f, 5.0f, 1.0f, 2.0f,
                                               0.0f, 3.0f, 2.0f, 0.0f, 3.0f, 2.0f};
  const std::array<int32_t, 4> all_match = {2, 0, 1, 1}, third_differs = {2, 0, 2, 1},
                               first_differs = {0, 0, 1, 1};
  BOOST_TEST(leading_matches(logits.data(), vocab, all_match.data(), 4) == 4);
  BOOST_TEST(leading_matches(logits.data(), vocab, third_differs.data(), 4) == 2);
  BOOST_TEST(leading_matches(logits.data(), vocab, first_differs.data(), 4) == 0);
  BOOST_TEST(leading_matches(logits.data(), vocab, all_match.data(), 0) == 0);
  std::array<float, 4 * vocab> with_nan = logits;  // (4, vocab)
  with_nan[1 * vocab + 0] = nan_f;                 // row 1's largest entry becomes NaN
  BOOST_TEST(leading_matches(with_nan.data(), vocab, all_match.data(), 4) == 1);
}
