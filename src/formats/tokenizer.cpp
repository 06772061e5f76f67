#include "fracsweep/formats/tokenizer.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

static_assert(std::endian::native == std::endian::little,
              "tokenizer.bin is little-endian and is read by memcpy");

// llama2.c's convention: <unk>, BOS and EOS are ids 0, 1 and 2, so a vocabulary has at least 3.
constexpr int64_t min_vocab_size = 3;
// llama2.c starts its search for the best merge at this score, so pairs scoring at or below it
// never merge; kept to stay token-for-token identical.
constexpr float merge_score_floor = -1e10f;
constexpr std::string_view dummy_prefix = " ";

bool is_utf8_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte a "<0xXX>" piece stands for; nullopt for any other piece.
std::optional<char> byte_of_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return std::nullopt;
  const int high = hex_digit_value(piece[3]);
  const int low = hex_digit_value(piece[4]);
  if (high < 0 || low < 0) return std::nullopt;
  return static_cast<char>(high * 16 + low);
}

std::string byte_piece(int byte) {
  constexpr std::string_view hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[static_cast<size_t>(byte / 16)] +
         hex[static_cast<size_t>(byte % 16)] + ">";
}

// Bytes of the UTF-8 sequence `lead` starts, or 0 when no well-formed one starts with it.
size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The code point of `group` (a lead byte and its continuation bytes, as encode splits text)
// when it is one well-formed UTF-8 character, else nullopt.
std::optional<uint32_t> utf8_code_point(std::string_view group) {
  const auto lead = static_cast<unsigned char>(group[0]);
  const size_t length = utf8_length(lead);
  if (length == 0 || group.size() != length) return std::nullopt;
  constexpr uint32_t lead_bits[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  constexpr uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};  // below: an overlong form
  uint32_t code_point = lead & lead_bits[length];
  for (size_t at = 1; at < length; ++at) {
    code_point = code_point << 6 | (static_cast<unsigned char>(group[at]) & 0x3F);
  }
  const bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
  if (code_point < smallest[length] || code_point > 0x10FFFF || surrogate) return std::nullopt;
  return code_point;
}

// `group` for a message: "é" (U+00E9) for a printable character, U+0009 for a control
// character, the bytes in hex when it is not well-formed UTF-8.
std::string describe_character(std::string_view group) {
  char text[32];
  const std::optional<uint32_t> code_point = utf8_code_point(group);
  if (!code_point) {
    std::string bytes;
    for (const char byte : group) {
      std::snprintf(text, sizeof text, " 0x%02X", static_cast<unsigned char>(byte));
      bytes += text;
    }
    return "bytes" + bytes + " (not well-formed UTF-8)";
  }
  std::snprintf(text, sizeof text, "U+%04X", static_cast<unsigned>(*code_point));
  const bool control = *code_point < 0x20 || (*code_point >= 0x7F && *code_point < 0xA0);
  return control ? std::string(text) : "\"" + std::string(group) + "\" (" + text + ")";
}

// Checks what encode/decode rely on: one score per piece, finite scores, special ids inside the
// vocabulary and a " " piece for the dummy prefix.
void check_vocabulary(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                      int32_t bos_id, int32_t eos_id) {
  const auto vocab_size = static_cast<int64_t>(pieces.size());
  check_input(scores.size() == pieces.size(), "tokenizer: " + std::to_string(scores.size()) +
                                                  " scores for " + std::to_string(vocab_size) +
                                                  " pieces; expected one score per piece");
  check_input(vocab_size >= min_vocab_size && vocab_size <= std::numeric_limits<int32_t>::max(),
              "tokenizer: vocab_size " + std::to_string(vocab_size) + "; expected " +
                  std::to_string(min_vocab_size) + " (<unk>, BOS, EOS) up to 2^31-1 tokens");
  check_input(bos_id >= 0 && bos_id < vocab_size, "tokenizer: bos_id " + std::to_string(bos_id) +
                                                      " outside the vocabulary of " +
                                                      std::to_string(vocab_size));
  check_input(eos_id >= 0 && eos_id < vocab_size, "tokenizer: eos_id " + std::to_string(eos_id) +
                                                      " outside the vocabulary of " +
                                                      std::to_string(vocab_size));
  for (size_t id = 0; id < scores.size(); ++id) {
    check_input(std::isfinite(scores[id]), "tokenizer: token " + std::to_string(id) +
                                               " has a non-finite score; expected a finite float");
  }
  check_input(std::find(pieces.begin(), pieces.end(), dummy_prefix) != pieces.end(),
              "tokenizer: no \" \" piece; expected one for the dummy prefix llama2.c puts before "
              "every text");
}

