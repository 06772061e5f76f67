// Incremental decoding with a KV cache (kv_cache.hpp, LanguageModelForward::decode): the
// single-query attention kernel against the batched one and its reference twin, decoded rows
// against the teacher-forced rows, and the evaluator's greedy continuation (KV-cached, then
// verified teacher-forced) against decoding on the growing prefix (greedy_reference.hpp).
#define BOOST_TEST_MODULE kv_cache
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_ref.hpp"
#include "fracsweep/util/error.hpp"
#include "greedy_reference.hpp"
#include "random_gpt2.hpp"
#include "random_llama.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace utf = boost::unit_test;

namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-1.0f, 1.0f);
  std::vector<float> values(floats(n));
  for (float& value : values) value = distribution(generator);
  return values;
}

struct AttentionShape {
  int64_t len, n_heads, n_kv_heads, head_dim;
};

}  // namespace

// Rows first .. len - 1 of attention_causal_rows are bitwise those of attention_causal (the
// decoded rows then see exactly the batched pass's attention), and match the reference twin.
BOOST_AUTO_TEST_CASE(attention_rows_equal_the_batched_rows) {
  for (const AttentionShape& s : {AttentionShape{1, 1, 1, 8}, AttentionShape{9, 4, 2, 8},
                                  AttentionShape{23, 4, 4, 6}, AttentionShape{40, 8, 2, 16}}) {
    const int64_t q_width = s.n_heads * s.head_dim, kv_width = s.n_kv_heads * s.head_dim;
    const std::vector<float> q = random_floats(s.len * q_width, 1);   // (len, q_width)
    const std::vector<float> k = random_floats(s.len * kv_width, 2);  // (len, kv_width)
    const std::vector<float> v = random_floats(s.len * kv_width, 3);  // (len, kv_width)
    std::vector<float> scratch(floats(attention_scratch_floats(s.len, s.head_dim)));
    std::vector<float> all(floats(s.len * q_width));  // (len, q_width) every query
    attention_causal(q.data(), q_width, k.data(), v.data(), kv_width, all.data(), q_width, s.len,
                     s.n_heads, s.n_kv_heads, s.head_dim, scratch.data());
    for (int64_t first : {int64_t{0}, s.len / 2, s.len - 1, std::max<int64_t>(0, s.len - 9)}) {
      const int64_t rows = s.len - first;
      std::vector<float> fast(floats(rows * q_width));   // (rows, q_width)
      std::vector<float> plain(floats(rows * q_width));  // (rows, q_width)
      attention_causal_rows(q.data() + first * q_width, q_width, k.data(), v.data(), kv_width,
                            fast.data(), q_width, first, s.len, s.n_heads, s.n_kv_heads, s.head_dim,
                            scratch.data());
      ref::attention_causal_rows(q.data() + first * q_width, q_width, k.data(), v.data(), kv_width,
                                 plain.data(), q_width, first, s.len, s.n_heads, s.n_kv_heads,
                                 s.head_dim);
      BOOST_TEST(std::memcmp(fast.data(), all.data() + first * q_width, fast.size() * 4) == 0,
                 "len " << s.len << " first " << first << " head_dim " << s.head_dim);
      double worst = 0;
      for (size_t i = 0; i < fast.size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::fabs(fast[i] - plain[i])));
      }
      BOOST_TEST(worst < 1e-5, "len " << s.len << " first " << first << ": " << worst);
    }
  }
}

