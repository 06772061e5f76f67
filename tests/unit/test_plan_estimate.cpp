// `fracsweep plan`'s estimate (app/plan_estimate.hpp): the fitted trial line and the decode-step
// line against sums written out here; on the digits classifier, which trials it times (at most
// three: the grid's smallest and largest k, then the preparation of a gradient-ranked strategy)
// and its spread over the grid recomputed here from k = round(f x N); on stories260K, that it
// decodes only a few tokens and accounts for the rest: its FLOPs per forward pass equal those
// of a session that decodes the whole continuation.
#define BOOST_TEST_MODULE plan_estimate
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "fracsweep/app/plan_estimate.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/trial/session.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

// The digits MLP's learned parameters: fc1 (64x64 + 64), fc2 (10x64 + 10); all in scope.
constexpr int64_t digits_parameters = 64 * 64 + 64 + 10 * 64 + 10;

}  // namespace

BOOST_AUTO_TEST_CASE(the_trial_line_passes_through_both_samples) {
  const LinearTrialCost line = fit_trial_cost(10, 0.5, 1010, 1.5);
  BOOST_TEST(line.per_site_s == 1e-3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(line.at(10) == 0.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(line.at(1010) == 1.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(line.fixed_s == 0.49, boost::test_tools::tolerance(1e-12));
  // Noise that makes the larger k faster, or a single k: a constant at the mean.
  const LinearTrialCost noisy = fit_trial_cost(10, 0.6, 1010, 0.4);
  BOOST_TEST(noisy.per_site_s == 0.0);
  BOOST_TEST(noisy.fixed_s == 0.5, boost::test_tools::tolerance(1e-12));
  const LinearTrialCost single = fit_trial_cost(7, 0.2, 7, 0.4);
  BOOST_TEST(single.per_site_s == 0.0);
  BOOST_TEST(single.at(7) == 0.3, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(decode_steps_sum_the_line_through_the_timed_positions) {
  DecodeStepCost step;
  step.first_position = 2.5;
  step.first_s = 1e-3;
  step.last_position = 253.5;
  step.last_s = 2e-3;
  double sum = 0;  // the line written out: 1 ms at 2.5, +1 ms per 251 positions
  for (int64_t p = 4; p < 256; ++p) sum += 1e-3 + 1e-3 * (static_cast<double>(p) - 2.5) / 251.0;
  BOOST_TEST(step.steps_s(4, 256) == sum, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(step.steps_s(9, 9) == 0.0);
  BOOST_TEST(step.steps_s(9, 3) == 0.0);
  // Both points at one position: the mean of the two.
  DecodeStepCost flat{5, 1e-3, 5, 3e-3};
  BOOST_TEST(flat.steps_s(0, 10) == 10 * 2e-3, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(a_classifier_is_timed_at_its_smallest_and_largest_k_and_one_preparation) {
  const fs::path model = test::source_dir() / "jobs/default/digits-mlp.json";
  const std::string text =
      "name = plan-digits\n[models]\nmodel = digits path=" + model.string() +
      "\n[eval]\ninputs = " +
      (test::source_dir() / "jobs/default/digits-test-images.npy").string() +
      "\nlabels = " + (test::source_dir() / "jobs/default/digits-test-labels.npy").string() +
      "\ninput_divisor = 16\n[sweep]\nfractions = 0.01 0.5\ncounts = 1 3\nseeds = 0-1\n"
      "strategy = magnitude then=zero\nstrategy = zero\nstrategy = gaussian sigma=0.5\n"
      "strategy = magnitude then=signflip\nstrategy = taylor then=zero\nstrategy = bfa\n";
  const JobConfig job = parse_job_text(text, "plan-digits.ini");
  gemm_init(GemmSetup{});
  const Grid grid = job_grid(job);
  const ModelEstimate estimate = estimate_model(job, grid, 0, read_eval_sources(job), -1);

  // k of each amount, as the README defines it: round(f x N) of the in-scope parameters.
  std::vector<int64_t> k_of_amount;
  for (const double f : {0.01, 0.5}) {
    k_of_amount.push_back(std::llround(f * static_cast<double>(digits_parameters)));
  }
  k_of_amount.push_back(1);
  k_of_amount.push_back(3);
  BOOST_TEST_REQUIRE(estimate.sampled.size() == 3u);
  BOOST_TEST(estimate.sampled[0].k == 2405);  // the largest k (0.5 x 4810)
  BOOST_TEST(estimate.sampled[1].k == 1);     // the smallest (counts = 1)
  // The third: taylor's smallest k (a gradient pass is the preparation worth timing).
  const TrialSpec third = grid.trial(estimate.sampled[2].id);
  BOOST_TEST(third.strategy_idx == 4);
  BOOST_TEST(estimate.sampled[2].k == 1);
  BOOST_TEST_REQUIRE(estimate.preparation.has_value());
  BOOST_TEST(estimate.preparation->strategy == "taylor then=zero");
  BOOST_TEST(estimate.preparation->seconds >= 0.0);
  // Neither magnitude ranking nor bfa's search is measured, and the output says so.
  BOOST_TEST_REQUIRE(estimate.not_estimated.size() == 3u);
  BOOST_TEST(estimate.not_estimated[0].starts_with("magnitude then=zero: its one-time ranking"));
  BOOST_TEST(estimate.not_estimated[1].starts_with("magnitude then=signflip: "));
  BOOST_TEST(estimate.not_estimated[2].starts_with("bfa: its bit search"));
  BOOST_TEST(!estimate.continuation.has_value());  // a classifier generates nothing

  // The spread: the line at every trial's k, over every trial of the grid.
  double sum = 0, lowest = 1e300, highest = 0;
  int64_t trials = 0;
  for (int64_t id = grid.model_begin(0); id < grid.model_end(0); ++id) {
    const double seconds =
        estimate.trial.at(k_of_amount[static_cast<size_t>(grid.trial(id).amount_idx)]);
    sum += seconds;
    lowest = std::min(lowest, seconds);
    highest = std::max(highest, seconds);
    ++trials;
  }
  BOOST_TEST(trials == 2 * 4 * 2 + 4 * 4);  // 2 random x 4 amounts x 2 seeds, 4 deterministic
  BOOST_TEST(estimate.spread.trials == grid.model_end(0) - grid.model_begin(0));
  BOOST_TEST(estimate.spread.total_s == sum, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(estimate.spread.min_s == lowest, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(estimate.spread.max_s == highest, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(estimate.trial_seconds() == sum + estimate.preparation->seconds,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(estimate.measured_baseline_s > 0.0);
  BOOST_TEST(estimate.working > 0u);

  // An adaptive bound: that many trials at the grid's mean.
  const ModelEstimate bounded = estimate_model(job, grid, 0, read_eval_sources(job), 7);
  BOOST_TEST(bounded.spread.trials == 7);
  BOOST_TEST(bounded.spread.total_s == 7 * bounded.spread.mean_s,
             boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(a_language_model_decodes_a_few_tokens_and_accounts_for_the_rest,
                     *utf::precondition(test::needs_shared())) {
  const auto job_text = [](int64_t greedy_tokens) {
    return "name = plan-stories\n[models]\nmodel = stories260K path=" +
           test::shared_file("models/stories260K/stories260K.bin") +
           " tokenizer=" + test::shared_file("models/stories260K/tok512.bin") +
           "\n[eval]\ntext = " + test::shared_file("data/tinystories/tinystories_val.txt") +
           "\nparagraphs = 3\ngreedy_tokens = " + std::to_string(greedy_tokens) +
           "\n[sweep]\nfractions = 0.001 0.1\nseeds = 0\nstrategy = zero\n";
  };
  const JobConfig job = parse_job_text(job_text(40), "plan-stories.ini");
  gemm_init(GemmSetup{});
  const Grid grid = job_grid(job);
  const EvalSources sources = read_eval_sources(job);
  const ModelEstimate estimate = estimate_model(job, grid, 0, sources, -1);

  BOOST_TEST_REQUIRE(estimate.continuation.has_value());
  const ContinuationEstimate& greedy = *estimate.continuation;
  BOOST_TEST(greedy.greedy_tokens == 40);
  BOOST_TEST(greedy.decoded_tokens == plan_decoded_tokens);  // from BOS, no early stop
  BOOST_TEST(!greedy.ended_early);
  BOOST_TEST(greedy.prompt_tokens == 1);  // BOS alone
  BOOST_TEST(greedy.timed_steps == plan_timed_steps);
  // Steps timed at positions 1..4 and 36..39: the run feeds BOS at 0, then 39 of its 40 tokens.
  BOOST_TEST(greedy.step.first_position == 2.5);
  BOOST_TEST(greedy.step.last_position == 37.5);
  BOOST_TEST(greedy.extra_steps_s == greedy.step.steps_s(4, 40),
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(greedy.extra_steps_s > 0.0);
  BOOST_TEST(estimate.baseline_s() ==
                 estimate.measured_baseline_s + greedy.extra_steps_s + 2 * greedy.longer_pass_s,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(estimate.sampled.size() == 2u);   // no strategy needs a preparation
  BOOST_TEST(estimate.sampled[0].k == 26003);  // round(0.1 x 260032)
  BOOST_TEST(estimate.sampled[1].k == 260);

  // The run's forward pass: a session decoding the whole continuation counts these FLOPs.
  const ModelSession whole(job, 0, sources);
  BOOST_TEST(whole.summary().baseline.greedy_ids.size() == 40u);
  BOOST_TEST(estimate.forward_flops == whole.forward_flops(), boost::test_tools::tolerance(1e-9));
}