// The whole file at `path`; InputError naming the file when it cannot be read.
std::string read_file_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  check_input(file.is_open(), in_file(path, "cannot open tokenizer file"));
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  check_input(!file.bad(), in_file(path, "read error"));
  return bytes;
}

// Bounds-checked little-endian reads over a tokenizer file held in memory.
class ByteCursor {
 public:
  ByteCursor(const std::string& path, const std::string& bytes) : path_(path), bytes_(bytes) {}

  size_t remaining() const { return bytes_.size() - offset_; }
  size_t offset() const { return offset_; }

  // `count` bytes for `what`; InputError saying the file is truncated when fewer remain.
  std::string_view take(size_t count, const std::string& what) {
    check_input(count <= remaining(),
                in_file(path_, "truncated: " + what + " needs " + std::to_string(count) +
                                   " bytes at offset " + std::to_string(offset_) +
                                   ", the file has " + std::to_string(remaining()) + " left"));
    std::string_view taken(bytes_.data() + offset_, count);
    offset_ += count;
    return taken;
  }

  template <typename T>
  T read(const std::string& what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what).data(), sizeof(T));
    return value;
  }

 private:
  const std::string& path_;
  const std::string& bytes_;
  size_t offset_ = 0;
};

}  // namespace

Tokenizer::Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, int32_t bos_id,
                     int32_t eos_id)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), bos_id_(bos_id), eos_id_(eos_id) {
  check_vocabulary(pieces_, scores_, bos_id_, eos_id_);
  sorted_ids_.resize(pieces_.size());
  std::iota(sorted_ids_.begin(), sorted_ids_.end(), 0);
  std::stable_sort(sorted_ids_.begin(), sorted_ids_.end(),
                   [this](int32_t a, int32_t b) { return pieces_[a] < pieces_[b]; });
  for (size_t byte = 0; byte < byte_ids_.size(); ++byte) {
    byte_ids_[byte] = lookup(byte_piece(static_cast<int>(byte)));
  }
  space_id_ = lookup(dummy_prefix);
}

Tokenizer Tokenizer::load_llama2c(const std::string& path, int64_t vocab_size) {
  check_input(
      vocab_size >= min_vocab_size && vocab_size <= std::numeric_limits<int32_t>::max(),
      in_file(path, "vocab_size " + std::to_string(vocab_size) +
                        " from the model header; expected " + std::to_string(min_vocab_size) +
                        " (<unk>, BOS, EOS) up to 2^31-1 tokens"));
  const std::string bytes = read_file_bytes(path);
  ByteCursor cursor(path, bytes);

  const auto max_token_length = cursor.read<int32_t>("header field max_token_length");
  check_input(max_token_length > 0,
              in_file(path, "max_token_length is " + std::to_string(max_token_length) +
                                "; expected a positive byte count"));

  std::vector<std::string> pieces;  // (vocab_size) token texts
  std::vector<float> scores;        // (vocab_size) merge scores
  pieces.reserve(static_cast<size_t>(vocab_size));
  scores.reserve(static_cast<size_t>(vocab_size));
  for (int64_t id = 0; id < vocab_size; ++id) {
    const std::string token = "token " + std::to_string(id);
    check_input(cursor.remaining() > 0,
                in_file(path, "ends after " + std::to_string(id) + " tokens; expected vocab_size " +
                                  std::to_string(vocab_size) + " tokens (from the model header)"));
    scores.push_back(cursor.read<float>(token + " score"));
    const auto length = cursor.read<int32_t>(token + " length");
    check_input(length >= 0 && length <= max_token_length,
                in_file(path, token + " has length " + std::to_string(length) + "; expected 0.." +
                                  std::to_string(max_token_length) + " (max_token_length)"));
    pieces.emplace_back(cursor.take(static_cast<size_t>(length), token + " text"));
  }
  check_input(cursor.remaining() == 0,
              in_file(path, std::to_string(cursor.remaining()) + " trailing bytes after token " +
                                std::to_string(vocab_size - 1) + " at offset " +
                                std::to_string(cursor.offset()) +
                                "; expected the file to end there (vocab_size " +
                                std::to_string(vocab_size) + " from the model header)"));
  try {
    return Tokenizer(std::move(pieces), std::move(scores));
  } catch (const InputError& error) {
    throw InputError(in_file(path, error.what()));
  }
}

