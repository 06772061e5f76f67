#pragma once
// Evaluation inputs: paragraphs of a text file (split on blank lines, stripped), each encoded as
// BOS + tokens truncated to seq_len; every position t predicts token t+1.
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/formats/tokenizer.hpp"

namespace fracsweep {

// Several token sequences stacked into one matrix of rows (so projections are one GEMM).
struct TokenBatch {
  std::vector<int32_t> tokens;        // (n_tokens) all sequences back to back
  std::vector<int32_t> positions;     // (n_tokens) position of each token inside its sequence
  std::vector<int64_t> seq_start{0};  // (n_seqs + 1) first row of each sequence; last = n_tokens

  int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(seq_start.size()) - 1; }
  void append(const std::vector<int32_t>& sequence);
};

// The first `n` paragraphs of the file at `path`: split on blank lines (lines that are empty
// or only whitespace), each stripped of leading/trailing whitespace, empty ones dropped.
// Throws InputError naming the file when it cannot be read or has fewer than `n` paragraphs.
std::vector<std::string> read_paragraphs(const std::string& path, int64_t n);

// BOS + encode(paragraph) truncated to `seq_len` tokens, for every paragraph. A character the
// tokenizer cannot encode is an InputError naming `path` (the file the paragraphs were read
// from), the paragraph (counted from 1) and the character.
std::vector<std::vector<int32_t>> encode_paragraphs(const Tokenizer& tokenizer,
                                                    const std::vector<std::string>& paragraphs,
                                                    int64_t seq_len, const std::string& path);

}  // namespace fracsweep