namespace {

// Decodes `tokens` with the KV cache (the first `prefill` in one call, then one per call) and
// compares every decoded row with the teacher-forced pass over all of them. Returns how many
// rows are bitwise equal; fails when a logit differs by more than 1e-5 (relative to the row's
// largest magnitude).
int64_t compare_decoded_rows(const Model& model, ForwardFactory make_forward,
                             const std::vector<int32_t>& tokens, int64_t prefill) {
  const auto len = static_cast<int64_t>(tokens.size());
  const int64_t vocab = model.config.vocab_size;
  const std::unique_ptr<LanguageModelForward> forward = make_forward(model.config, len, len);
  std::vector<float> forced(floats(len * vocab));  // (len, vocab) teacher-forced rows
  TokenBatch batch;
  batch.append(tokens);
  forward->run(model, batch, forced.data());
  std::vector<float> decoded(floats(len * vocab));  // (len, vocab) KV-cached rows
  forward->decode(model, tokens.data(), prefill, 0, decoded.data());
  for (int64_t t = prefill; t < len; ++t) {
    forward->decode(model, tokens.data() + t, 1, t, decoded.data() + t * vocab);
  }
  int64_t bitwise = 0;
  double worst = 0;
  for (int64_t t = 0; t < len; ++t) {
    const float* a = decoded.data() + t * vocab;
    const float* b = forced.data() + t * vocab;
    bitwise += std::memcmp(a, b, floats(vocab) * 4) == 0 ? 1 : 0;
    float scale = 0;
    for (int64_t i = 0; i < vocab; ++i) scale = std::max(scale, std::fabs(b[i]));
    for (int64_t i = 0; i < vocab; ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i]) / scale));
    }
  }
  BOOST_TEST_MESSAGE(model.path << ": " << bitwise << " of " << len
                                << " decoded rows bitwise equal to the teacher-forced rows; "
                                   "max |difference| / row scale "
                                << worst);
  BOOST_TEST(worst < 1e-5);
  return bitwise;
}

// A random Llama with grouped-query attention (4 heads sharing 2 key/value heads).
Model random_gqa_llama(int64_t head_dim) {
  return test::random_model(test::config_of(4 * head_dim, 64, 2, 4, 2, 40, false), 7);
}

test::Gpt2Shape gpt2_shape() {
  test::Gpt2Shape shape;
  shape.n_positions = 96;
  return shape;
}

}  // namespace

BOOST_AUTO_TEST_CASE(decoded_llama_rows_match_the_teacher_forced_rows) {
  gemm_init(GemmSetup{});
  for (int64_t head_dim : {8, 6}) {
    const Model model = random_gqa_llama(head_dim);
    const std::vector<int32_t> tokens = test::random_tokens(45, 40, 11);
    compare_decoded_rows(model, make_llama_forward, tokens, 1);
    compare_decoded_rows(model, make_llama_forward, tokens, 13);
  }
}

BOOST_AUTO_TEST_CASE(decoded_gpt2_rows_match_the_teacher_forced_rows) {
  gemm_init(GemmSetup{});
  const Model model = test::gpt2_model(test::random_gpt2(5, gpt2_shape()), gpt2_shape());
  const std::vector<int32_t> tokens = test::random_tokens(60, 50, 12);
  compare_decoded_rows(model, make_gpt2_forward, tokens, 1);
  compare_decoded_rows(model, make_gpt2_forward, tokens, 17);
}

BOOST_AUTO_TEST_CASE(decoded_stories260K_rows_match_the_teacher_forced_rows,
                     *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model model = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const std::vector<int32_t> tokens = test::random_tokens(200, model.config.vocab_size, 13);
  compare_decoded_rows(model, make_llama_forward, tokens, 1);
  compare_decoded_rows(model, make_llama_forward, tokens, 30);
}

