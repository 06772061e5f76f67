// The whole trial path (perturb -> batched forward -> metrics -> restore) on the real
// stories260K model, against values computed by an independent reference implementation
// (../shared/fixtures/stories260K/expected.json).
#define BOOST_TEST_MODULE evaluator
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <memory>

#include "fixture.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace utf = boost::unit_test;

namespace {

// The model, its evaluator on the fixture's eval set (50 paragraphs, greedy 256 from BOS), and
// the fixture; built once because the baseline costs a few hundred milliseconds.
struct Stories {
  test::Fixture fixture;
  Model model;
  Tokenizer tokenizer;
  std::unique_ptr<LanguageModelEvaluator> evaluator;
  std::unique_ptr<Perturber> perturber;
  std::vector<float> pristine;  // (n_parameters) the values as loaded

  Stories()
      : model(load_llama2c(test::shared_file("models/stories260K/stories260K.bin"))),
        tokenizer(Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"),
                                          model.config.vocab_size)) {
    gemm_init(GemmSetup{});
    EvalInputs inputs;
    const std::string eval_text = test::shared_file("data/tinystories/tinystories_val.txt");
    const auto paragraphs =
        read_paragraphs(eval_text, static_cast<int64_t>(fixture.number("eval_set.n_paragraphs")));
    inputs.sequences = encode_paragraphs(tokenizer, paragraphs, model.config.seq_len, eval_text);
    inputs.greedy_prompt = {tokenizer.bos_id()};
    inputs.greedy_tokens = 256;
    inputs.greedy_stop_id = tokenizer.bos_id();
    evaluator = std::make_unique<LanguageModelEvaluator>(model, inputs, make_llama_forward);
    perturber = std::make_unique<Perturber>(model, 0, "stories260K");
    pristine.assign(model.values.begin(), model.values.end());
  }

  TrialMetrics trial(const std::string& strategy_text, int64_t k, int64_t seed) {
    const StrategySpec strategy = parse_strategy(strategy_text, "test");
    std::vector<Touched> undo;
    perturber->apply(model, strategy, k, seed, undo);
    BOOST_TEST(static_cast<int64_t>(undo.size()) == k);
    const TrialMetrics metrics = evaluator->evaluate(model);
    Perturber::restore(model, undo);
    BOOST_TEST_REQUIRE(std::memcmp(model.values.data(), pristine.data(), pristine.size() * 4) == 0,
                       "restore after " << strategy_text << " is not bitwise exact");
    return metrics;
  }
};

Stories& stories() {
  static Stories instance;
  return instance;
}

bool close_relative(double actual, double expected, double tolerance) {
  return std::fabs(actual - expected) <= tolerance * std::max(1e-12, std::fabs(expected));
}

const std::string matrices = "include=layers.*.attn.w*,layers.*.ffn.w*";

}  // namespace

BOOST_AUTO_TEST_CASE(baseline_matches_reference, *utf::precondition(test::needs_shared())) {
  Stories& s = stories();
  const Baseline& base = s.evaluator->baseline();
  BOOST_TEST(base.metrics.positions == static_cast<int64_t>(s.fixture.number("baseline.tokens")));
  BOOST_TEST(base.metrics.nonfinite_positions == 0);
  const double expected_nll = s.fixture.number("baseline.mean_nll");
  BOOST_TEST(close_relative(base.metrics.mean_nll, expected_nll, 1e-4),
             "baseline mean NLL " << base.metrics.mean_nll << " vs reference " << expected_nll);
  BOOST_TEST(base.metrics.top1_agreement == 1.0);
  BOOST_TEST(base.metrics.sdc_rate == 0.0);
  BOOST_TEST(base.metrics.mean_kl < 1e-9);
  BOOST_TEST(base.greedy_ids == s.fixture.ids("greedy_from_bos.ids"),
             boost::test_tools::per_element());
  // The batched teacher-forced check of the continuation agrees with step-by-step decoding.
  BOOST_TEST(base.metrics.greedy_length == 256);
  BOOST_TEST(base.metrics.greedy_match == 256);
}

BOOST_AUTO_TEST_CASE(unperturbed_trial_equals_baseline, *utf::precondition(test::needs_shared())) {
  Stories& s = stories();
  const TrialMetrics m = s.trial("zero", 0, 0);
  BOOST_TEST(m.mean_nll == s.evaluator->baseline().metrics.mean_nll);
  BOOST_TEST(m.top1_agreement == 1.0);
  BOOST_TEST(m.max_kl < 1e-12);  // rounding residue of the two-term KL form only
}