int32_t Tokenizer::lookup(std::string_view piece) const {
  const auto found = std::lower_bound(
      sorted_ids_.begin(), sorted_ids_.end(), piece,
      [this](int32_t id, std::string_view wanted) { return pieces_[id] < wanted; });
  if (found == sorted_ids_.end() || pieces_[*found] != piece) return -1;
  return *found;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos,
                                       std::string_view where) const {
  std::vector<int32_t> ids;  // (n_tokens) BOS, dummy prefix, then one id per codepoint or byte
  ids.reserve(text.size() + 3);
  if (add_bos) ids.push_back(bos_id_);
  if (!text.empty()) ids.push_back(space_id_);

  // One piece per UTF-8 codepoint (a lead byte and at most 3 continuation bytes), or one byte
  // piece per byte when the codepoint is not in the vocabulary; neither is an input error.
  size_t codepoint_start = 0;
  for (size_t at = 0; at < text.size(); ++at) {
    if (!is_utf8_continuation(static_cast<unsigned char>(text[at]))) codepoint_start = at;
    const size_t next = at + 1;
    const bool continues = next < text.size() &&
                           is_utf8_continuation(static_cast<unsigned char>(text[next])) &&
                           next - codepoint_start < 4;
    if (continues) continue;
    const std::string_view codepoint = text.substr(codepoint_start, next - codepoint_start);
    const int32_t id = lookup(codepoint);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (const char byte : codepoint) {
        const int32_t byte_id = byte_ids_[static_cast<unsigned char>(byte)];
        check_input(byte_id >= 0, [&] {
          return std::string(where) + ": character " + describe_character(codepoint) +
                 " is not in the tokenizer's vocabulary, which has no byte-fallback piece \"" +
                 byte_piece(static_cast<unsigned char>(byte)) +
                 "\" either; expected only characters the vocabulary can encode (replace or "
                 "remove it)";
        });
        ids.push_back(byte_id);
      }
    }
    codepoint_start = next;
  }

  // Repeatedly merge the adjacent pair whose concatenation is the best-scoring piece (the
  // first such pair on ties). As in llama2.c, BOS takes part in the pairs. Only the pairs next
  // to a merge change, so each pair's merge result is cached and recomputed there.
  std::string concatenation;  // scratch: pieces of one adjacent pair, back to back
  const auto merge_of = [&](size_t left) {
    concatenation.assign(pieces_[ids[left]]);
    concatenation.append(pieces_[ids[left + 1]]);
    return lookup(concatenation);
  };
  std::vector<int32_t> pair_merges;  // (n_tokens - 1) id of ids[k] + ids[k+1], or -1
  pair_merges.reserve(ids.size());
  for (size_t left = 0; left + 1 < ids.size(); ++left) pair_merges.push_back(merge_of(left));
  while (true) {
    float best_score = merge_score_floor;
    std::optional<size_t> best_pair;
    for (size_t pair = 0; pair < pair_merges.size(); ++pair) {
      const int32_t merged = pair_merges[pair];
      if (merged >= 0 && scores_[merged] > best_score) {
        best_score = scores_[merged];
        best_pair = pair;
      }
    }
    if (!best_pair) break;
    const size_t left = *best_pair;
    ids[left] = pair_merges[left];
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(left) + 1);
    pair_merges.erase(pair_merges.begin() + static_cast<std::ptrdiff_t>(left));
    if (left > 0) pair_merges[left - 1] = merge_of(left - 1);
    if (left < pair_merges.size()) pair_merges[left] = merge_of(left);
  }

  if (add_eos) ids.push_back(eos_id_);
  return ids;
}

std::string Tokenizer::decode_piece(int32_t previous, int32_t token) const {
  check_invariant(token >= 0 && token < vocab_size(), "decode: token " + std::to_string(token) +
                                                          " outside the vocabulary of " +
                                                          std::to_string(vocab_size()));
  std::string_view piece = pieces_[token];
  if (previous == bos_id_ && piece.starts_with(' ')) piece.remove_prefix(1);
  if (const auto byte = byte_of_piece(piece)) return std::string(1, *byte);
  return std::string(piece);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return decode_after(bos_id_, ids);
}

std::string Tokenizer::decode_after(int32_t previous, const std::vector<int32_t>& ids) const {
  std::string text;
  for (const int32_t id : ids) {
    text += decode_piece(previous, id);
    previous = id;
  }
  return text;
}

}  // namespace fracsweep
