// A character-level llama2.c model written here (tokenizer_files.hpp's vocabulary of 68 tokens
// with no byte pieces, and a random checkpoint of that vocabulary) through the job checks and
// the model loader: the baseline on text paragraphs, the same baseline from [eval] tokens without
// a tokenizer, and a character outside the vocabulary refused before any work, naming the file,
// the paragraph or key, and the character.
#define BOOST_TEST_MODULE char_model
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/util/error.hpp"
#include "model_writers.hpp"
#include "random_llama.hpp"
#include "temp_dir.hpp"
#include "tokenizer_files.hpp"

using namespace fracsweep;

namespace {

// Three paragraphs of vocabulary characters; with BOS they encode to 6, 17 and 12 tokens
// (tokenizer_files.hpp's merges), 32 predicted positions in all.
constexpr const char* eval_text = "the cat\n\nTin hat.\nThe end!\n\nin the thin heather\n";
constexpr int64_t eval_positions = 5 + 16 + 11;

// A 2-D int32 .npy image of `rows`, padded with -1 to the longest row.
std::string npy_rows(const std::vector<std::vector<int32_t>>& rows) {
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.size());
  std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows.size()) + ", " + std::to_string(width) + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';  // magic, version, length and header: a multiple of 64 bytes
  const auto length = static_cast<uint16_t>(header.size());
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes.append(reinterpret_cast<const char*>(&length), 2);
  bytes += header;
  for (const auto& row : rows) {
    for (size_t t = 0; t < width; ++t) {
      const int32_t id = t < row.size() ? row[t] : -1;
      bytes.append(reinterpret_cast<const char*>(&id), 4);
    }
  }
  return bytes;
}

// The model, its tokenizer.bin and the evaluation text in a temporary directory.
struct CharModel {
  test::TempDir dir;
  std::string model_path = dir.file("char.bin");
  std::string tokenizer_path =
      dir.write("char-tok.bin", test::tokenizer_bin(test::char_vocabulary()));
  std::string text_path = dir.write("eval.txt", eval_text);

  CharModel() {
    LlamaConfig config = test::config_of(16, 32, 2, 2, 1, test::char_vocab_size, true);
    config.seq_len = 32;
    test::write_llama2c(model_path, test::random_model(config, 11));
    gemm_init(GemmSetup{});
  }

  // A job on the model; `eval` is the [eval] section's body.
  JobConfig job(const std::string& eval, bool with_tokenizer = true) const {
    const std::string text = "name = char\n[models]\nmodel = char path=" + model_path +
                             (with_tokenizer ? " tokenizer=" + tokenizer_path : "") + "\n[eval]\n" +
                             eval + "\n[sweep]\nfractions = 0.01\nseeds = 0\nstrategy = zero\n";
    return parse_job_text(text, dir.file("char.ini"));
  }

  // Checks the job like a run does, then opens the model (computing its baseline).
  static std::unique_ptr<OpenModel> open(const JobConfig& job) {
    check_job_inputs(job);
    return open_model(job, 0, read_eval_sources(job));
  }
};

// check_job_inputs(job) throws InputError whose message starts with `start`.
void check_refused(const JobConfig& job, const std::string& start) {
  BOOST_CHECK_EXCEPTION(check_job_inputs(job), InputError, [&](const InputError& error) {
    BOOST_TEST_INFO(error.what());
    return std::string(error.what()).starts_with(start);
  });
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_baseline_on_a_character_vocabulary) {
  const CharModel m;
  const auto open =
      CharModel::open(m.job("text = " + m.text_path + "\nparagraphs = 3\ngreedy_tokens = 6"));
  const Baseline& baseline = open->evaluator->baseline();
  BOOST_TEST(baseline.metrics.positions == eval_positions);
  BOOST_TEST(std::isfinite(baseline.metrics.mean_nll));
  BOOST_TEST(baseline.metrics.mean_nll > 0);
  const Tokenizer tokenizer = Tokenizer::load_llama2c(m.tokenizer_path, test::char_vocab_size);
  BOOST_TEST(open->baseline_text == tokenizer.decode_after(1, baseline.greedy_ids));
}

BOOST_AUTO_TEST_CASE(pre_tokenized_evaluation_needs_no_tokenizer) {
  const CharModel m;
  const auto from_text =
      CharModel::open(m.job("text = " + m.text_path + "\nparagraphs = 3\ngreedy_tokens = 6"));
  const Tokenizer tokenizer = Tokenizer::load_llama2c(m.tokenizer_path, test::char_vocab_size);
  std::vector<std::vector<int32_t>> rows;  // (3) the paragraphs as the text job encoded them
  for (const char* paragraph : {"the cat", "Tin hat.\nThe end!", "in the thin heather"}) {
    rows.push_back(tokenizer.encode(paragraph, true, false));
  }
  const std::string tokens = m.dir.write("tokens.npy", npy_rows(rows));
  const std::string eval = "tokens = " + tokens + "\ngreedy_tokens = 6";
  const JobConfig job = m.job(eval, /*with_tokenizer=*/false);
  BOOST_TEST(job.models[0].tokenizer_path.empty());
  const auto from_tokens = CharModel::open(job);
  const Baseline& expected = from_text->evaluator->baseline();
  const Baseline& baseline = from_tokens->evaluator->baseline();
  BOOST_TEST(baseline.metrics.positions == eval_positions);
  BOOST_TEST(std::memcmp(&baseline.metrics.mean_nll, &expected.metrics.mean_nll,
                         sizeof(double)) == 0);  // bitwise
  BOOST_TEST(baseline.greedy_ids == expected.greedy_ids, boost::test_tools::per_element());
  BOOST_TEST(from_tokens->baseline_text.empty());  // nothing to decode it with
  // Given a tokenizer anyway, it decodes the continuation.
  BOOST_TEST(CharModel::open(m.job(eval))->baseline_text == from_text->baseline_text);
}

BOOST_AUTO_TEST_CASE(a_character_outside_the_vocabulary_is_refused_before_any_work) {
  const CharModel m;
  const std::string text = m.dir.write("accents.txt", "the cat\n\nthe caf\xC3\xA9\n");
  check_refused(m.job("text = " + text + "\nparagraphs = 2"),
                text +
                    ": paragraph 2: character \"\xC3\xA9\" (U+00E9) is not in the tokenizer's "
                    "vocabulary, which has no byte-fallback piece \"<0xC3>\" either");
  check_refused(m.job("text = " + m.text_path + "\nparagraphs = 1\ngreedy_prompt = Once, 5 cats"),
                m.dir.file("char.ini") + ": [eval] greedy_prompt: character \"5\" (U+0035)");
}
