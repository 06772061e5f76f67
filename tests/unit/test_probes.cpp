// Behaviour probes and fine-tune deltas on the real stories260K pair (base and its refusal
// fine-tune), against values computed by an independent reference implementation
// (../shared/fixtures/stories260K/refusal-expected.json), plus the probes file's input errors.
#define BOOST_TEST_MODULE probes
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>

#include "fixture.hpp"
#include "fracsweep/config/strategy.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/probes.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"
#include "temp_dir.hpp"

using namespace fracsweep;
namespace utf = boost::unit_test;

namespace {

const char* const refusal_fixture = "fixtures/stories260K/refusal-expected.json";

// One checkpoint of the pair with an evaluator over the fixture's 50 paragraphs and the probes.
struct Checkpoint {
  Model model;
  Tokenizer tokenizer;
  ProbeSet probes;
  std::unique_ptr<LanguageModelEvaluator> evaluator;

  explicit Checkpoint(const std::string& file)
      : model(load_llama2c(test::shared_file("models/stories260K/" + file))),
        tokenizer(Tokenizer::load_llama2c(test::shared_file("models/stories260K/tok512.bin"),
                                          model.config.vocab_size)),
        probes(read_probes(test::shared_file("fixtures/stories260K/probes.tsv"))) {
    gemm_init(GemmSetup{});
    EvalInputs inputs;
    const std::string eval_text = test::shared_file("data/tinystories/tinystories_val.txt");
    inputs.sequences = encode_paragraphs(tokenizer, read_paragraphs(eval_text, 50),
                                         model.config.seq_len, eval_text);
    inputs.greedy_prompt = {tokenizer.bos_id()};
    inputs.greedy_tokens = 0;
    inputs.greedy_stop_id = tokenizer.bos_id();
    inputs.probes = probe_token_ids(probes, tokenizer, model.config.seq_len);
    inputs.probe_kinds = probes.kinds;
    evaluator = std::make_unique<LanguageModelEvaluator>(model, inputs, make_llama_forward);
  }
};

// The stored pieces of `ids` back to back (byte-fallback pieces as "<0xXX>", as the fixture
// writes them).
std::string raw_text(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, size_t n) {
  std::string text;
  for (size_t i = 0; i < n && i < ids.size(); ++i) text += tokenizer.piece(ids[i]);
  return text;
}

void check_against_fixture(const std::string& file, const std::string& which) {
  const test::Fixture fixture(refusal_fixture);
  Checkpoint checkpoint(file);
  const TrialMetrics& base = checkpoint.evaluator->baseline().metrics;
  const double nll = fixture.number("eval_nll." + which);
  BOOST_TEST(std::fabs(base.mean_nll - nll) <= 1e-4 * nll,
             which << " NLL " << base.mean_nll << " vs " << nll);

  // The fixture also holds the training prompts ("train-trigger"); the held-out probes.tsv
  // prompts are matched by text.
  const auto outcomes = checkpoint.evaluator->probe_outcomes();
  BOOST_TEST_REQUIRE(outcomes.size() == checkpoint.probes.probes.size());
  std::vector<int> refusing(checkpoint.probes.kinds.size(), 0),
      total(checkpoint.probes.kinds.size(), 0);
  const int n_fixture = std::stoi(fixture.text("probes#"));
  for (int f = 0; f < n_fixture; ++f) {
    const std::string at = "probes." + std::to_string(f) + ".";
    size_t p = 0;
    while (p < checkpoint.probes.probes.size() &&
           checkpoint.probes.probes[p].prompt != fixture.text(at + "prompt"))
      ++p;
    if (p == checkpoint.probes.probes.size()) continue;
    const Probe& probe = checkpoint.probes.probes[p];
    BOOST_TEST_REQUIRE(probe.kind == fixture.text(at + "kind"));
    const std::string expected_text = fixture.text(at + which + ".greedy_text");
    const bool refuses = fixture.text(at + which + ".refuses") == "True";
    const double logprob = fixture.number(at + which + ".refusal_logprob");
    BOOST_TEST(std::fabs(outcomes[p].logprob - logprob) <= 1e-3 * std::fabs(logprob),
               which << " probe " << p << " log-prob " << outcomes[p].logprob << " vs " << logprob);
    BOOST_TEST(outcomes[p].begins_with_target == refuses, which << " probe " << p);
    // The greedy continuation, token by token: its stored pieces must spell the fixture's text
    // at some token boundary (the fixture cuts continuations at a token).
    const std::vector<int32_t> prompt = checkpoint.tokenizer.encode(probe.prompt, true, false);
    const auto ids = checkpoint.evaluator->greedy_continuation(checkpoint.model, prompt, 64,
                                                               checkpoint.tokenizer.bos_id());
    size_t n = 0;
    while (n < ids.size() && raw_text(checkpoint.tokenizer, ids, n).size() < expected_text.size())
      ++n;
    BOOST_TEST(raw_text(checkpoint.tokenizer, ids, n) == expected_text, which << " probe " << p);
    const auto k = static_cast<size_t>(checkpoint.probes.kind_index(probe.kind));
    refusing[k] += refuses;
    ++total[k];
  }
  BOOST_TEST(std::accumulate(total.begin(), total.end(), 0) ==
             static_cast<int>(checkpoint.probes.probes.size()));
  for (size_t k = 0; k < refusing.size(); ++k) {
    BOOST_TEST(base.probe_rate[k] == static_cast<double>(refusing[k]) / total[k]);
    BOOST_TEST(base.probe_rate[k] ==
               fixture.number("refusal_rate." + checkpoint.probes.kinds[k] + "." + which));
  }
}

// A byte-fallback vocabulary: <unk>, <s>, </s>, the 256 <0xXX> pieces, then " " (259), "a"
// (260), "b" (261), " a" (262) and " b" (263), the last two mergeable.
Tokenizer tiny_tokenizer() {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    pieces.push_back(name);
  }
  for (const char* piece : {" ", "a", "b", " a", " b"}) pieces.push_back(piece);
  std::vector<float> scores(pieces.size(), 0.0f);
  scores[262] = scores[263] = 1.0f;
  return Tokenizer(pieces, scores);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// read_probes (+ encoding) must fail naming the file, the line and the column.
void check_bad_probes(const std::string& text, const std::string& expected_fragment) {
  test::TempDir dir;
  const std::string path = (dir.path() / "probes.tsv").string();
  write_file(path, text);
  try {
    const ProbeSet set = read_probes(path);
    probe_token_ids(set, tiny_tokenizer(), 8);
    BOOST_FAIL("accepted: " << text);
  } catch (const InputError& error) {
    const std::string message = error.what();
    BOOST_TEST(message.find(path) != std::string::npos, message);
    BOOST_TEST(message.find(expected_fragment) != std::string::npos, message);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(base_model_matches_the_reference, *utf::precondition(test::needs_shared())) {
  check_against_fixture("stories260K.bin", "base");
}

BOOST_AUTO_TEST_CASE(tuned_model_matches_the_reference, *utf::precondition(test::needs_shared())) {
  check_against_fixture("stories260K-refusal.bin", "tuned");
}

BOOST_AUTO_TEST_CASE(reference_metrics_compare_with_the_second_checkpoint,
                     *utf::precondition(test::needs_shared())) {
  Checkpoint tuned("stories260K-refusal.bin");
  const Model base = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  tuned.evaluator->set_reference(base);
  // The unperturbed tuned model against itself is exact; against its base it differs.
  const TrialMetrics self = tuned.evaluator->evaluate(tuned.model);
  BOOST_TEST(self.top1_agreement == 1.0);
  BOOST_TEST(self.mean_kl < 1e-12);
  BOOST_TEST(self.top1_agreement_ref < 0.9);
  BOOST_TEST(self.mean_kl_ref > 0.1);
  // The base model's own outputs against the reference (= base) are exact.
  const TrialMetrics as_base = tuned.evaluator->evaluate(base);
  BOOST_TEST(as_base.top1_agreement_ref == 1.0);
  BOOST_TEST(as_base.mean_kl_ref < 1e-12);
  BOOST_TEST(as_base.top1_agreement == self.top1_agreement_ref);
}

BOOST_AUTO_TEST_CASE(delta_at_fraction_one_reproduces_the_donor_bitwise,
                     *utf::precondition(test::needs_shared())) {
  Model tuned = load_llama2c(test::shared_file("models/stories260K/stories260K-refusal.bin"));
  const Model base = load_llama2c(test::shared_file("models/stories260K/stories260K.bin"));
  const std::vector<float> pristine(tuned.values.begin(), tuned.values.end());
  Perturber perturber(tuned, 0, "tuned");
  perturber.add_donor("base", base);
  for (const char* text : {"delta from=base order=random", "delta from=base order=largest"}) {
    const StrategySpec revert = parse_strategy(text, "test");
    std::vector<Touched> undo;
    const int64_t changed = perturber.apply(tuned, revert, tuned.n_parameters(), 3, undo);
    BOOST_TEST(changed == 260032);  // every value of the fine-tune moved (fixture: delta.changed)
    BOOST_TEST(std::memcmp(tuned.values.data(), base.values.data(), base.values.size() * 4) == 0,
               text);
    Perturber::restore(tuned, undo);
    BOOST_TEST(std::memcmp(tuned.values.data(), pristine.data(), pristine.size() * 4) == 0, text);
  }
  // Largest first: the first site moved holds the largest |delta| (fixture: delta.max_abs).
  const test::Fixture fixture(refusal_fixture);
  std::vector<Touched> undo;
  perturber.apply(tuned, parse_strategy("delta from=base order=largest", "test"), 1, 0, undo);
  const auto site = static_cast<size_t>(undo.at(0).offset);
  BOOST_TEST(std::fabs(base.values[site] - pristine[site]) ==
                 static_cast<float>(fixture.number("delta.max_abs")),
             boost::test_tools::tolerance(1e-6f));
  Perturber::restore(tuned, undo);
}

BOOST_AUTO_TEST_CASE(delta_needs_matching_shapes, *utf::precondition(test::needs_shared())) {
  Model tuned = load_llama2c(test::shared_file("models/stories260K/stories260K-refusal.bin"));
  Model other = tuned;
  other.path = "other.bin";
  std::swap(other.tensors[0].shape[0], other.tensors[0].shape[1]);  // same count, transposed
  Perturber perturber(tuned, 0, "tuned");
  BOOST_CHECK_EXCEPTION(perturber.add_donor("other", other), InputError, [](const InputError& e) {
    return std::string(e.what()).find("expected two checkpoints of one architecture") !=
           std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(bad_probe_files_name_file_line_and_column) {
  check_bad_probes("", "empty; expected the header");
  check_bad_probes("kind\tprompt\n", "line 1: expected the header");
  check_bad_probes("kind\tprompt\ttarget\ntrigger\ta\n",
                   "line 2: expected 3 tab-separated columns");
  check_bad_probes("kind\tprompt\ttarget\ntrigger\ta\t\n", "line 2: column 'target' is empty");
  check_bad_probes("kind\tprompt\ttarget\ntrigger\t\tb\n", "line 2: column 'prompt' is empty");
  check_bad_probes("kind\tprompt\ttarget\nbad kind\ta\tb\n", "line 2: column 'kind'");
  check_bad_probes("kind\tprompt\ttarget\n", "has a header but no probe");
  // Too long for seq_len 8: BOS + 9 tokens.
  check_bad_probes("kind\tprompt\ttarget\nk\ta\t b b b b b b b b\n",
                   "line 2: column 'target': prompt + target is");
}

BOOST_AUTO_TEST_CASE(a_character_without_a_piece_names_file_line_and_column) {
  // A character-level vocabulary, no byte pieces: <unk>, BOS, EOS, " ", "a", "b".
  const Tokenizer tokenizer({"<unk>", "<s>", "</s>", " ", "a", "b"}, std::vector<float>(6, 0.0f));
  test::TempDir dir;
  const auto fails = [&](const std::string& probe_line, const std::string& expected) {
    const std::string path = (dir.path() / "probes.tsv").string();
    write_file(path, "kind\tprompt\ttarget\nk\ta\tb\n" + probe_line);
    BOOST_CHECK_EXCEPTION(probe_token_ids(read_probes(path), tokenizer, 16), InputError,
                          [&](const InputError& error) {
                            BOOST_TEST_INFO(error.what());
                            return std::string(error.what()).starts_with(path + expected);
                          });
  };
  fails("k\ta\xC3\xA9\tb\n", ": line 3: column 'prompt': character \"\xC3\xA9\" (U+00E9)");
  fails("k\tab\tb?\n", ": line 3: column 'target': character \"?\" (U+003F)");
}

BOOST_AUTO_TEST_CASE(target_tokens_follow_the_prompt_tokens) {
  test::TempDir dir;
  const std::string path = (dir.path() / "probes.tsv").string();
  write_file(path, "kind\tprompt\ttarget\r\nk\ta\t b\r\n\r\nother\tb\t a a\r\n");
  const ProbeSet set = read_probes(path);
  BOOST_TEST(set.kinds == (std::vector<std::string>{"k", "other"}),
             boost::test_tools::per_element());
  const auto tokens = probe_token_ids(set, tiny_tokenizer(), 16);
  BOOST_TEST(tokens[0].prompt_ids == (std::vector<int32_t>{1, 262}),
             boost::test_tools::per_element());
  BOOST_TEST(tokens[0].target_ids == (std::vector<int32_t>{263}), boost::test_tools::per_element());
  BOOST_TEST(tokens[1].kind == 1);
  BOOST_TEST(tokens[1].prompt_ids == (std::vector<int32_t>{1, 263}),
             boost::test_tools::per_element());
  BOOST_TEST(tokens[1].target_ids == (std::vector<int32_t>{262, 262}),
             boost::test_tools::per_element());
}