// Decoded logits are bitwise the same at 1 and 2 threads per rank: the one-row projections
// (gemm.hpp's row path) split W into the same blocks whatever the thread count. The model is
// wide enough for its projections to run on both threads (w1/w3: 384 x 128, classifier: 300 x
// 128); the prefill of 3 rows takes the row path too.
BOOST_AUTO_TEST_CASE(decoded_rows_do_not_depend_on_the_thread_count) {
  const Model model = test::random_model(test::config_of(128, 384, 2, 4, 2, 300, false), 9);
  const int64_t len = 24;
  const int64_t vocab = model.config.vocab_size;
  const std::vector<int32_t> tokens = test::random_tokens(len, vocab, 10);
  std::vector<std::vector<float>> decoded;  // (threads 1, 2) x (len, vocab)
  for (const int threads : {1, 2}) {
    gemm_init(GemmSetup{BlisKernels::automatic, threads});
    const auto forward = make_llama_forward(model.config, len, len);
    std::vector<float>& logits = decoded.emplace_back(floats(len * vocab));
    forward->decode(model, tokens.data(), 3, 0, logits.data());
    for (int64_t t = 3; t < len; ++t) {
      forward->decode(model, tokens.data() + t, 1, t, logits.data() + t * vocab);
    }
  }
  gemm_init(GemmSetup{});
  BOOST_TEST(std::memcmp(decoded[0].data(), decoded[1].data(), decoded[0].size() * 4) == 0);
}

// Decoding from a start below the last call's end rewinds: the rows are those of a fresh
// sequence with the new tokens there.
BOOST_AUTO_TEST_CASE(decoding_rewinds_to_an_earlier_position) {
  gemm_init(GemmSetup{});
  const Model model = random_gqa_llama(8);
  const int64_t vocab = model.config.vocab_size;
  const std::vector<int32_t> first = test::random_tokens(20, vocab, 1);
  std::vector<int32_t> second = first;
  second[12] = (second[12] + 1) % static_cast<int32_t>(vocab);
  const auto forward = make_llama_forward(model.config, 20, 20);
  std::vector<float> rewound(floats(8 * vocab));  // (8, vocab) rows 12 .. 19 after rewinding
  std::vector<float> fresh(floats(20 * vocab));   // (20, vocab) rows of `second` from scratch
  forward->decode(model, first.data(), 20, 0, fresh.data());
  forward->decode(model, second.data() + 12, 8, 12, rewound.data());
  forward->decode(model, second.data(), 20, 0, fresh.data());
  BOOST_TEST(std::memcmp(rewound.data(), fresh.data() + 12 * vocab, rewound.size() * 4) == 0);
}

BOOST_AUTO_TEST_CASE(decoding_past_the_cache_is_refused) {
  gemm_init(GemmSetup{});
  const Model model = random_gqa_llama(8);
  const auto forward = make_llama_forward(model.config, 10, 10);
  std::vector<float> logits(floats(10 * model.config.vocab_size));
  const std::vector<int32_t> tokens(10, 1);
  BOOST_CHECK_THROW(forward->decode(model, tokens.data(), 1, 10, logits.data()), RunError);
  BOOST_CHECK_THROW(forward->decode(model, tokens.data(), 0, 0, logits.data()), RunError);
  const std::vector<int32_t> outside = {static_cast<int32_t>(model.config.vocab_size)};
  BOOST_CHECK_THROW(forward->decode(model, outside.data(), 1, 0, logits.data()), InputError);
}

namespace {

// The evaluator's baseline continuation of `prompt`, which must equal the growing-prefix
// reference and be confirmed in full by the baseline's own teacher-forced rows.
void check_greedy(const Model& model, ForwardFactory make_forward,
                  const std::vector<int32_t>& prompt, int64_t max_new, int32_t stop_id) {
  EvalInputs inputs;
  inputs.sequences = {test::random_tokens(30, model.config.vocab_size, 3)};
  inputs.greedy_prompt = prompt;
  inputs.greedy_tokens = max_new;
  inputs.greedy_stop_id = stop_id;
  const LanguageModelEvaluator evaluator(model, inputs, make_forward);
  const std::vector<int32_t> expected =
      test::greedy_growing_prefix(model, make_forward, prompt, max_new, stop_id);
  const Baseline& baseline = evaluator.baseline();
  BOOST_TEST(baseline.greedy_ids == expected, boost::test_tools::per_element());
  BOOST_TEST(baseline.metrics.greedy_match == static_cast<int64_t>(expected.size()));
  BOOST_TEST_MESSAGE(model.path << ": greedy continuation of " << expected.size() << " tokens");
}

// A forward pass whose decode() turns every third decoded row's argmax into another token, as
// rounding might (far more often): the teacher-forced verification must repair every one.
class SabotagedForward final : public LanguageModelForward {
 public:
  explicit SabotagedForward(std::unique_ptr<LanguageModelForward> inner, int64_t vocab)
      : inner_(std::move(inner)), vocab_(vocab) {}
  void run(const Model& model, const TokenBatch& batch, float* logits) override {
    inner_->run(model, batch, logits);
  }
  double flops(const TokenBatch& batch) const override { return inner_->flops(batch); }
  double gradient(const Model& model, const TokenBatch& batch, const LogitObjective& objective,
                  const GradientOutputs& out) override {
    return inner_->gradient(model, batch, objective, out);
  }
  void decode(const Model& model, const int32_t* tokens, int64_t n, int64_t start,
              float* logits) override {
    inner_->decode(model, tokens, n, start, logits);
    if (++calls_ % 3 != 0) return;
    float* last = logits + (n - 1) * vocab_;
    const int32_t wrong = (argmax_row(last, vocab_) + 1) % static_cast<int32_t>(vocab_);
    last[wrong] = 1e30f;
  }

