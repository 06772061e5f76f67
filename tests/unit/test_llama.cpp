// llama.hpp: the batched forward pass against the ref:: forward on random in-memory models
// (MHA and GQA, shared and unshared classifier, stacked sequences of different lengths); a
// sequence's logits do not depend on its neighbours in the batch; and stories260K reproduces
// the teacher-forced top-5 logits computed by an independent implementation.
#define BOOST_TEST_MODULE llama

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/util/error.hpp"
#include "random_llama.hpp"
#include "shared_data.hpp"

namespace fs = fracsweep;
using fs::test::config_of;
using fs::test::random_model;
using fs::test::random_tokens;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

std::vector<float> forward(const fs::Model& model, const fs::TokenBatch& batch) {
  fs::LlamaWorkspace workspace(model.config, batch.n_tokens(), model.config.seq_len);
  std::vector<float> logits(static_cast<size_t>(batch.n_tokens() * model.config.vocab_size));
  fs::llama_forward(model, batch, workspace, logits.data());
  return logits;
}

}  // namespace

BOOST_AUTO_TEST_CASE(forward_matches_reference_forward) {
  struct Case {
    const char* name;
    fs::LlamaConfig config;
  };
  for (const Case& c :
       {Case{"MHA, shared classifier", config_of(32, 56, 2, 4, 4, 37, true)},
        Case{"GQA, unshared classifier", config_of(48, 100, 3, 6, 2, 53, false)},
        Case{"GQA 8/4 head_dim 8, odd hidden", config_of(64, 77, 2, 8, 4, 61, true)},
        Case{"MQA, unshared", config_of(40, 64, 1, 4, 1, 29, false)}}) {
    const fs::Model model = random_model(c.config, 7);
    fs::TokenBatch batch;
    uint32_t seed = 100;
    for (int64_t len : {1, 17, 5, 40, 33})
      batch.append(random_tokens(len, c.config.vocab_size, seed++));
    const std::vector<float> fast = forward(model, batch);
    std::vector<float> plain;
    fs::llama_forward_ref(model, batch, plain);
    BOOST_TEST_REQUIRE(fast.size() == plain.size());
    double largest_error = 0.0;
    double largest_logit = 0.0;
    double squared_error = 0.0;
    double squared_logits = 0.0;
    for (size_t i = 0; i < fast.size(); ++i) {
      const double error = static_cast<double>(fast[i]) - plain[i];
      largest_error = std::max(largest_error, std::abs(error));
      largest_logit = std::max(largest_logit, std::abs(static_cast<double>(plain[i])));
      squared_error += error * error;
      squared_logits += static_cast<double>(plain[i]) * plain[i];
    }
    BOOST_TEST_MESSAGE(c.name << ": max |logit| " << largest_logit << ", max error "
                              << largest_error << ", NMSE " << squared_error / squared_logits);
    BOOST_TEST(largest_logit > 1.0, c.name << ": logits are not trivially small");
    BOOST_TEST(largest_error / largest_logit < 1e-5, c.name);
    BOOST_TEST(squared_error / squared_logits < 1e-11, c.name);
  }
}

BOOST_AUTO_TEST_CASE(sequence_logits_do_not_depend_on_neighbours) {
  const fs::Model model = random_model(config_of(64, 77, 2, 8, 4, 61, false), 8);
  const int64_t vocab = model.config.vocab_size;
  std::vector<std::vector<int32_t>> sequences = {
      random_tokens(23, vocab, 1), random_tokens(64, vocab, 2), random_tokens(9, vocab, 3)};
  const auto stack = [](const std::vector<std::vector<int32_t>>& all) {
    fs::TokenBatch batch;
    for (const auto& sequence : all) batch.append(sequence);
    return batch;
  };
  const fs::TokenBatch stacked = stack(sequences);
  const std::vector<float> stacked_logits = forward(model, stacked);
  const auto logits_of = [&](const std::vector<float>& logits, size_t s) {
    const auto first = logits.begin() + stacked.seq_start[s] * vocab;
    return std::vector<float>(first, logits.begin() + stacked.seq_start[s + 1] * vocab);
  };

  // Alone vs stacked: the same up to rounding. Not bitwise: BLIS may take another code path
  // for another M (the haswell and zen3 kernel sets have a small-matrix path).
  for (size_t s = 0; s < sequences.size(); ++s) {
    const std::vector<float> alone = forward(model, stack({sequences[s]}));
    const std::vector<float> in_stack = logits_of(stacked_logits, s);
    BOOST_TEST_REQUIRE(in_stack.size() == alone.size());
    double largest_error = 0.0;
    double largest_logit = 0.0;
    for (size_t i = 0; i < alone.size(); ++i) {
      largest_error =
          std::max(largest_error, std::abs(static_cast<double>(in_stack[i]) - alone[i]));
      largest_logit = std::max(largest_logit, std::abs(static_cast<double>(alone[i])));
    }
    BOOST_TEST(largest_error / largest_logit < 1e-5, "sequence " << s);
  }

  // Same shapes, other tokens in the middle sequence: the others' logits stay bitwise equal.
  sequences[1] = random_tokens(64, vocab, 4);
  const std::vector<float> changed_logits = forward(model, stack(sequences));
  BOOST_TEST(logits_of(changed_logits, 1) != logits_of(stacked_logits, 1));
  for (size_t s : {size_t{0}, size_t{2}}) {
    BOOST_TEST(logits_of(changed_logits, s) == logits_of(stacked_logits, s), "sequence " << s);
  }
}

