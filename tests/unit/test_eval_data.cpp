// Evaluation data: paragraph splitting and stripping, encoding with BOS and truncation,
// stacking into a TokenBatch, bad files; and the stories260K eval set against expected.json
// (5,055 predicted tokens over the first 50 paragraphs).
#define BOOST_TEST_MODULE eval_data
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"
#include "temp_dir.hpp"

namespace {

using fracsweep::InputError;
using fracsweep::Tokenizer;
using Ids = std::vector<int32_t>;

// ids 0..2 specials, 3..258 byte pieces, 259 " ": every character falls back to its byte + 3
// and nothing merges, so encodings are hand-checkable.
Tokenizer bytes_only_tokenizer() {
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};  // (vocab) token texts
  for (int byte = 0; byte < 256; ++byte) {
    char text[8];
    std::snprintf(text, sizeof text, "<0x%02X>", byte);
    pieces.emplace_back(text);
  }
  pieces.emplace_back(" ");
  std::vector<float> scores(pieces.size(), 0.0f);  // (vocab) merge scores
  return Tokenizer(std::move(pieces), std::move(scores));
}

using fracsweep::test::TempDir;

// read_paragraphs(path, n) throws InputError whose message contains every one of `parts`.
void check_read_fails(const std::string& path, int64_t n,
                      std::initializer_list<std::string> parts) {
  try {
    fracsweep::read_paragraphs(path, n);
    BOOST_ERROR("no InputError reading " << n << " paragraphs of " << path);
  } catch (const InputError& error) {
    const std::string message = error.what();
    for (const std::string& part : parts) {
      BOOST_TEST(message.find(part) != std::string::npos,
                 "message \"" << message << "\" lacks \"" << part << "\"");
    }
  }
}

// The integer after `"key":` inside the object that follows `"section":` in expected.json.
int64_t json_integer(const std::string& json, const std::string& section, const std::string& key) {
  const size_t section_at = json.find("\"" + section + "\":");
  BOOST_TEST_REQUIRE(section_at != std::string::npos, "expected.json lacks " << section);
  const std::string quoted_key = "\"" + key + "\":";
  const size_t key_at = json.find(quoted_key, section_at);
  BOOST_TEST_REQUIRE(key_at != std::string::npos, "expected.json lacks " << section << "." << key);
  return std::stoll(json.substr(key_at + quoted_key.size(), 32));
}

// A file with blank lines that are empty, whitespace-only or CRLF, padding around paragraphs,
// a two-line paragraph and no final newline.
const std::string messy_text =
    "\n\n  First paragraph,\nsecond line.  \n\n \t \nSecond\t\n\n\n\nThird one\r\n\r\n   \nFourth";

}  // namespace

BOOST_AUTO_TEST_SUITE(paragraphs)

BOOST_AUTO_TEST_CASE(split_on_blank_lines_and_strip) {
  const TempDir dir;
  const std::string path = dir.write("messy.txt", messy_text);
  const std::vector<std::string> expected = {"First paragraph,\nsecond line.", "Second",
                                             "Third one", "Fourth"};
  BOOST_TEST(fracsweep::read_paragraphs(path, 4) == expected, boost::test_tools::per_element());
  const std::vector<std::string> first_two = {"First paragraph,\nsecond line.", "Second"};
  BOOST_TEST(fracsweep::read_paragraphs(path, 2) == first_two, boost::test_tools::per_element());
  BOOST_TEST(fracsweep::read_paragraphs(path, 0).empty());
}

