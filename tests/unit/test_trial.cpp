// One trial unit (ModelSession::run_trial) on real models: the built-in digits classifier of
// jobs/default (f32, and a bf16 copy written here), and stories260K when ../shared exists.
// Checks the row against values computed here from the job (k = round(f*N) of the scope), the
// model's values bitwise after every trial (NaN/Inf-producing bit flips included), and that a
// trial run twice gives the same row bit for bit.
#define BOOST_TEST_MODULE trial
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/model/stored_type.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/trial/session.hpp"
#include "model_writers.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

const fs::path digits_dir = test::source_dir() / "jobs" / "default";

// The digits MLP's tensors as stored in digits-mlp.safetensors (independent of the loader):
// fc1.weight (64, 64), fc1.bias (64), fc2.weight (10, 64), fc2.bias (10).
constexpr int64_t digits_parameters = 64 * 64 + 64 + 10 * 64 + 10;
constexpr int64_t digits_fc2_parameters = 10 * 64 + 10;

// A job on the digits classifier at `model_json`. Amounts: a fraction so small that k = 0, 25%,
// all weights, and a count of 3 sites.
JobConfig digits_job(const fs::path& model_json) {
  const std::string text =
      "name = trial-test\nseed = 7\n[models]\nmodel = digits path=" + model_json.string() +
      "\n[eval]\ninputs = " + (digits_dir / "digits-test-images.npy").string() +
      "\nlabels = " + (digits_dir / "digits-test-labels.npy").string() +
      "\ninput_divisor = 16\n[sweep]\nfractions = 1e-5 0.25 1\ncounts = 3\nseeds = 0 5\n"
      "strategy = zero\nstrategy = bitflip bits=exponent-msb\nstrategy = bitflip bits=any\n"
      "strategy = gaussian sigma=0.5\nstrategy = zero include=fc2.*\n";
  return parse_job_text(text, (digits_dir / "trial-test.ini").string());
}

// Runs trial `id` and requires the model's values to be bitwise those before it.
TrialResult run_and_check_restore(ModelSession& session, const JobConfig& job, const Grid& grid,
                                  int64_t id, bool record_sites = false) {
  const std::vector<float> before(session.model().values.begin(),
                                  session.model().values.end());  // (n_parameters)
  TrialResult result = session.run_trial(job, grid.trial(id), record_sites, /*rank=*/3);
  const WeightBuffer& after = session.model().values;  // (n_parameters)
  const std::string strategy =
      job.strategies[static_cast<size_t>(grid.trial(id).strategy_idx)].canonical();
  BOOST_TEST_REQUIRE(after.size() == before.size());
  BOOST_TEST_REQUIRE(std::memcmp(after.data(), before.data(), before.size() * sizeof(float)) == 0,
                     "trial " << id << " (" << strategy << ") did not restore the model bitwise");
  return result;
}

// Every column of two rows equal bit for bit, wall_s aside.
void require_same_row(const TrialRow& a, const TrialRow& b) {
  BOOST_TEST(a.trial == b.trial);
  BOOST_TEST(a.model_idx == b.model_idx);
  BOOST_TEST(a.strategy_idx == b.strategy_idx);
  BOOST_TEST(a.amount_idx == b.amount_idx);
  BOOST_TEST(a.seed_idx == b.seed_idx);
  BOOST_TEST(std::memcmp(&a.fraction, &b.fraction, sizeof a.fraction) == 0);
  BOOST_TEST(a.seed == b.seed);
  BOOST_TEST(a.k == b.k);
  BOOST_TEST(a.n_scope == b.n_scope);
  static_assert(sizeof(TrialMetrics) == (15 + 2 * max_probe_kinds) * 8,
                "TrialMetrics has no padding to compare");
  BOOST_TEST(a.k_changed == b.k_changed);
  BOOST_TEST(std::memcmp(&a.metrics, &b.metrics, sizeof(TrialMetrics)) == 0,
             "metrics of trial " << a.trial << " differ between two runs");
  BOOST_TEST(a.rank == b.rank);
  BOOST_TEST(a.status == b.status);
}

// The index of fraction `f` (as written in the job) on the amount axis.
int32_t fraction_index(const JobConfig& job, double f) {
  for (size_t i = 0; i < job.amounts.size(); ++i) {
    if (!job.amounts[i].is_count && job.amounts[i].fraction == f) return static_cast<int32_t>(i);
  }
  BOOST_FAIL("fraction " << f << " is not in the job");
  return -1;
}

int64_t find_trial(const Grid& grid, int32_t strategy_idx, int32_t amount_idx, int32_t seed_idx) {
  for (int64_t id = 0; id < grid.size(); ++id) {
    const TrialSpec& spec = grid.trial(id);
    if (spec.strategy_idx == strategy_idx && spec.amount_idx == amount_idx &&
        spec.seed_idx == seed_idx) {
      return id;
    }
  }
  BOOST_FAIL("no such trial");
  return -1;
}

