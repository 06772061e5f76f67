#define BOOST_TEST_MODULE grid
#include <array>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <stdexcept>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "shared_data.hpp"

namespace fs = std::filesystem;
using fracsweep::Amount;
using fracsweep::Grid;
using fracsweep::JobConfig;
using fracsweep::StrategyKind;
using fracsweep::StrategySpec;
using fracsweep::TrialSpec;

namespace {

StrategySpec strategy_of(StrategyKind kind) {
  StrategySpec strategy;
  strategy.kind = kind;
  return strategy;
}

// 2 models; strategies zero (random), magnitude (deterministic), gaussian (random);
// 3 amounts; 4 seeds.
JobConfig small_job() {
  JobConfig job;
  job.name = "grid-test";
  job.models = {{.name = "a", .path = "/a.bin", .tokenizer_path = "/tok.bin"},
                {.name = "b", .path = "/b.bin", .tokenizer_path = "/tok.bin"}};
  job.strategies = {strategy_of(StrategyKind::zero), strategy_of(StrategyKind::magnitude),
                    strategy_of(StrategyKind::gaussian)};
  job.amounts = {Amount{.fraction = 0.001}, Amount{.fraction = 0.01},
                 Amount{.is_count = true, .count = 8}};
  job.seeds = {3, 5, 7, 9};
  return job;
}

// The source tree's jobs/ directory (this file is tests/unit/test_grid.cpp).
fs::path jobs_dir() {
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "jobs";
}

}  // namespace

BOOST_AUTO_TEST_CASE(size_counts_deterministic_strategies_once_per_amount) {
  const Grid grid = job_grid(small_job());
  // Per model: 2 random strategies x 3 amounts x 4 seeds + 1 deterministic x 3 amounts = 27.
  BOOST_TEST(grid.size() == 54);
  BOOST_TEST(grid.model_begin(0) == 0);
  BOOST_TEST(grid.model_end(0) == 27);
  BOOST_TEST(grid.model_begin(1) == 27);
  BOOST_TEST(grid.model_end(1) == 54);
}

BOOST_AUTO_TEST_CASE(ids_run_model_then_strategy_then_amount_then_seed) {
  const Grid grid = job_grid(small_job());
  // Hand-derived decodes: {id, model, strategy, amount, seed}.
  const std::array<std::array<int64_t, 5>, 10> expected = {{
      {0, 0, 0, 0, 0},
      {3, 0, 0, 0, 3},
      {4, 0, 0, 1, 0},
      {11, 0, 0, 2, 3},
      {12, 0, 1, 0, 0},  // magnitude: one trial per amount, first seed
      {13, 0, 1, 1, 0},
      {14, 0, 1, 2, 0},
      {15, 0, 2, 0, 0},
      {26, 0, 2, 2, 3},
      {27, 1, 0, 0, 0},
  }};
  for (const auto& [id, model, strategy, amount, seed] : expected) {
    BOOST_TEST_CONTEXT("trial " << id) {
      const TrialSpec& trial = grid.trial(id);
      BOOST_TEST(trial.id == id);
      BOOST_TEST(trial.model_idx == model);
      BOOST_TEST(trial.strategy_idx == strategy);
      BOOST_TEST(trial.amount_idx == amount);
      BOOST_TEST(trial.seed_idx == seed);
    }
  }
  BOOST_TEST(grid.trial(53).model_idx == 1);
  BOOST_TEST(grid.trial(53).strategy_idx == 2);
  BOOST_TEST(grid.trial(53).amount_idx == 2);
  BOOST_TEST(grid.trial(53).seed_idx == 3);
  BOOST_CHECK_THROW(grid.trial(54), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(every_trial_matches_a_plain_enumeration) {
  const JobConfig job = small_job();
  const Grid grid = job_grid(job);
  int64_t id = 0;
  for (int32_t m = 0; m < 2; ++m) {
    BOOST_TEST(grid.model_begin(m) == id);
    for (int32_t s = 0; s < 3; ++s) {
      const int32_t n_seeds = s == 1 ? 1 : 4;  // strategy 1 is magnitude
      for (int32_t a = 0; a < 3; ++a) {
        for (int32_t r = 0; r < n_seeds; ++r, ++id) {
          const TrialSpec trial = grid.trial(id);
          BOOST_TEST_CONTEXT("trial " << id) {
            BOOST_TEST(trial.id == id);
            BOOST_TEST((trial.model_idx == m && trial.strategy_idx == s && trial.amount_idx == a &&
                        trial.seed_idx == r));
          }
        }
      }
    }
    BOOST_TEST(grid.model_end(m) == id);
  }
  BOOST_TEST(grid.size() == id);
}

BOOST_AUTO_TEST_CASE(only_deterministic_strategies_ignore_the_seed_axis) {
  JobConfig job = small_job();
  job.models.resize(1);
  job.strategies = {strategy_of(StrategyKind::magnitude)};
  const Grid grid = job_grid(job);
  BOOST_TEST(grid.size() == 3);
  for (int64_t id = 0; id < grid.size(); ++id) BOOST_TEST(grid.trial(id).seed_idx == 0);
}

BOOST_AUTO_TEST_CASE(a_large_grid_is_computed_not_stored) {
  // 2 models x 3 strategies (one deterministic) x 1,000 amounts x 1,000,000 seeds: 4,000,002,000
  // trials, decoded without building a table of them.
  fracsweep::GridAxes axes;
  axes.n_models = 2;
  axes.deterministic = {false, true, false};
  axes.n_amounts = 1000;
  axes.n_seeds = 1'000'000;
  const Grid grid(axes);
  const int64_t per_model = 2 * 1000 * 1'000'000LL + 1000;
  BOOST_TEST(grid.size() == 2 * per_model);
  BOOST_TEST(grid.model_begin(1) == per_model);
  const TrialSpec last = grid.trial(grid.size() - 1);
  BOOST_TEST((last.model_idx == 1 && last.strategy_idx == 2 && last.amount_idx == 999 &&
              last.seed_idx == 999'999));
  const TrialSpec deterministic = grid.trial(1000LL * 1'000'000 + 999);  // model 0, strategy 1
  BOOST_TEST((deterministic.model_idx == 0 && deterministic.strategy_idx == 1 &&
              deterministic.amount_idx == 999 && deterministic.seed_idx == 0));
  BOOST_CHECK_THROW(grid.trial(-1), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(claims_job_grid_size,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const Grid grid =
      job_grid(fracsweep::parse_job_file((jobs_dir() / "stories260K-claims.ini").string()));
  // 9 random strategies x 15 fractions x 10 seeds + 3 magnitude strategies x 15 fractions.
  BOOST_TEST(grid.size() == 9 * 15 * 10 + 3 * 15);
  BOOST_TEST(grid.model_end(0) == grid.size());
}
