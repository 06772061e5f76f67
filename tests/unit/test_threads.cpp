// Every threaded kernel gives bitwise the same results at 1, 2 and 3 threads per rank
// (threads.hpp): the Llama forward pass on stories260K and a GPT-2 forward pass on a random
// model, KV-cached decoding and the greedy continuation, and the evaluator's metrics
// (log-softmax, NLL, KL against two references, argmax agreement, probes). The shapes are large
// enough that every kernel crosses min_parallel_floats and really splits its work; 3 threads
// split rows unevenly. Decoding is kept short: every one-row step is a few dozen GEMMs, and BLIS
// threads spin at barriers, which is slow with 3 threads on a 2-core machine.
#define BOOST_TEST_MODULE threads
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <functional>
#include <vector>

#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "random_gpt2.hpp"
#include "random_llama.hpp"
#include "shared_data.hpp"

using namespace fracsweep;
namespace utf = boost::unit_test;

namespace {

constexpr int thread_counts[] = {2, 3};  // compared with 1

void use_threads(int threads) {
  gemm_init(GemmSetup{BlisKernels::automatic, threads});
  BOOST_TEST_REQUIRE(parallel_threads() == threads);
}

// `compute` at each thread count; every result must be bitwise the 1-thread one.
template <class Result>
void check_same_at_every_thread_count(
    const std::function<Result()>& compute,
    const std::function<bool(const Result&, const Result&)>& same) {
  use_threads(1);
  const Result serial = compute();
  for (int threads : thread_counts) {
    use_threads(threads);
    BOOST_TEST_CONTEXT("threads " << threads) {
      BOOST_TEST(same(compute(), serial));
    }
  }
  use_threads(1);
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

bool same_metrics(const TrialMetrics& a, const TrialMetrics& b) {
  bool same = a.positions == b.positions && a.nonfinite_positions == b.nonfinite_positions &&
              a.greedy_match == b.greedy_match && a.greedy_length == b.greedy_length;
  for (auto field :
       {&TrialMetrics::mean_nll, &TrialMetrics::perplexity, &TrialMetrics::mean_nll_finite,
        &TrialMetrics::accuracy, &TrialMetrics::sdc_rate, &TrialMetrics::top1_agreement,
        &TrialMetrics::mean_kl, &TrialMetrics::max_kl, &TrialMetrics::mean_kl_finite,
        &TrialMetrics::top1_agreement_ref, &TrialMetrics::mean_kl_ref}) {
    same = same && same_bits(a.*field, b.*field);
  }
  for (size_t k = 0; k < a.probe_rate.size(); ++k) {
    same = same && same_bits(a.probe_rate[k], b.probe_rate[k]) &&
           same_bits(a.probe_logprob[k], b.probe_logprob[k]);
  }
  return same;
}

// `count` sequences of `len` random tokens.
TokenBatch random_batch(int64_t count, int64_t len, int64_t vocab) {
  TokenBatch batch;
  for (int64_t s = 0; s < count; ++s) {
    batch.append(test::random_tokens(len - s, vocab, static_cast<uint32_t>(100 + s)));
  }
  return batch;
}

// Logits of a forward pass over `batch`, then of decoding `prompt_rows` rows of its first
// sequence at once and the next `steps` one at a time (the KV-cached greedy path).
std::vector<float> forward_and_decode(const Model& model, ForwardFactory make_forward,
                                      const TokenBatch& batch, int64_t prompt_rows, int64_t steps) {
  const int64_t vocab = model.config.vocab_size;
  int64_t longest = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    longest = std::max(longest, batch.seq_start[floats(s + 1)] - batch.seq_start[floats(s)]);
  }
  const auto forward = make_forward(model.config, batch.n_tokens(), longest);
  std::vector<float> logits(floats(batch.n_tokens() * vocab));  // (n_tokens, vocab)
  forward->run(model, batch, logits.data());
  std::vector<float> decoded(floats(prompt_rows * vocab));  // (prompt_rows, vocab)
  forward->decode(model, batch.tokens.data(), prompt_rows, 0, decoded.data());
  logits.insert(logits.end(), decoded.begin(), decoded.end());
  for (int64_t step = 0; step < steps; ++step) {
    forward->decode(model, batch.tokens.data() + prompt_rows + step, 1, prompt_rows + step,
                    decoded.data());
    logits.insert(logits.end(), decoded.begin(), decoded.begin() + vocab);
  }
  return logits;
}

}  // namespace