BOOST_AUTO_TEST_CASE(bad_files_name_file_and_counts) {
  const TempDir dir;
  const std::string path = dir.write("messy.txt", messy_text);
  check_read_fails(path, 5, {path, "has 4 paragraphs", "expected at least 5"});
  check_read_fails(dir.write("blank.txt", " \n\n\t\n"), 1, {"blank.txt", "has 0 paragraphs"});
  check_read_fails(dir.file("absent.txt"), 1, {"absent.txt", "cannot open"});
  check_read_fails(path, -1, {path, "asked for -1 paragraphs"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(encoding)

BOOST_AUTO_TEST_CASE(bos_then_tokens_truncated_to_seq_len) {
  const Tokenizer tokenizer = bytes_only_tokenizer();
  // "ab" -> BOS, " ", 'a'+3 = 100, 'b'+3 = 101; "abcd" is cut to its first 4 tokens.
  const auto sequences = fracsweep::encode_paragraphs(tokenizer, {"ab", "abcd"}, 4, "eval.txt");
  BOOST_TEST_REQUIRE(sequences.size() == 2u);
  BOOST_TEST(sequences[0] == (Ids{1, 259, 100, 101}), boost::test_tools::per_element());
  BOOST_TEST(sequences[1] == (Ids{1, 259, 100, 101}), boost::test_tools::per_element());
  const auto long_enough = fracsweep::encode_paragraphs(tokenizer, {"abcd"}, 512, "eval.txt");
  BOOST_TEST(long_enough[0] == (Ids{1, 259, 100, 101, 102, 103}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(seq_len_must_leave_a_prediction) {
  const Tokenizer tokenizer = bytes_only_tokenizer();
  BOOST_CHECK_THROW(fracsweep::encode_paragraphs(tokenizer, {"ab"}, 1, "eval.txt"), InputError);
  BOOST_TEST(fracsweep::encode_paragraphs(tokenizer, {"ab"}, 2, "eval.txt")[0] == (Ids{1, 259}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_character_without_a_piece_names_file_paragraph_and_character) {
  // A character-level vocabulary, no byte pieces: <unk>, BOS, EOS, " ", "a", "b".
  const Tokenizer tokenizer({"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b"},
                            std::vector<float>(6, 0.0f));
  BOOST_TEST(fracsweep::encode_paragraphs(tokenizer, {"ab", "b a"}, 8, "eval.txt")[1] ==
                 (Ids{1, 3, 5, 3, 4}),
             boost::test_tools::per_element());
  try {
    fracsweep::encode_paragraphs(tokenizer,
                                 {"ab",
                                  "a\xC3\xA9"
                                  "b"},
                                 8, "/data/eval.txt");
    BOOST_ERROR("no InputError for a character outside the vocabulary");
  } catch (const InputError& error) {
    BOOST_TEST(
        std::string(error.what()) ==
        "/data/eval.txt: paragraph 2: character \"\xC3\xA9\" (U+00E9) is not in the "
        "tokenizer's vocabulary, which has no byte-fallback piece \"<0xC3>\" either; expected "
        "only characters the vocabulary can encode (replace or remove it)");
  }
}

BOOST_AUTO_TEST_CASE(token_batch_stacks_sequences) {
  fracsweep::TokenBatch batch;
  batch.append({1, 7, 9});
  batch.append({1, 4});
  BOOST_TEST(batch.tokens == (Ids{1, 7, 9, 1, 4}), boost::test_tools::per_element());
  BOOST_TEST(batch.positions == (Ids{0, 1, 2, 0, 1}), boost::test_tools::per_element());
  BOOST_TEST(batch.seq_start == (std::vector<int64_t>{0, 3, 5}), boost::test_tools::per_element());
  BOOST_TEST(batch.n_tokens() == 5);
  BOOST_TEST(batch.n_seqs() == 2);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stories260K, *boost::unit_test::precondition(fracsweep::test::needs_shared()))

BOOST_AUTO_TEST_CASE(first_50_paragraphs_predict_5055_tokens) {
  using fracsweep::test::shared_file;
  std::ifstream json_file(shared_file("fixtures/stories260K/expected.json"));
  const std::string json((std::istreambuf_iterator<char>(json_file)),
                         std::istreambuf_iterator<char>());
  const int64_t n_paragraphs = json_integer(json, "eval_set", "n_paragraphs");
  const int64_t expected_predicted = json_integer(json, "baseline", "tokens");
  const int64_t seq_len = json_integer(json, "header", "seq_len");
  BOOST_TEST_REQUIRE(n_paragraphs == 50);
  BOOST_TEST_REQUIRE(seq_len == 512);

  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(shared_file("models/stories260K/tok512.bin"), 512);
  const std::string eval_text = shared_file("data/tinystories/tinystories_val.txt");
  const std::vector<std::string> paragraphs = fracsweep::read_paragraphs(eval_text, n_paragraphs);
  BOOST_TEST_REQUIRE(paragraphs.size() == 50u);
  const auto sequences = fracsweep::encode_paragraphs(tokenizer, paragraphs, seq_len, eval_text);

  fracsweep::TokenBatch batch;
  int64_t predicted = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    BOOST_TEST_INFO("paragraph " << i);
    BOOST_TEST(sequences[i].front() == tokenizer.bos_id());
    BOOST_TEST(sequences[i].size() <= static_cast<size_t>(seq_len));
    BOOST_TEST(paragraphs[i] ==
               tokenizer.decode(Ids(sequences[i].begin() + 1, sequences[i].end())));
    predicted += static_cast<int64_t>(sequences[i].size()) - 1;
    batch.append(sequences[i]);
  }
  BOOST_TEST(predicted == expected_predicted);
  BOOST_TEST(batch.n_seqs() == 50);
  BOOST_TEST(batch.n_tokens() == expected_predicted + 50);
}

BOOST_AUTO_TEST_SUITE_END()