BOOST_AUTO_TEST_CASE(forward_rejects_what_does_not_fit) {
  const fs::Model model = random_model(config_of(32, 56, 1, 4, 2, 37, true), 9);
  fs::TokenBatch batch;
  batch.append(random_tokens(10, 37, 4));
  batch.append(random_tokens(6, 37, 5));
  std::vector<float> logits(static_cast<size_t>(16 * 37));
  fs::LlamaWorkspace too_few_tokens(model.config, 15, 10);
  BOOST_CHECK_THROW(fs::llama_forward(model, batch, too_few_tokens, logits.data()), fs::RunError);
  fs::LlamaWorkspace too_short(model.config, 16, 9);
  BOOST_CHECK_THROW(fs::llama_forward(model, batch, too_short, logits.data()), fs::RunError);
  fs::LlamaWorkspace fits(model.config, 16, 10);
  BOOST_CHECK_NO_THROW(fs::llama_forward(model, batch, fits, logits.data()));
  fs::TokenBatch bad_token = batch;
  bad_token.tokens[3] = 37;  // vocab_size
  BOOST_CHECK_THROW(fs::llama_forward(model, bad_token, fits, logits.data()), fs::InputError);
  fs::TokenBatch bad_position = batch;
  bad_position.positions[3] = 128;  // seq_len
  BOOST_CHECK_THROW(fs::llama_forward(model, bad_position, fits, logits.data()), fs::InputError);
}

BOOST_AUTO_TEST_CASE(flops_hand_computed) {
  // dim 8, hidden 16, 1 layer, 2 heads (head_dim 4), 1 kv head (kv_dim 4), vocab 10;
  // sequences of 3 and 1 tokens (n = 4).
  //   GEMMs: 2*4*(8*8 + 4*8 + 4*8 + 8*8 + 3*16*8) = 8*576 = 4608; classifier 2*4*10*8 = 640.
  //   Attention: 2 * head_dim 4 * heads 2 * (3*4 + 1*2) = 16 * 14 = 224.
  fs::TokenBatch batch;
  batch.append({1, 2, 3});
  batch.append({4});
  BOOST_TEST(fs::llama_forward_flops(config_of(8, 16, 1, 2, 1, 10, true), batch) ==
             4608.0 + 640.0 + 224.0);
}

BOOST_AUTO_TEST_CASE(stories260k_teacher_forced_top5,
                     *boost::unit_test::precondition(fs::test::needs_shared())) {
  const fs::Model model =
      fs::load_llama2c(fs::test::shared_file("models/stories260K/stories260K.bin"));
  const fs::test::Fixture fixture;
  const std::string positions = "teacher_forced_paragraph0_first16";
  BOOST_TEST_REQUIRE(fixture.number(positions + "#") == 16.0);
  fs::TokenBatch batch;
  batch.append(fixture.ids("eval_set.first_paragraph_ids"));
  const std::vector<float> logits = forward(model, batch);
  const int64_t vocab = model.config.vocab_size;
  double worst_logit_error = 0.0;
  double worst_logsumexp_error = 0.0;
  for (int i = 0; i < 16; ++i) {
    const std::string entry = positions + "." + std::to_string(i) + ".";
    const auto position = static_cast<int64_t>(fixture.number(entry + "position"));
    const std::vector<int32_t> want_ids = fixture.ids(entry + "top5_ids");
    const float* row = logits.data() + position * vocab;
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    const double largest = row[order[0]];
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - largest);
    const double logsumexp = largest + std::log(sum);
    for (size_t r = 0; r < 5; ++r) {
      const double want_logit = fixture.number(entry + "top5_logits." + std::to_string(r));
      BOOST_TEST(order[r] == want_ids[r], "position " << position << " rank " << r);
      BOOST_TEST(std::abs(row[want_ids[r]] - want_logit) < 1e-3,
                 "position " << position << " rank " << r << ": " << row[want_ids[r]] << " vs "
                             << want_logit);
      worst_logit_error = std::max(worst_logit_error, std::abs(row[want_ids[r]] - want_logit));
    }
    const double want_logsumexp = fixture.number(entry + "logsumexp");
    BOOST_TEST(std::abs(logsumexp - want_logsumexp) < 1e-3, "position " << position);
    worst_logsumexp_error = std::max(worst_logsumexp_error, std::abs(logsumexp - want_logsumexp));
  }
  BOOST_TEST_MESSAGE("stories260K teacher-forced: max |logit error| "
                     << worst_logit_error << ", max |logsumexp error| " << worst_logsumexp_error);
}