struct Digits {
  GemmInfo gemm = gemm_init(GemmSetup{});  // before the session computes its baseline
  JobConfig job = digits_job(digits_dir / "digits-mlp.json");
  Grid grid = job_grid(job);
  EvalSources sources = read_eval_sources(job);
  ModelSession session{job, 0, sources};
};

}  // namespace

BOOST_AUTO_TEST_CASE(every_row_names_its_trial_and_amount_and_restores_the_model) {
  Digits d;
  const int32_t fc2_only = 4;  // strategy "zero include=fc2.*"
  int64_t nonfinite_trials = 0;
  for (int64_t id = 0; id < d.grid.size(); ++id) {
    const TrialSpec& spec = d.grid.trial(id);
    const TrialRow row = run_and_check_restore(d.session, d.job, d.grid, id).row;
    const Amount& amount = d.job.amounts[static_cast<size_t>(spec.amount_idx)];
    const int64_t n_scope =
        spec.strategy_idx == fc2_only ? digits_fc2_parameters : digits_parameters;
    const int64_t k = amount.is_count
                          ? amount.count
                          : std::llround(amount.fraction * static_cast<double>(n_scope));
    BOOST_TEST(row.trial == id);
    BOOST_TEST(row.model_idx == 0);
    BOOST_TEST(row.strategy_idx == spec.strategy_idx);
    BOOST_TEST(row.amount_idx == spec.amount_idx);
    BOOST_TEST(row.seed_idx == spec.seed_idx);
    BOOST_TEST(row.seed == (spec.seed_idx == 0 ? 0 : 5));
    BOOST_TEST(row.n_scope == n_scope);
    BOOST_TEST(row.k == k);
    BOOST_TEST(row.fraction ==
               (amount.is_count ? 3.0 / static_cast<double>(n_scope) : amount.fraction));
    BOOST_TEST(row.rank == 3);
    BOOST_TEST(row.metrics.positions == 450);  // held-out digits images
    BOOST_TEST(row.status == (row.metrics.nonfinite_positions > 0 ? status_nonfinite : status_ok));
    BOOST_TEST(row.wall_s > 0.0);
    if (row.status == status_nonfinite) ++nonfinite_trials;
  }
  // The exponent-msb flips of 25% and 100% of the weights overflow: restores above covered NaN/Inf.
  BOOST_TEST(nonfinite_trials >= 2);
}

BOOST_AUTO_TEST_CASE(no_sites_leaves_behaviour_unchanged_and_zeroing_everything_destroys_it) {
  Digits d;
  const int32_t zero = 0;
  const int32_t tiny = fraction_index(d.job, 1e-5);  // k = round(4810e-5) = 0
  const int32_t all = fraction_index(d.job, 1.0);

  const TrialRow unchanged =
      run_and_check_restore(d.session, d.job, d.grid, find_trial(d.grid, zero, tiny, 0)).row;
  BOOST_TEST(unchanged.k == 0);
  BOOST_TEST(unchanged.metrics.top1_agreement == 1.0);
  // KL of identical distributions: zero up to the rounding of its one-pass formula (metrics.hpp).
  BOOST_TEST(std::fabs(unchanged.metrics.mean_kl) < 1e-12);
  BOOST_TEST(unchanged.metrics.accuracy == d.session.summary().baseline.metrics.accuracy);
  BOOST_TEST(unchanged.metrics.sdc_rate == 0.0);
  BOOST_TEST(unchanged.metrics.nonfinite_positions == 0);

  // Every weight and bias zero: all logits 0, every prediction the first class, p uniform.
  const TrialRow zeroed =
      run_and_check_restore(d.session, d.job, d.grid, find_trial(d.grid, zero, all, 0)).row;
  BOOST_TEST(zeroed.k == digits_parameters);
  BOOST_TEST(zeroed.metrics.top1_agreement < 0.2);
  BOOST_TEST(zeroed.metrics.accuracy < 0.2);
  BOOST_TEST(zeroed.metrics.mean_kl > 1.0);
  BOOST_TEST(zeroed.status == status_ok);
}

BOOST_AUTO_TEST_CASE(recorded_sites_are_the_touched_values_and_k_long) {
  Digits d;
  const int32_t bitflip_any = 2;
  const int32_t quarter = fraction_index(d.job, 0.25);
  const std::vector<float> pristine(d.session.model().values.begin(),
                                    d.session.model().values.end());  // (n_parameters)
  const TrialResult result = run_and_check_restore(
      d.session, d.job, d.grid, find_trial(d.grid, bitflip_any, quarter, 1), /*record_sites=*/true);
  BOOST_TEST_REQUIRE(static_cast<int64_t>(result.sites.size()) == result.row.k);
  for (const SiteRecord& site : result.sites) {
    BOOST_TEST_REQUIRE(site.offset >= 0);
    BOOST_TEST_REQUIRE(site.offset < digits_parameters);
    const float loaded = pristine[static_cast<size_t>(site.offset)];
    BOOST_TEST(std::memcmp(&site.old_value, &loaded, sizeof loaded) == 0);
    BOOST_TEST(std::memcmp(&site.new_value, &loaded, sizeof loaded) != 0,
               "a bit flip changes the bits");
  }
}

