// Deliberate change (issue 11): strategy lines, the best-bit rule in every stored format,
// objectives through the evaluator (against the plain mean-NLL objective of the gradient
// tests), rankings by predicted gain and by |w| * input norm, the bfa search (prefixes,
// recorded objectives, bitwise restore) and the sparse fine-tuning attack (determinism, only
// its sites move, the objective rises).
#define BOOST_TEST_MODULE attacks

#include <algorithm>
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/llama_backward.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/perturb/saliency.hpp"
#include "fracsweep/trial/attacks.hpp"
#include "fracsweep/util/error.hpp"
#include "gradient_checks.hpp"
#include "random_llama.hpp"

namespace fs = fracsweep;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

fs::StrategySpec strategy(const std::string& text) {
  return fs::parse_strategy(text, "test");
}

// A random GQA model with its evaluator (three sequences, no greedy continuation), perturber
// and attack runner.
struct Setup {
  fs::Model model = fs::test::random_model(fs::test::config_of(16, 24, 2, 4, 2, 19, true), 7);
  std::unique_ptr<fs::LanguageModelEvaluator> evaluator;
  std::unique_ptr<fs::Perturber> perturber;
  std::unique_ptr<fs::AttackRunner> attacks;
  Setup() {
    fs::EvalInputs inputs;
    for (uint32_t s = 0; s < 3; ++s)
      inputs.sequences.push_back(fs::test::random_tokens(9 + s, 19, 30 + s));
    inputs.greedy_prompt = {1};
    inputs.greedy_tokens = 0;
    evaluator = std::make_unique<fs::LanguageModelEvaluator>(model, inputs, fs::make_llama_forward);
    perturber = std::make_unique<fs::Perturber>(model, 0, "m");
    attacks = std::make_unique<fs::AttackRunner>(model, *evaluator, *perturber);
  }
  double objective(const fs::Objective& objective) {
    return evaluator->objective_value(model, evaluator->objective_terms(objective));
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(strategy_lines_and_their_labels) {
  BOOST_TEST(strategy("taylor").canonical() == "taylor(then=zero,objective=nll)");
  BOOST_TEST(strategy("taylor then=bitflip objective=agreement").canonical() ==
             "taylor(then=bitflip,bits=any,objective=agreement)");
  BOOST_TEST(strategy("wanda then=signflip").canonical() == "wanda(then=signflip)");
  BOOST_TEST(strategy("bfa bits=exponent candidates=3 objective=remove:refusal").canonical() ==
             "bfa(bits=exponent,candidates=3,objective=remove:refusal)");
  BOOST_TEST(strategy("bfa limit=64").canonical() ==
             "bfa(bits=any,candidates=1,limit=64,objective=nll)");
  BOOST_TEST(strategy("finetune sites=random steps=3 lr=0.01 objective=implant:fact").canonical() ==
             "finetune(sites=random,steps=3,lr=0.01,objective=implant:fact)");
  BOOST_TEST(strategy("taylor").deterministic());
  BOOST_TEST(!strategy("finetune sites=random").deterministic());
  BOOST_TEST(strategy("bfa").flips_bits());
  for (const char* bad :
       {"taylor objective=loss", "taylor objective=remove:", "bfa candidates=0", "bfa then=zero",
        "finetune lr=0", "finetune steps=1.5", "wanda objective=nll",
        "wanda then=bitflip bits=mantissa", "finetune sites=largest"}) {
    BOOST_CHECK_THROW(strategy(bad), fs::InputError);
  }
}

BOOST_AUTO_TEST_CASE(best_bit_flip_is_the_best_of_its_class_in_every_format) {
  std::mt19937 generator(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const fs::StoredType stored :
       {fs::StoredType::f32, fs::StoredType::f16, fs::StoredType::bf16}) {
    for (const fs::BitClass bits :
         {fs::BitClass::any, fs::BitClass::mantissa, fs::BitClass::exponent, fs::BitClass::sign}) {
      const fs::BitRange range = fs::bit_range(stored, bits, -1);
      for (int trial = 0; trial < 200; ++trial) {
        // A value the format holds exactly, and a gradient of either sign.
        const float w =
            stored == fs::StoredType::f32
                ? normal(generator)
                : fs::stored16_to_float(stored, fs::round_to_stored16(stored, normal(generator)));
        const float g = normal(generator);
        const fs::CandidateChange best = fs::best_bit_flip(stored, w, g, bits, -1);
        BOOST_TEST_REQUIRE((best.bit >= range.first && best.bit <= range.last));
        BOOST_TEST(std::bit_cast<uint32_t>(best.new_value) ==
                   std::bit_cast<uint32_t>(fs::flip_stored_bit(stored, w, best.bit)));
        for (int b = range.first; b <= range.last; ++b) {  // no bit of the class predicts more
          const double gain =
              static_cast<double>(g) * (static_cast<double>(fs::flip_stored_bit(stored, w, b)) - w);
          BOOST_TEST((std::isnan(gain) || gain <= best.gain),
                     "bit " << b << " beats bit " << best.bit);
        }
      }
    }
  }
  // Widths: f16 sign 15, exponent 10..14; bf16 exponent 7..14; f32 mantissa 0..22.
  BOOST_TEST(fs::bit_range(fs::StoredType::f16, fs::BitClass::exponent, -1).first == 10);
  BOOST_TEST(fs::bit_range(fs::StoredType::bf16, fs::BitClass::exponent, -1).first == 7);
  BOOST_TEST(fs::bit_range(fs::StoredType::f32, fs::BitClass::mantissa, -1).last == 22);
  BOOST_TEST(fs::bit_range(fs::StoredType::f16, fs::BitClass::sign, -1).first == 15);
}

BOOST_AUTO_TEST_CASE(evaluator_objectives_and_gradients) {
  Setup s;
  // nll through the evaluator equals the plain mean-NLL objective over the eval sequences.
  const std::vector<fs::CrossEntropyTerm> nll = s.evaluator->objective_terms(fs::Objective{});
  std::vector<float> via_evaluator(s.model.values.size()), direct(s.model.values.size()), arena;
  const double value =
      s.evaluator->gradient(s.model, nll, fs::GradientOutputs{via_evaluator.data(), nullptr});
  const double plain = fs::llama_gradient(s.model, s.evaluator->batch(),
                                          fs::test::mean_nll_objective(s.evaluator->batch()),
                                          fs::GradientOutputs{direct.data(), nullptr}, arena);
  BOOST_TEST(std::abs(value - plain) < 1e-9 * plain);
  BOOST_TEST(fs::test::relative_error(via_evaluator, direct) < 1e-6);
  BOOST_TEST(std::abs(s.objective(fs::Objective{}) - value) < 1e-9 * value);
  BOOST_TEST(std::abs(value - s.evaluator->baseline().metrics.mean_nll) < 1e-6 * value);
  // agreement: the cross-entropy against the model's own top-1 is below its NLL of the data
  // (random tokens), and its gradient is another vector.
  const fs::Objective agreement{fs::ObjectiveKind::agreement, ""};
  std::vector<float> agreement_grad(s.model.values.size());
  const double agreement_value =
      s.evaluator->gradient(s.model, s.evaluator->objective_terms(agreement),
                            fs::GradientOutputs{agreement_grad.data(), nullptr});
  BOOST_TEST(agreement_value < value);
  BOOST_TEST(fs::test::relative_error(agreement_grad, direct) > 1e-2);
  // A probe objective needs probes of its kind.
  BOOST_CHECK_THROW(
      s.evaluator->objective_terms(fs::Objective{fs::ObjectiveKind::probe_remove, "refusal"}),
      fs::InputError);
}

BOOST_AUTO_TEST_CASE(taylor_and_wanda_rank_by_their_scores) {
  Setup s;
  const std::vector<float> before(s.model.values.begin(), s.model.values.end());
  for (const char* line :
       {"taylor then=zero", "taylor then=bitflip bits=mantissa", "wanda then=zero"}) {
    const fs::StrategySpec spec = strategy(line);
    s.attacks->prepare_ranking(spec);
    const std::vector<int64_t> sites = s.perturber->select_sites(spec, 40, 0);
    BOOST_TEST(sites.size() == 40u);
    std::vector<float> norms(s.model.values.size());
    if (spec.kind == fs::StrategyKind::wanda) {
      s.evaluator->gradient(s.model, s.evaluator->objective_terms(fs::Objective{}),
                            fs::GradientOutputs{nullptr, norms.data()});
    }
    const std::vector<float>* g = s.perturber->gradient("nll");
    const auto score = [&](int64_t offset) {
      const float w = s.model.values[static_cast<size_t>(offset)];
      if (spec.kind == fs::StrategyKind::wanda)
        return std::fabs(static_cast<double>(w)) * norms[static_cast<size_t>(offset)];
      return fs::targeted_change(spec, fs::StoredType::f32, w, (*g)[static_cast<size_t>(offset)])
          .gain;
    };
    // Descending scores, ties by offset, and no unchosen site scores above the last chosen.
    for (size_t i = 1; i < sites.size(); ++i) {
      BOOST_TEST((score(sites[i - 1]) > score(sites[i]) ||
                  (score(sites[i - 1]) == score(sites[i]) && sites[i - 1] < sites[i])),
                 line << " rank " << i);
    }
    const std::set<int64_t> chosen(sites.begin(), sites.end());
    for (int64_t offset = 0; offset < s.model.n_parameters(); ++offset) {
      if (!chosen.count(offset)) BOOST_TEST_REQUIRE(score(offset) <= score(sites.back()), line);
    }
  }
  // First order is right about the best site: zeroing it raises the NLL by about its gain.
  const fs::StrategySpec taylor = strategy("taylor then=zero");
  const int64_t top = s.perturber->select_sites(taylor, 1, 0)[0];
  const double predicted =
      fs::targeted_change(taylor, fs::StoredType::f32, s.model.values[static_cast<size_t>(top)],
                          (*s.perturber->gradient("nll"))[static_cast<size_t>(top)])
          .gain;
  std::vector<fs::Touched> undo;
  const double baseline = s.objective(fs::Objective{});
  s.perturber->apply(s.model, taylor, 1, 0, undo);
  const double after = s.objective(fs::Objective{});
  fs::Perturber::restore(s.model, undo);
  BOOST_TEST(after - baseline > 0.5 * predicted,
             "actual " << after - baseline << " predicted " << predicted);
  BOOST_TEST((s.model.values == before));
}

BOOST_AUTO_TEST_CASE(bfa_paths_are_prefixes_and_record_the_objective) {
  Setup first, second;
  const std::vector<float> before(first.model.values.begin(), first.model.values.end());
  const fs::StrategySpec spec = strategy("bfa bits=mantissa candidates=2");
  const std::vector<fs::PathStep> long_path = first.attacks->bfa_path(spec, 4);
  BOOST_TEST((first.model.values == before));  // searched, then restored bitwise
  const std::vector<fs::PathStep> short_path = second.attacks->bfa_path(spec, 2);  // another "rank"
  BOOST_TEST_REQUIRE(long_path.size() == 4u);
  BOOST_TEST_REQUIRE(short_path.size() == 2u);
  std::vector<fs::Touched> undo;
  double previous = first.objective(fs::Objective{});
  for (size_t i = 0; i < long_path.size(); ++i) {
    if (i < short_path.size()) {
      BOOST_TEST(short_path[i].offset == long_path[i].offset);
      BOOST_TEST(short_path[i].bit == long_path[i].bit);
    }
    // Replaying the prefix gives the objective the search recorded, and each flip raised it.
    fs::apply_path(first.model, {long_path[i]}, undo);
    const double now = first.objective(fs::Objective{});
    BOOST_TEST(now == long_path[i].objective);
    BOOST_TEST(now > previous, "step " << i);
    BOOST_TEST(long_path[i].bit < 23);  // mantissa only
    previous = now;
  }
  fs::Perturber::restore(first.model, undo);
  BOOST_TEST((first.model.values == before));
}

BOOST_AUTO_TEST_CASE(finetune_moves_only_its_sites_deterministically_and_raises_the_objective) {
  Setup first, second;
  const std::vector<float> before(first.model.values.begin(), first.model.values.end());
  const fs::StrategySpec spec = strategy("finetune sites=taylor steps=4 lr=0.05");
  const double baseline = first.objective(fs::Objective{});
  std::vector<fs::Touched> undo_first, undo_second;
  first.attacks->prepare_ranking(spec);
  second.attacks->prepare_ranking(spec);
  const int64_t changed = first.attacks->finetune(spec, 6, 0, undo_first);
  second.attacks->finetune(spec, 6, 0, undo_second);
  BOOST_TEST(changed == 6);
  BOOST_TEST((first.model.values == second.model.values));  // deterministic
  int64_t differing = 0;
  for (size_t i = 0; i < before.size(); ++i) differing += first.model.values[i] != before[i];
  BOOST_TEST(differing == 6);
  BOOST_TEST(first.objective(fs::Objective{}) > baseline);
  fs::Perturber::restore(first.model, undo_first);
  BOOST_TEST((first.model.values == before));
}
