#pragma once
// llama2.c tokenizer.bin images written from the format description (int32 max_token_length,
// then per token float32 score, int32 length, bytes), and a character-level vocabulary with no
// "<0xXX>" byte pieces. tests/integration/test_char_vocabulary.py writes the same vocabulary.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace fracsweep::test {

struct Vocabulary {
  std::vector<std::string> pieces;  // (vocab) token texts
  std::vector<float> scores;        // (vocab) merge scores
};

inline void put_i32(std::string& bytes, int32_t value) {
  char raw[4];
  std::memcpy(raw, &value, 4);
  bytes.append(raw, 4);
}

inline void put_f32(std::string& bytes, float value) {
  char raw[4];
  std::memcpy(raw, &value, 4);
  bytes.append(raw, 4);
}

// llama2.c tokenizer.bin image of `vocab`; max_token_length is its longest piece.
inline std::string tokenizer_bin(const Vocabulary& vocab) {
  size_t max_length = 0;
  for (const std::string& piece : vocab.pieces) max_length = std::max(max_length, piece.size());
  std::string bytes;
  put_i32(bytes, static_cast<int32_t>(max_length));
  for (size_t id = 0; id < vocab.pieces.size(); ++id) {
    put_f32(bytes, vocab.scores[id]);
    put_i32(bytes, static_cast<int32_t>(vocab.pieces[id].size()));
    bytes += vocab.pieces[id];
  }
  return bytes;
}

// The character-level vocabulary (68 tokens), ids:
//   0 <unk>, 1 BOS "\n<s>\n", 2 EOS "\n</s>\n", 3 " ", 4..29 'a'..'z', 30..55 'A'..'Z',
//   56 '.', 57 ',', 58 '!', 59 '?', 60 '\'', 61 '\n' (single characters score 0), then the
//   merges 62 "th" (-1), 63 "he" (-2), 64 " t" (-3), 65 "the" (-4), 66 " the" (-5), 67 "in" (-6).
constexpr int32_t char_vocab_size = 68;
constexpr int32_t char_space = 3;
constexpr int32_t char_th = 62, char_he = 63, char_space_t = 64, char_the = 65, char_space_the = 66,
                  char_in = 67;
// Id of a lower-case or upper-case ASCII letter.
constexpr int32_t char_letter(char c) {
  return c >= 'a' ? 4 + (c - 'a') : 30 + (c - 'A');
}

inline Vocabulary char_vocabulary() {
  Vocabulary vocab;
  const auto add = [&](std::string piece, float score) {
    vocab.pieces.push_back(std::move(piece));
    vocab.scores.push_back(score);
  };
  add("<unk>", 0.0f);
  add("\n<s>\n", 0.0f);
  add("\n</s>\n", 0.0f);
  add(" ", 0.0f);
  for (char c = 'a'; c <= 'z'; ++c) add(std::string(1, c), 0.0f);
  for (char c = 'A'; c <= 'Z'; ++c) add(std::string(1, c), 0.0f);
  for (const char c : std::string(".,!?'\n")) add(std::string(1, c), 0.0f);
  add("th", -1.0f);
  add("he", -2.0f);
  add(" t", -3.0f);
  add("the", -4.0f);
  add(" the", -5.0f);
  add("in", -6.0f);
  return vocab;
}

}  // namespace fracsweep::test