 private:
  std::unique_ptr<LanguageModelForward> inner_;
  int64_t vocab_;
  int64_t calls_ = 0;
};

std::unique_ptr<LanguageModelForward> make_sabotaged_llama(const LlamaConfig& config,
                                                           int64_t max_tokens,
                                                           int64_t max_seq_len) {
  return std::make_unique<SabotagedForward>(make_llama_forward(config, max_tokens, max_seq_len),
                                            config.vocab_size);
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_continuation_equals_growing_prefix_on_random_models) {
  gemm_init(GemmSetup{});
  for (int64_t head_dim : {8, 6}) {
    const Model llama = random_gqa_llama(head_dim);
    check_greedy(llama, make_llama_forward, {1}, 100, -1);
    check_greedy(llama, make_llama_forward, {3, 5, 7, 9, 11, 13, 15, 17, 19}, 60, 2);
  }
  const Model gpt2 = test::gpt2_model(test::random_gpt2(5, gpt2_shape()), gpt2_shape());
  check_greedy(gpt2, make_gpt2_forward, {0}, 90, -1);
  check_greedy(gpt2, make_gpt2_forward, {4, 8, 15, 16, 23, 42}, 50, 7);
}

BOOST_AUTO_TEST_CASE(greedy_continuation_equals_growing_prefix_on_stories260K,
                     *utf::precondition(test::needs_shared())) {
  gemm_init(GemmSetup{});
  const Model model = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  check_greedy(model, make_llama_forward, {1}, 256, 1);  // BOS prompt, stops at BOS (id 1)
  check_greedy(model, make_llama_forward, test::random_tokens(40, model.config.vocab_size, 4), 200,
               -1);
}

BOOST_AUTO_TEST_CASE(verification_repairs_wrong_decoded_tokens) {
  gemm_init(GemmSetup{});
  const Model llama = random_gqa_llama(8);
  const std::vector<int32_t> prompt = {3, 5, 7};
  const std::vector<int32_t> expected =
      test::greedy_growing_prefix(llama, make_llama_forward, prompt, 80, -1);
  for (int32_t stop_id : {-1, expected[10]}) {
    EvalInputs inputs;
    inputs.sequences = {test::random_tokens(30, llama.config.vocab_size, 3)};
    inputs.greedy_prompt = prompt;
    inputs.greedy_tokens = 80;
    inputs.greedy_stop_id = stop_id;
    const LanguageModelEvaluator evaluator(llama, inputs, make_sabotaged_llama);
    const std::vector<int32_t> reference =
        test::greedy_growing_prefix(llama, make_llama_forward, prompt, 80, stop_id);
    BOOST_TEST(evaluator.baseline().greedy_ids == reference, boost::test_tools::per_element());
    BOOST_TEST(evaluator.baseline().metrics.greedy_match == static_cast<int64_t>(reference.size()));
  }
}