BOOST_AUTO_TEST_CASE(the_same_trial_twice_gives_the_same_row) {
  Digits d;
  std::vector<TrialRow> rows;  // (n_trials) first run of each trial, in id order
  for (int64_t id = 0; id < d.grid.size(); ++id) {
    rows.push_back(run_and_check_restore(d.session, d.job, d.grid, id).row);
    require_same_row(rows.back(), run_and_check_restore(d.session, d.job, d.grid, id).row);
  }
  // A fresh session running the trials in reverse order: no state carries between trials.
  ModelSession second(d.job, 0, d.sources);
  for (int64_t id = d.grid.size() - 1; id >= 0; --id) {
    require_same_row(run_and_check_restore(second, d.job, d.grid, id).row,
                     rows[static_cast<size_t>(id)]);
  }
}

BOOST_AUTO_TEST_CASE(bf16_stored_weights_are_restored_bitwise) {
  // A copy of the digits model whose weights are stored as bf16 (rounded from the f32 file).
  const test::TempPath dir("trial-bf16");
  fs::create_directories(dir.path);
  const SafetensorsFile f32((digits_dir / "digits-mlp.safetensors").string());
  std::vector<test::SafetensorsEntry> entries;
  for (const char* name : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
    const SafetensorsTensor& tensor = f32.at(name);
    std::vector<float> values(static_cast<size_t>(tensor.count));  // (count)
    f32.read_as_float(tensor, values.data());
    std::vector<uint16_t> bits;  // (count) bf16 patterns
    for (float v : values) bits.push_back(float_to_bf16(v));
    entries.push_back({name, "BF16", tensor.shape, test::u16_bytes(bits)});
  }
  test::write_safetensors(dir.path + "/digits-mlp.safetensors", entries);
  fs::copy_file(digits_dir / "digits-mlp.json", fs::path(dir.path) / "digits-mlp.json");

  gemm_init(GemmSetup{});  // before the session computes its baseline
  const JobConfig job = digits_job(fs::path(dir.path) / "digits-mlp.json");
  const Grid grid = job_grid(job);
  const EvalSources sources = read_eval_sources(job);
  ModelSession session(job, 0, sources);
  for (const TensorInfo& t : session.model().tensors) {
    BOOST_TEST((t.stored == StoredType::bf16), t.name);
  }
  int64_t nonfinite_trials = 0;
  for (int64_t id = 0; id < grid.size(); ++id) {
    const TrialRow row = run_and_check_restore(session, job, grid, id).row;
    require_same_row(row, run_and_check_restore(session, job, grid, id).row);
    if (row.status == status_nonfinite) ++nonfinite_trials;
  }
  BOOST_TEST(nonfinite_trials >= 2);
}

BOOST_AUTO_TEST_CASE(stories260k_single_bit_30_flip_and_restore,
                     *utf::precondition(test::needs_shared())) {
  const std::string text =
      "name = trial-stories\n[models]\nmodel = stories260K path=" +
      test::shared_file("models/stories260K/stories260K.bin") +
      " tokenizer=" + test::shared_file("models/stories260K/tok512.bin") +
      "\n[eval]\ntext = " + test::shared_file("data/tinystories/tinystories_val.txt") +
      "\nparagraphs = 4\ngreedy_tokens = 16\n[sweep]\nfractions = 1e-3\ncounts = 1\nseeds = 0\n"
      "strategy = gaussian sigma=0.1\n"
      "strategy = magnitude then=bitflip bits=30 include=layers.*.attn.w*,layers.*.ffn.w*\n";
  const JobConfig job = parse_job_text(text, "trial-stories.ini");
  gemm_init(GemmSetup{});
  const Grid grid = job_grid(job);
  const EvalSources sources = read_eval_sources(job);
  ModelSession session(job, 0, sources);
  for (int64_t id = 0; id < grid.size(); ++id) {
    const TrialRow row = run_and_check_restore(session, job, grid, id).row;
    require_same_row(row, run_and_check_restore(session, job, grid, id).row);
    const Amount& amount = job.amounts[static_cast<size_t>(row.amount_idx)];
    if (amount.is_count) BOOST_TEST(row.k == 1);
    if (row.strategy_idx == 0) {
      BOOST_TEST(row.n_scope == 260032);  // expected.json: every parameter of stories260K
      BOOST_TEST(row.k == (amount.is_count ? 1 : 260));
      BOOST_TEST(row.status == status_ok);
    } else if (amount.is_count) {
      // expected.json (bit30_top1_matrices): bit 30 of the largest-|w| projection weight makes
      // every output non-finite.
      BOOST_TEST(row.status == status_nonfinite);
      BOOST_TEST(row.metrics.nonfinite_positions == row.metrics.positions);
    }
  }
}
