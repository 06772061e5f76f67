// Tokenizer: hand-computed merges on a tiny in-memory vocabulary, a plain reference encoder on
// random text, every malformed tokenizer.bin case, and the real stories260K tokenizer against
// expected.json (first eval paragraph, greedy continuation text).
#define BOOST_TEST_MODULE tokenizer
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"
#include "temp_dir.hpp"
#include "tokenizer_files.hpp"

namespace {

using fracsweep::InputError;
using fracsweep::Tokenizer;
using fracsweep::test::tokenizer_bin;
using fracsweep::test::Vocabulary;
using Ids = std::vector<int32_t>;

// ---------------------------------------------------------------- the tiny vocabulary
// ids 0..2 specials, 3..258 byte pieces <0x00>..<0xFF>, then these pieces and scores:
struct TinyPiece {
  int32_t id;
  const char* text;
  float score;
};
constexpr TinyPiece tiny_pieces[] = {
    {259, " ", 0.0f},
    {260, "a", 0.0f},
    {261, "b", 0.0f},
    {262, "c", 0.0f},
    {263, "ab", -1.0f},
    {264, "bc", -2.0f},
    {265, " a", -3.0f},
    {266, " ab", -4.0f},
    {267, "abc", -5.0f},
    {268, "x", 0.0f},
    {269, "y", 0.0f},
    {270, "z", 0.0f},
    {271, "xy", -6.0f},
    {272, "yz", -6.0f},
    {273, "\xC3\xA9", 0.0f} /* é */,
    {274, "\xF0\x9F\x8E\x89", 0.0f} /* 🎉 */,
};
constexpr int32_t tiny_vocab_size = 275;

std::string byte_piece_text(int byte) {
  char text[8];
  std::snprintf(text, sizeof text, "<0x%02X>", byte);
  return text;
}

Vocabulary tiny_vocabulary() {
  Vocabulary vocab;
  vocab.pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  vocab.scores = {0.0f, 0.0f, 0.0f};
  for (int byte = 0; byte < 256; ++byte) {
    vocab.pieces.push_back(byte_piece_text(byte));
    vocab.scores.push_back(0.0f);
  }
  for (const TinyPiece& piece : tiny_pieces) {
    BOOST_TEST_REQUIRE(static_cast<int32_t>(vocab.pieces.size()) == piece.id);
    vocab.pieces.emplace_back(piece.text);
    vocab.scores.push_back(piece.score);
  }
  BOOST_TEST_REQUIRE(static_cast<int32_t>(vocab.pieces.size()) == tiny_vocab_size);
  return vocab;
}

Tokenizer tiny_tokenizer() {
  Vocabulary vocab = tiny_vocabulary();
  return Tokenizer(std::move(vocab.pieces), std::move(vocab.scores));
}

// ---------------------------------------------------------------- a plain reference encoder
// llama2.c's encode written the slow, obvious way: map lookup, full rescan after every merge.
Ids reference_encode(const Vocabulary& vocab, const std::string& text) {
  std::map<std::string, int32_t> id_of;
  for (size_t id = vocab.pieces.size(); id-- > 0;)
    id_of[vocab.pieces[id]] = static_cast<int32_t>(id);
  Ids ids;
  if (!text.empty()) ids.push_back(id_of.at(" "));
  std::string codepoint;
  for (size_t at = 0; at < text.size(); ++at) {
    const auto byte = static_cast<unsigned char>(text[at]);
    if ((byte & 0xC0) != 0x80) codepoint.clear();
    codepoint += text[at];
    const bool next_continues =
        at + 1 < text.size() && (static_cast<unsigned char>(text[at + 1]) & 0xC0) == 0x80;
    if (next_continues && codepoint.size() < 4) continue;
    if (id_of.count(codepoint)) {
      ids.push_back(id_of.at(codepoint));
    } else {
      for (const char c : codepoint) ids.push_back(static_cast<unsigned char>(c) + 3);
    }
    codepoint.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int best_pair = -1;
    int32_t best_id = -1;
    for (size_t pair = 0; pair + 1 < ids.size(); ++pair) {
      const auto found = id_of.find(vocab.pieces[ids[pair]] + vocab.pieces[ids[pair + 1]]);
      if (found != id_of.end() && vocab.scores[found->second] > best_score) {
        best_score = vocab.scores[found->second];
        best_pair = static_cast<int>(pair);
        best_id = found->second;
      }
    }
    if (best_pair < 0) break;
    ids[best_pair] = best_id;
    ids.erase(ids.begin() + best_pair + 1);
  }
  return ids;
}

// ---------------------------------------------------------------- tokenizer.bin files
// Byte offset of token `id`'s record (score, length, text) in a tokenizer.bin image.
size_t token_record_offset(const std::string& bytes, int32_t id) {
  size_t offset = 4;
  for (int32_t skipped = 0; skipped < id; ++skipped) {
    int32_t length;
    std::memcpy(&length, bytes.data() + offset + 4, 4);
    offset += 8 + static_cast<size_t>(length);
  }
  return offset;
}

void overwrite_i32(std::string& bytes, size_t offset, int32_t value) {
  std::memcpy(bytes.data() + offset, &value, 4);
}

Vocabulary read_tokenizer_bin(const std::string& bytes, int32_t vocab_size) {
  Vocabulary vocab;
  size_t offset = 4;
  for (int32_t id = 0; id < vocab_size; ++id) {
    float score;
    int32_t length;
    std::memcpy(&score, bytes.data() + offset, 4);
    std::memcpy(&length, bytes.data() + offset + 4, 4);
    vocab.scores.push_back(score);
    vocab.pieces.push_back(bytes.substr(offset + 8, static_cast<size_t>(length)));
    offset += 8 + static_cast<size_t>(length);
  }
  return vocab;
}

std::string read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  BOOST_TEST_REQUIRE(file.is_open(), "cannot open " << path);
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

using fracsweep::test::TempDir;

// Loading `path` throws InputError whose message contains every one of `parts`.
void check_load_fails(const std::string& path, int64_t vocab_size,
                      std::initializer_list<std::string> parts) {
  try {
    Tokenizer::load_llama2c(path, vocab_size);
    BOOST_ERROR("no InputError loading " << path);
  } catch (const InputError& error) {
    const std::string message = error.what();
    for (const std::string& part : parts) {
      BOOST_TEST(message.find(part) != std::string::npos,
                 "message \"" << message << "\" lacks \"" << part << "\"");
    }
  }
}

// ---------------------------------------------------------------- expected.json extraction
// Position just after `"key":` inside the object that follows `"section":`.
size_t json_value_position(const std::string& json, const std::string& section,
                           const std::string& key) {
  const size_t section_at = json.find("\"" + section + "\":");
  BOOST_TEST_REQUIRE(section_at != std::string::npos, "expected.json lacks " << section);
  const std::string quoted_key = "\"" + key + "\":";
  const size_t key_at = json.find(quoted_key, section_at);
  BOOST_TEST_REQUIRE(key_at != std::string::npos, "expected.json lacks " << section << "." << key);
  return key_at + quoted_key.size();
}

Ids json_int_array(const std::string& json, const std::string& section, const std::string& key) {
  const size_t open = json.find('[', json_value_position(json, section, key));
  const size_t close = json.find(']', open);
  BOOST_TEST_REQUIRE((open != std::string::npos && close != std::string::npos));
  std::string numbers = json.substr(open + 1, close - open - 1);
  std::replace(numbers.begin(), numbers.end(), ',', ' ');
  std::istringstream stream(numbers);
  Ids values;
  for (int32_t value; stream >> value;) values.push_back(value);
  BOOST_TEST_REQUIRE(stream.eof(), section << "." << key << " is not a list of integers");
  return values;
}

// A JSON string value with its escapes decoded (\u escapes are not needed by the fixture and
// fail the test rather than being decoded wrongly).
std::string json_string(const std::string& json, const std::string& section,
                        const std::string& key) {
  size_t at = json.find('"', json_value_position(json, section, key));
  BOOST_TEST_REQUIRE(at != std::string::npos);
  std::string text;
  for (++at; at < json.size() && json[at] != '"'; ++at) {
    if (json[at] != '\\') {
      text += json[at];
      continue;
    }
    const char escaped = json[++at];
    switch (escaped) {
      case 'n':
        text += '\n';
        break;
      case 't':
        text += '\t';
        break;
      case 'r':
        text += '\r';
        break;
      case 'b':
        text += '\b';
        break;
      case 'f':
        text += '\f';
        break;
      case '"':
      case '\\':
      case '/':
        text += escaped;
        break;
      default:
        BOOST_FAIL("unsupported JSON escape \\" << escaped << " in " << section << "." << key);
    }
  }
  BOOST_TEST_REQUIRE(at < json.size(), "unterminated string " << section << "." << key);
  return text;
}

const std::string tokenizer_relative = "models/stories260K/tok512.bin";
const std::string eval_text_relative = "data/tinystories/tinystories_val.txt";
const std::string expected_relative = "fixtures/stories260K/expected.json";
constexpr int64_t stories_vocab_size = 512;

}  // namespace