BOOST_AUTO_TEST_CASE(attention_spans_equal_attention_rows_at_every_thread_count) {
  const int64_t n_heads = 8, n_kv_heads = 2, head_dim = 16, q_width = n_heads * head_dim,
                kv_width = n_kv_heads * head_dim;
  const std::vector<AttentionSpan> spans = {{0, 0, 0, 70}, {70, 70, 0, 33}, {103, 103, 0, 90}};
  const int64_t rows = 193;
  std::vector<float> q(floats(rows * q_width)), k(floats(rows * kv_width)),
      v(floats(rows * kv_width));  // (rows, q_width), (rows, kv_width) x 2
  std::mt19937 generator(5);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (auto* values : {&q, &k, &v}) {
    for (float& value : *values) value = uniform(generator);
  }
  std::vector<float> expected(floats(rows * q_width));  // (rows, q_width)
  std::vector<float> one(floats(attention_scratch_floats(90, head_dim)));
  for (const AttentionSpan& span : spans) {
    attention_causal_rows(q.data() + span.q_row * q_width, q_width,
                          k.data() + span.kv_row * kv_width, v.data() + span.kv_row * kv_width,
                          kv_width, expected.data() + span.q_row * q_width, q_width, span.first,
                          span.len, n_heads, n_kv_heads, head_dim, one.data());
  }
  for (int threads : {1, 2, 3}) {
    use_threads(threads);
    std::vector<float> scratch;
    std::vector<float> out(floats(rows * q_width));  // (rows, q_width)
    attention_causal_spans(q.data(), q_width, k.data(), v.data(), kv_width, out.data(), q_width,
                           spans, n_heads, n_kv_heads, head_dim, scratch);
    BOOST_TEST_CONTEXT("threads " << threads) {
      BOOST_TEST(same_floats(out, expected));
    }
  }
  use_threads(1);
}

BOOST_AUTO_TEST_CASE(stories260K_forward_and_decoding_at_every_thread_count,
                     *utf::precondition(test::needs_shared())) {
  const Model model = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const TokenBatch batch = random_batch(8, 256, model.config.vocab_size);
  BOOST_TEST_REQUIRE(batch.n_tokens() * model.config.dim >= min_parallel_floats);
  check_same_at_every_thread_count<std::vector<float>>(
      [&] { return forward_and_decode(model, make_llama_forward, batch, 200, 6); }, same_floats);
}

BOOST_AUTO_TEST_CASE(gpt2_forward_and_decoding_at_every_thread_count) {
  test::Gpt2Shape shape;
  shape.n_embd = 64;
  shape.n_head = 4;
  shape.n_inner = 256;
  shape.n_positions = 160;
  shape.vocab = 300;
  const Model model = test::gpt2_model(test::random_gpt2(9, shape), shape);
  const TokenBatch batch = random_batch(6, 150, shape.vocab);
  BOOST_TEST_REQUIRE(batch.n_tokens() * shape.n_embd >= min_parallel_floats);
  check_same_at_every_thread_count<std::vector<float>>(
      [&] { return forward_and_decode(model, make_gpt2_forward, batch, 120, 6); }, same_floats);
}

// A perturbed trial's metrics against the baseline and a second reference, with probes and
// the greedy continuation; and the baseline continuation itself (KV-cached, then verified).
BOOST_AUTO_TEST_CASE(evaluator_metrics_at_every_thread_count,
                     *utf::precondition(test::needs_shared())) {
  Model model = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const int64_t vocab = model.config.vocab_size;
  EvalInputs inputs;
  for (uint32_t s = 0; s < 4; ++s) inputs.sequences.push_back(test::random_tokens(200, vocab, s));
  BOOST_TEST_REQUIRE(4 * 200 * model.config.dim >= min_parallel_floats);
  inputs.greedy_prompt = {1};
  inputs.greedy_tokens = 24;
  inputs.greedy_stop_id = -1;
  inputs.probe_kinds = {"a", "b"};
  for (int32_t p = 0; p < 80; ++p) {
    inputs.probes.push_back(ProbeTokens{p % 2, test::random_tokens(6, vocab, 1000 + p),
                                        test::random_tokens(3, vocab, 2000 + p)});
  }
  BOOST_TEST_REQUIRE(80 * vocab >= min_parallel_floats);  // probes and metrics split by rows
  Perturber perturber(model, 0, "stories260K");
  const StrategySpec strategy = parse_strategy("gaussian sigma=0.5", "test");
  const int64_t sites = model.n_parameters() / 20;
  struct Outcome {
    std::vector<int32_t> greedy;
    TrialMetrics baseline, trial;
  };
  check_same_at_every_thread_count<Outcome>(
      [&] {
        LanguageModelEvaluator evaluator(model, inputs, make_llama_forward);
        std::vector<Touched> undo;
        perturber.apply(model, strategy, sites / 4, 1, undo);
        evaluator.set_reference(model);  // a second checkpoint: the lightly perturbed model
        Perturber::restore(model, undo);
        perturber.apply(model, strategy, sites, 2, undo);
        Outcome outcome{evaluator.baseline().greedy_ids, evaluator.baseline().metrics,
                        evaluator.evaluate(model)};
        Perturber::restore(model, undo);
        return outcome;
      },
      [](const Outcome& a, const Outcome& b) {
        return a.greedy == b.greedy && same_metrics(a.baseline, b.baseline) &&
               same_metrics(a.trial, b.trial);
      });
}