BOOST_AUTO_TEST_CASE(targeted_oracles, *utf::precondition(test::needs_shared())) {
  Stories& s = stories();
  struct Case {
    const char* name;
    std::string strategy;
  };
  const Case cases[] = {
      {"zero_top1_all", "magnitude then=zero"},
      {"zero_top1_matrices", "magnitude then=zero " + matrices},
      {"zero_top0.1pct_all", "magnitude then=zero"},
      {"zero_top1pct_matrices", "magnitude then=zero " + matrices},
      {"signflip_top1_matrices", "magnitude then=signflip " + matrices},
      {"bit30_top1_matrices", "magnitude then=bitflip bits=exponent-msb " + matrices},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT("oracle " << c.name) {
      const std::string key = std::string("targeted_oracles.") + c.name;
      const auto k = static_cast<int64_t>(s.fixture.number(key + ".sites"));
      const TrialMetrics m = s.trial(c.strategy, k, 0);
      BOOST_TEST(m.positions == static_cast<int64_t>(s.fixture.number(key + ".tokens")));
      // Silent corruption: right before, wrong after; bounded by the baseline's accuracy and by
      // the disagreement (a changed-but-still-right answer is impossible for a single argmax).
      const double base_accuracy = s.evaluator->baseline().metrics.accuracy;
      BOOST_TEST(m.sdc_rate <= base_accuracy);
      BOOST_TEST(m.sdc_rate <= 1.0 - m.top1_agreement + 1e-12);
      BOOST_TEST(m.sdc_rate >= base_accuracy - m.accuracy - 1e-12);
      BOOST_TEST(m.nonfinite_positions ==
                 static_cast<int64_t>(s.fixture.number(key + ".nonfinite_positions")));
      const double agreement = s.fixture.number(key + ".top1_agreement");
      BOOST_TEST(std::fabs(m.top1_agreement - agreement) <= 1e-3 * std::max(agreement, 1e-3),
                 "top1_agreement " << m.top1_agreement << " vs " << agreement);
      if (s.fixture.text(key + ".mean_nll") == "nan") {
        BOOST_TEST(std::isnan(m.mean_nll));
        BOOST_TEST(std::isnan(m.mean_kl));
      } else {
        BOOST_TEST(close_relative(m.mean_nll, s.fixture.number(key + ".mean_nll"), 1e-3),
                   "mean_nll " << m.mean_nll << " vs " << s.fixture.text(key + ".mean_nll"));
        BOOST_TEST(close_relative(m.mean_kl, s.fixture.number(key + ".mean_kl"), 1e-3),
                   "mean_kl " << m.mean_kl << " vs " << s.fixture.text(key + ".mean_kl"));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(random_strategies_land_in_reference_bands,
                     *utf::precondition(test::needs_shared())) {
  Stories& s = stories();
  struct Case {
    const char* name;
    const char* strategy;
  };
  const Case cases[] = {{"zero_random_0.001", "zero"},
                        {"zero_random_0.01", "zero"},
                        {"zero_random_0.1", "zero"},
                        {"bitflip_anybit_random_0.0001", "bitflip bits=any"},
                        {"bitflip_anybit_random_0.001", "bitflip bits=any"}};
  const char* metrics[] = {"mean_nll", "top1_agreement", "mean_kl", "nonfinite_positions"};
  constexpr int seeds = 10;
  for (const Case& c : cases) {
    const std::string key = std::string("random_strategy_bands.cases.") + c.name;
    const auto k = static_cast<int64_t>(s.fixture.number(key + ".sites"));
    std::vector<TrialMetrics> runs;
    for (int seed = 0; seed < seeds; ++seed) runs.push_back(s.trial(c.strategy, k, seed));
    for (const char* metric : metrics) {
      BOOST_TEST_CONTEXT(c.name << " " << metric) {
        std::vector<double> values;
        int nonfinite = 0;
        for (const TrialMetrics& m : runs) {
          const double v = std::string(metric) == "mean_nll"         ? m.mean_nll
                           : std::string(metric) == "top1_agreement" ? m.top1_agreement
                           : std::string(metric) == "mean_kl"
                               ? m.mean_kl
                               : static_cast<double>(m.nonfinite_positions);
          if (std::isfinite(v))
            values.push_back(v);
          else
            ++nonfinite;
        }
        const std::string band = key + "." + metric;
        if (s.fixture.text(band + ".median") == "null") {
          // The reference's median was non-finite (12 of its 20 seeds). How often float32
          // overflow turns into NaN/Inf depends on operation order at the overflow edge: a plain
          // numpy float32 forward agrees with ours on 17 of 20 recorded trials and shows our
          // rate (~25%). Require that non-finite outcomes occur, not the reference's rate.
          BOOST_TEST(nonfinite >= 1, nonfinite << " of " << seeds << " non-finite");
          continue;
        }
        BOOST_TEST_REQUIRE(values.size() * 2 > static_cast<size_t>(seeds));
        std::sort(values.begin(), values.end());
        const double median = (values[(values.size() - 1) / 2] + values[values.size() / 2]) / 2;
        const double low = s.fixture.number(band + ".min"), high = s.fixture.number(band + ".max");
        BOOST_TEST((median >= low && median <= high), "median " << median
                                                                << " outside the reference band ["
                                                                << low << ", " << high << "]");
      }
    }
  }
}
