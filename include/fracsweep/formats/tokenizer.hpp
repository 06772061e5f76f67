#pragma once
// The llama2.c byte-pair tokenizer: encode (dummy leading space, greedy merges by best score,
// byte fallback to "<0xXX>" pieces) and decode. Any vocabulary of at least 3 tokens (ids 0, 1, 2:
// <unk>, BOS, EOS by llama2.c's convention) with a " " piece: SentencePiece vocabularies with
// their 256 byte pieces, and character-level ones with none.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fracsweep {

class Tokenizer {
 public:
  // From a vocabulary: pieces[i] is token i's text, scores[i] its merge score.
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, int32_t bos_id = 1,
            int32_t eos_id = 2);

  // llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length,
  // bytes. `vocab_size` comes from the model header. Throws InputError naming the file.
  static Tokenizer load_llama2c(const std::string& path, int64_t vocab_size);

  // Token ids of `text`, with BOS / EOS when asked; exactly llama2.c's `encode` for every text
  // it can encode. A character (a UTF-8 lead byte and its continuation bytes) that is no piece
  // falls back to the "<0xXX>" pieces of its bytes (ids byte + 3 in SentencePiece vocabularies,
  // as llama2.c assumes); when a byte has no such piece either, encoding fails with an
  // InputError "<where>: character ..." naming the character (llama2.c would emit id byte + 3,
  // whatever token that is).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool add_eos,
                              std::string_view where = "text") const;
  // Text of `token` following `previous` (llama2.c's `decode`: strips the leading space after
  // BOS, turns <0xXX> pieces into their byte).
  std::string decode_piece(int32_t previous, int32_t token) const;
  // Concatenated decode of a sequence (the first id is decoded as following BOS).
  std::string decode(const std::vector<int32_t>& ids) const;
  // Concatenated decode of a continuation whose first id follows token `previous` (e.g. the
  // last prompt token of a greedy continuation).
  std::string decode_after(int32_t previous, const std::vector<int32_t>& ids) const;

  // Token `id`'s vocabulary entry as stored (byte-fallback pieces stay "<0xXX>").
  const std::string& piece(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }
  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

 private:
  std::vector<std::string> pieces_;      // (vocab) token texts
  std::vector<float> scores_;            // (vocab) merge scores
  std::vector<int32_t> sorted_ids_;      // (vocab) ids sorted by piece text, for lookup
  std::array<int32_t, 256> byte_ids_{};  // (256) id of each byte's "<0xXX>" piece, or -1
  int32_t space_id_ = -1;                // id of the " " piece (the dummy prefix)
  int32_t bos_id_;
  int32_t eos_id_;
  int32_t lookup(std::string_view piece) const;  // id of `piece`, or -1
};

}  // namespace fracsweep