// ================================================================ tiny vocabulary, hand-computed

BOOST_AUTO_TEST_SUITE(tiny_vocabulary_encode)

BOOST_AUTO_TEST_CASE(merges_best_score_first_not_leftmost) {
  // " abc" -> [" ","a","b","c"]; candidates " a"(-3) "ab"(-1) "bc"(-2): merge "ab";
  // then " ab"(-4) "abc"(-5): merge " ab"; " abc" is not a piece.
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.encode("abc", false, false) == (Ids{266, 262}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(tie_goes_to_the_first_pair) {
  // [" ","x","y","z"]: "xy" and "yz" both score -6; the left one merges, "xyz" is no piece.
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.encode("xyz", false, false) == (Ids{259, 271, 270}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bos_eos_and_empty_text) {
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.encode("a", true, true) == (Ids{1, 265, 2}),
             boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("a", true, false) == (Ids{1, 265}), boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("a", false, true) == (Ids{265, 2}), boost::test_tools::per_element());
  // No dummy prefix for empty text.
  BOOST_TEST(tokenizer.encode("", true, true) == (Ids{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("", false, false).empty());
  BOOST_TEST(tokenizer.bos_id() == 1);
  BOOST_TEST(tokenizer.eos_id() == 2);
  BOOST_TEST(tokenizer.vocab_size() == tiny_vocab_size);
}

BOOST_AUTO_TEST_CASE(codepoints_in_the_vocabulary) {
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.encode("\xC3\xA9", false, false) == (Ids{259, 273}),
             boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("\xF0\x9F\x8E\x89", false, false) == (Ids{259, 274}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(byte_fallback_ids_are_byte_plus_3) {
  const Tokenizer tokenizer = tiny_tokenizer();
  // ñ = C3 B1 is not a piece: 0xC3+3 = 198, 0xB1+3 = 180.
  BOOST_TEST(tokenizer.encode("\xC3\xB1", false, false) == (Ids{259, 198, 180}),
             boost::test_tools::per_element());
  // 😀 = F0 9F 98 80: 243, 162, 155, 131.
  BOOST_TEST(tokenizer.encode("\xF0\x9F\x98\x80", false, false) == (Ids{259, 243, 162, 155, 131}),
             boost::test_tools::per_element());
  // A control byte after "a": " a" merges, 0x01 -> 4.
  BOOST_TEST(tokenizer.encode("a\x01", false, false) == (Ids{265, 4}),
             boost::test_tools::per_element());
  // A stray continuation byte stands alone: 0x80 -> 131.
  BOOST_TEST(tokenizer.encode("\x80"
                              "a",
                              false, false) == (Ids{259, 131, 260}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(continuation_bytes_group_like_llama2c) {
  const Tokenizer tokenizer = tiny_tokenizer();
  // "é" followed by another continuation byte forms one 3-byte group C3 A9 A9, which is no
  // piece: all three bytes fall back (198, 172, 172) instead of "é" + byte.
  BOOST_TEST(tokenizer.encode("\xC3\xA9\xA9", false, false) == (Ids{259, 198, 172, 172}),
             boost::test_tools::per_element());
  // Groups stop at 4 bytes: "🎉" is looked up, the 5th byte 0x80 stands alone.
  BOOST_TEST(tokenizer.encode("\xF0\x9F\x8E\x89\x80", false, false) == (Ids{259, 274, 131}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(matches_reference_encoder_on_random_text) {
  const Vocabulary vocab = tiny_vocabulary();
  const Tokenizer tokenizer = tiny_tokenizer();
  const std::vector<std::string> alphabet = {
      "a", "b", "c", "x", "y", "z", " ", "\xC3\xA9", "\xA9", "\xF0\x9F\x8E\x89", "\x01", "q"};
  std::mt19937 generator(20240611);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  for (int sample = 0; sample < 2000; ++sample) {
    std::string text;
    for (int n = length(generator); n > 0; --n) text += alphabet[pick(generator)];
    BOOST_TEST_INFO("text \"" << text << "\"");
    BOOST_TEST(tokenizer.encode(text, false, false) == reference_encode(vocab, text),
               boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(tiny_vocabulary_decode)

BOOST_AUTO_TEST_CASE(decode_piece_after_bos_and_bytes) {
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.decode_piece(1, 265) == "a");  // " a" after BOS loses its space
  BOOST_TEST(tokenizer.decode_piece(260, 265) == " a");
  BOOST_TEST(tokenizer.decode_piece(1, 259) == "");
  BOOST_TEST(tokenizer.decode_piece(260, 13) == "\n");  // <0x0A>
  BOOST_TEST(tokenizer.decode_piece(1, 35) == " ");     // <0x20>: no strip, the piece is "<0x20>"
  BOOST_TEST(tokenizer.decode_piece(260, 258) == "\xFF");
  BOOST_TEST(tokenizer.decode_piece(260, 1) == "\n<s>\n");
}

BOOST_AUTO_TEST_CASE(decode_sequence_starts_after_bos) {
  const Tokenizer tokenizer = tiny_tokenizer();
  BOOST_TEST(tokenizer.decode({266, 262}) == "abc");
  BOOST_TEST(tokenizer.decode({259, 198, 180, 265}) == "\xC3\xB1 a");
  BOOST_TEST(tokenizer.decode({}) == "");
  // A continuation after a non-BOS token keeps its leading space; after BOS it loses it.
  BOOST_TEST(tokenizer.decode_after(260, {265, 262}) == " ac");
  BOOST_TEST(tokenizer.decode_after(1, {265, 262}) == tokenizer.decode({265, 262}));
}

BOOST_AUTO_TEST_CASE(round_trip) {
  const Tokenizer tokenizer = tiny_tokenizer();
  for (const std::string text : {"abc", " abc ", "xyz xy\n", "\xC3\xA9t\xC3\xA9 \xF0\x9F\x8E\x89",
                                 "\xC3\xA9\xA9\x80", "  leading", "q\tr\x01"}) {
    BOOST_TEST(tokenizer.decode(tokenizer.encode(text, false, false)) == text);
    const Ids with_bos = tokenizer.encode(text, true, false);
    BOOST_TEST(tokenizer.decode(Ids(with_bos.begin() + 1, with_bos.end())) == text);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ================================================================ character-level vocabulary
// tokenizer_files.hpp: <unk>, BOS, EOS, " ", letters, punctuation and six merges; no <0xXX>
// byte pieces, so a character outside the vocabulary cannot fall back to its bytes.

namespace {

using fracsweep::test::char_letter;

Tokenizer char_tokenizer() {
  Vocabulary vocab = fracsweep::test::char_vocabulary();
  return Tokenizer(std::move(vocab.pieces), std::move(vocab.scores));
}

// encode(text) throws InputError whose message contains every one of `parts`.
void check_encode_fails(const Tokenizer& tokenizer, const std::string& text,
                        const std::string& where, std::initializer_list<std::string> parts) {
  try {
    tokenizer.encode(text, true, false, where);
    BOOST_ERROR("no InputError encoding \"" << text << "\"");
  } catch (const InputError& error) {
    const std::string message = error.what();
    for (const std::string& part : parts) {
      BOOST_TEST(message.find(part) != std::string::npos,
                 "message \"" << message << "\" lacks \"" << part << "\"");
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(character_vocabulary)

BOOST_AUTO_TEST_CASE(merges_and_dummy_prefix_by_hand) {
  using namespace fracsweep::test;
  const Tokenizer tokenizer = char_tokenizer();
  BOOST_TEST(tokenizer.vocab_size() == char_vocab_size);
  // [" ","t","h","e"," ","c","a","t"]: "th" (-1) merges first although " t" (-3) is further
  // left, then "the" (-4), then " the" (-5); " c" and "ca" are no pieces.
  BOOST_TEST(tokenizer.encode("the cat", true, false) ==
                 (Ids{1, char_space_the, char_space, char_letter('c'), char_letter('a'),
                      char_letter('t')}),
             boost::test_tools::per_element());
  // "th" x3 (leftmost first), "he" (-2), "the" (-4) inside "heather" before " the" (-5), then
  // "in" (-6) twice; "thin" and " th" are no pieces.
  BOOST_TEST(tokenizer.encode("in the thin heather", true, false) ==
                 (Ids{1, char_space, char_in, char_space_the, char_space, char_th, char_in,
                      char_space, char_he, char_letter('a'), char_the, char_letter('r')}),
             boost::test_tools::per_element());
  // " t" merges where "th" cannot.
  BOOST_TEST(tokenizer.encode("to", false, false) == (Ids{char_space_t, char_letter('o')}),
             boost::test_tools::per_element());
  BOOST_TEST(
      tokenizer.encode("Tin!", false, true) == (Ids{char_space, char_letter('T'), char_in, 58, 2}),
      boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("a\nb", false, false) ==
                 (Ids{char_space, char_letter('a'), 61, char_letter('b')}),
             boost::test_tools::per_element());
  BOOST_TEST(tokenizer.encode("", true, true) == (Ids{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(tokenizer.decode(tokenizer.encode("the cat", false, false)) == "the cat");
  BOOST_TEST(tokenizer.decode_after(char_letter('a'), {char_space_the, char_he}) == " thehe");
}

BOOST_AUTO_TEST_CASE(matches_reference_encoder_on_random_text) {
  const Vocabulary vocab = fracsweep::test::char_vocabulary();
  const Tokenizer tokenizer = char_tokenizer();
  const std::vector<std::string> alphabet = {"t", "h", "e", " ", "i", "n", "a", "T", "\n", "."};
  std::mt19937 generator(20260611);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  for (int sample = 0; sample < 1000; ++sample) {
    std::string text;
    for (int n = length(generator); n > 0; --n) text += alphabet[pick(generator)];
    BOOST_TEST_INFO("text \"" << text << "\"");
    BOOST_TEST(tokenizer.encode(text, false, false) == reference_encode(vocab, text),
               boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(a_character_outside_the_vocabulary_is_an_input_error) {
  const Tokenizer tokenizer = char_tokenizer();
  check_encode_fails(tokenizer, "caf\xC3\xA9", "eval.txt: paragraph 3",
                     {"eval.txt: paragraph 3: character \"\xC3\xA9\" (U+00E9) is not in the "
                      "tokenizer's vocabulary",
                      "no byte-fallback piece \"<0xC3>\""});
  check_encode_fails(tokenizer, "room 5", "text", {"text: character \"5\" (U+0035)", "<0x35>"});
  check_encode_fails(tokenizer, "a\tb", "text", {"text: character U+0009 is not", "<0x09>"});
  check_encode_fails(tokenizer,
                     "\xC3"
                     "a",
                     "text", {"character bytes 0xC3 (not well-formed UTF-8)", "<0xC3>"});
  check_encode_fails(tokenizer, "\xE2\x80\xA9\xA9", "text",
                     {"character bytes 0xE2 0x80 0xA9 0xA9 (not well-formed UTF-8)"});
  BOOST_CHECK_NO_THROW(tokenizer.encode("", false, false, "text"));
}

BOOST_AUTO_TEST_CASE(byte_fallback_only_where_the_byte_pieces_exist) {
  using namespace fracsweep::test;
  Vocabulary vocab = char_vocabulary();
  vocab.pieces.insert(vocab.pieces.end(), {"<0x09>", "<0xC3>"});  // ids 68 and 69
  vocab.scores.insert(vocab.scores.end(), {0.0f, 0.0f});
  const Tokenizer tokenizer(vocab.pieces, vocab.scores);
  // The tab falls back to its piece wherever it sits (not to id 0x09 + 3 = 12, the letter 'i').
  BOOST_TEST(tokenizer.encode("a\tb", false, false) ==
                 (Ids{char_space, char_letter('a'), 68, char_letter('b')}),
             boost::test_tools::per_element());
  BOOST_TEST(tokenizer.decode({char_space, char_letter('a'), 68, char_letter('b')}) == "a\tb");
  // é = C3 A9: <0xC3> exists, <0xA9> does not.
  check_encode_fails(tokenizer, "\xC3\xA9", "text",
                     {"character \"\xC3\xA9\" (U+00E9)", "no byte-fallback piece \"<0xA9>\""});
}

BOOST_AUTO_TEST_CASE(loads_from_a_tokenizer_file) {
  using namespace fracsweep::test;
  const TempDir dir;
  const std::string path = dir.write("char.bin", tokenizer_bin(char_vocabulary()));
  const Tokenizer loaded = Tokenizer::load_llama2c(path, char_vocab_size);
  BOOST_TEST(
      loaded.encode("the cat", true, false) == char_tokenizer().encode("the cat", true, false),
      boost::test_tools::per_element());
  BOOST_TEST(loaded.piece(char_in) == "in");
  // The smallest vocabulary: <unk>, BOS, EOS, and the " " piece among them.
  const Vocabulary three{{" ", "\n<s>\n", "\n</s>\n"}, {0.0f, 0.0f, 0.0f}};
  const Tokenizer tiny = Tokenizer::load_llama2c(dir.write("three.bin", tokenizer_bin(three)), 3);
  BOOST_TEST(tiny.encode("  ", true, true) == (Ids{1, 0, 0, 0, 2}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

// ================================================================ vocabulary checks

BOOST_AUTO_TEST_CASE(constructor_rejects_inconsistent_vocabularies) {
  {
    Vocabulary vocab = tiny_vocabulary();
    vocab.scores.pop_back();
    BOOST_CHECK_THROW(Tokenizer(vocab.pieces, vocab.scores), InputError);
  }
  {
    Vocabulary vocab = tiny_vocabulary();
    BOOST_CHECK_THROW(Tokenizer(vocab.pieces, vocab.scores, 1, tiny_vocab_size), InputError);
    BOOST_CHECK_THROW(Tokenizer(vocab.pieces, vocab.scores, -1, 2), InputError);
  }
  // Fewer than 3 tokens (<unk>, BOS, EOS), even with valid special ids.
  BOOST_CHECK_THROW(Tokenizer({" ", "a"}, {0.0f, 0.0f}, 0, 1), InputError);
  {
    Vocabulary vocab = tiny_vocabulary();
    vocab.scores[263] = std::numeric_limits<float>::quiet_NaN();
    BOOST_CHECK_THROW(Tokenizer(vocab.pieces, vocab.scores), InputError);
  }
}

// ================================================================ tokenizer.bin loading

BOOST_AUTO_TEST_SUITE(tokenizer_file)

BOOST_AUTO_TEST_CASE(loads_what_was_written) {
  const TempDir dir;
  const Vocabulary vocab = tiny_vocabulary();
  const std::string path = dir.write("tiny.bin", tokenizer_bin(vocab));
  const Tokenizer loaded = Tokenizer::load_llama2c(path, tiny_vocab_size);
  BOOST_TEST(loaded.vocab_size() == tiny_vocab_size);
  for (int32_t id = 259; id < tiny_vocab_size; ++id) {
    BOOST_TEST(loaded.decode_piece(0, id) == vocab.pieces[id]);
  }
  BOOST_TEST(loaded.encode("abc", true, false) == (Ids{1, 266, 262}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_malformed_file_names_file_token_and_expectation) {
  const TempDir dir;
  const std::string good = tokenizer_bin(tiny_vocabulary());
  const size_t record_260 = token_record_offset(good, 260);
  const size_t record_261 = token_record_offset(good, 261);

  check_load_fails(dir.file("absent.bin"), tiny_vocab_size, {"absent.bin", "cannot open"});
  check_load_fails(dir.write("short_header.bin", good.substr(0, 2)), tiny_vocab_size,
                   {"short_header.bin", "truncated", "max_token_length"});
  {
    std::string bytes = good;
    overwrite_i32(bytes, 0, 0);
    check_load_fails(dir.write("zero_max.bin", bytes), tiny_vocab_size,
                     {"zero_max.bin", "max_token_length is 0", "expected a positive"});
  }
  {
    std::string bytes = good;
    overwrite_i32(bytes, record_260 + 4, -1);
    check_load_fails(dir.write("negative_length.bin", bytes), tiny_vocab_size,
                     {"negative_length.bin", "token 260 has length -1", "expected 0..6"});
  }
  {
    std::string bytes = good;
    overwrite_i32(bytes, record_260 + 4, std::numeric_limits<int32_t>::max());
    check_load_fails(dir.write("huge_length.bin", bytes), tiny_vocab_size,
                     {"huge_length.bin", "token 260 has length 2147483647", "expected 0..6"});
  }
  {
    std::string bytes = good;
    overwrite_i32(bytes, record_260 + 4, 7);  // one over max_token_length 6
    check_load_fails(dir.write("over_max.bin", bytes), tiny_vocab_size,
                     {"over_max.bin", "token 260 has length 7", "max_token_length"});
  }
  check_load_fails(dir.write("cut_in_score.bin", good.substr(0, record_261 + 3)), tiny_vocab_size,
                   {"cut_in_score.bin", "truncated", "token 261 score", "needs 4 bytes"});
  check_load_fails(dir.write("cut_in_text.bin", good.substr(0, record_261 + 8)), tiny_vocab_size,
                   {"cut_in_text.bin", "truncated", "token 261 text", "needs 1 bytes"});
  check_load_fails(dir.write("few_tokens.bin", good), tiny_vocab_size + 1,
                   {"few_tokens.bin", "ends after 275 tokens", "expected vocab_size 276"});
  check_load_fails(
      dir.write("trailing.bin", good + "xyz"), tiny_vocab_size,
      {"trailing.bin", "3 trailing bytes after token 274", "expected the file to end"});
  {
    std::string bytes = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + token_record_offset(bytes, 262), &nan, 4);
    check_load_fails(dir.write("nan_score.bin", bytes), tiny_vocab_size,
                     {"nan_score.bin", "token 262", "non-finite score"});
  }
  {
    std::string bytes = good;
    bytes[token_record_offset(bytes, 259) + 8] = '_';  // the " " piece becomes "_"
    check_load_fails(dir.write("no_space.bin", bytes), tiny_vocab_size,
                     {"no_space.bin", "no \" \" piece"});
  }
  check_load_fails(dir.write("small_vocab.bin", good), 2,
                   {"small_vocab.bin", "vocab_size 2", "expected 3 (<unk>, BOS, EOS)"});
}

BOOST_AUTO_TEST_SUITE_END()

// ================================================================ stories260K, expected.json

BOOST_AUTO_TEST_SUITE(stories260K, *boost::unit_test::precondition(fracsweep::test::needs_shared()))

BOOST_AUTO_TEST_CASE(first_eval_paragraph_ids) {
  using fracsweep::test::shared_file;
  const std::string json = read_bytes(shared_file(expected_relative));
  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(shared_file(tokenizer_relative), stories_vocab_size);
  const std::vector<std::string> paragraphs =
      fracsweep::read_paragraphs(shared_file(eval_text_relative), 1);
  const Ids expected = json_int_array(json, "eval_set", "first_paragraph_ids");
  BOOST_TEST(expected.size() > 2u);
  BOOST_TEST(tokenizer.encode(paragraphs[0], true, false) == expected,
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(greedy_continuation_decodes_to_expected_text) {
  using fracsweep::test::shared_file;
  const std::string json = read_bytes(shared_file(expected_relative));
  const Tokenizer tokenizer =
      Tokenizer::load_llama2c(shared_file(tokenizer_relative), stories_vocab_size);
  const Ids ids = json_int_array(json, "greedy_from_bos", "ids");
  const std::string text = json_string(json, "greedy_from_bos", "text");
  BOOST_TEST(ids.size() == 256u);
  BOOST_TEST(tokenizer.decode(ids) == text);
}

BOOST_AUTO_TEST_CASE(matches_reference_encoder_and_round_trips) {
  using fracsweep::test::shared_file;
  const std::string path = shared_file(tokenizer_relative);
  const Vocabulary vocab = read_tokenizer_bin(read_bytes(path), stories_vocab_size);
  const Tokenizer tokenizer = Tokenizer::load_llama2c(path, stories_vocab_size);
  std::vector<std::string> texts = fracsweep::read_paragraphs(shared_file(eval_text_relative), 200);
  for (const char* extra :
       {"Hello, world!", "  two leading spaces", "tabs\tand\nnew lines\n\n",
        "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89",
        "\xE2\x84\xA2 trademark", "<0x41> looks like a byte piece", "\x01\x7F"}) {
    texts.emplace_back(extra);
  }
  for (const std::string& text : texts) {
    BOOST_TEST_INFO("text \"" << text << "\"");
    const Ids ids = tokenizer.encode(text, false, false);
    BOOST_TEST(ids == reference_encode(vocab, text), boost::test_tools::per_element());
    BOOST_TEST(tokenizer.decode(ids) == text);
  }
}

BOOST_AUTO_TEST_CASE(corrupted_copies_of_the_real_file) {
  using fracsweep::test::shared_file;
  const TempDir dir;
  const std::string good = read_bytes(shared_file(tokenizer_relative));
  const size_t record_300 = token_record_offset(good, 300);
  check_load_fails(dir.write("tok512_half.bin", good.substr(0, record_300 + 9)), stories_vocab_size,
                   {"tok512_half.bin", "truncated", "token 300 text"});
  {
    std::string bytes = good;
    overwrite_i32(bytes, record_300 + 4, -7);
    check_load_fails(dir.write("tok512_negative.bin", bytes), stories_vocab_size,
                     {"tok512_negative.bin", "token 300 has length -7", "expected 0..7"});
  }
  check_load_fails(dir.write("tok512_vocab511.bin", good), 511,
                   {"tok512_vocab511.bin", "trailing bytes after token 510"});
  check_load_fails(dir.write("tok512_vocab513.bin", good), 513,
                   {"tok512_vocab513.bin", "ends after 512 tokens", "expected vocab_size 513"});
}

BOOST_AUTO_TEST_SUITE_END()
