#include "fracsweep/formats/eval_data.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <string_view>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// ASCII whitespace; Unicode spaces (U+00A0 ...) are kept as text.
constexpr std::string_view whitespace = " \t\n\v\f\r";

std::string_view strip(std::string_view text) {
  const size_t first = text.find_first_not_of(whitespace);
  if (first == std::string_view::npos) return {};
  const size_t last = text.find_last_not_of(whitespace);
  return text.substr(first, last - first + 1);
}

}  // namespace

void TokenBatch::append(const std::vector<int32_t>& sequence) {
  check_invariant(static_cast<int64_t>(sequence.size()) <= std::numeric_limits<int32_t>::max(),
                  "TokenBatch::append: sequence of " + std::to_string(sequence.size()) +
                      " tokens does not fit int32 positions");
  tokens.insert(tokens.end(), sequence.begin(), sequence.end());
  for (size_t position = 0; position < sequence.size(); ++position) {
    positions.push_back(static_cast<int32_t>(position));
  }
  seq_start.push_back(n_tokens());
}

std::vector<std::string> read_paragraphs(const std::string& path, int64_t n) {
  check_input(n >= 0, in_file(path, "asked for " + std::to_string(n) +
                                        " paragraphs; expected a count of at least 0"));
  std::ifstream file(path);
  check_input(file.is_open(), in_file(path, "cannot open evaluation text file"));

  std::vector<std::string> paragraphs;
  std::string paragraph;  // lines of the paragraph being read, joined by '\n'
  const auto finish_paragraph = [&] {
    const std::string_view stripped = strip(paragraph);
    if (!stripped.empty()) paragraphs.emplace_back(stripped);
    paragraph.clear();
  };
  std::string line;
  while (static_cast<int64_t>(paragraphs.size()) < n && std::getline(file, line)) {
    if (strip(line).empty()) {
      finish_paragraph();
      continue;
    }
    if (!paragraph.empty()) paragraph += '\n';
    paragraph += line;
  }
  check_input(!file.bad(), in_file(path, "read error"));
  if (static_cast<int64_t>(paragraphs.size()) < n) finish_paragraph();
  check_input(static_cast<int64_t>(paragraphs.size()) >= n,
              in_file(path, "has " + std::to_string(paragraphs.size()) +
                                " paragraphs (separated by blank lines); expected at least " +
                                std::to_string(n)));
  return paragraphs;
}

std::vector<std::vector<int32_t>> encode_paragraphs(const Tokenizer& tokenizer,
                                                    const std::vector<std::string>& paragraphs,
                                                    int64_t seq_len, const std::string& path) {
  check_input(seq_len >= 2, "seq_len is " + std::to_string(seq_len) +
                                "; expected at least 2 (BOS and one predicted token)");
  std::vector<std::vector<int32_t>> sequences;  // (n_paragraphs) each (<= seq_len) token ids
  sequences.reserve(paragraphs.size());
  for (size_t p = 0; p < paragraphs.size(); ++p) {
    const std::string where = in_file(path, "paragraph " + std::to_string(p + 1));
    std::vector<int32_t> ids =
        tokenizer.encode(paragraphs[p], /*add_bos=*/true, /*add_eos=*/false, where);
    ids.resize(std::min(ids.size(), static_cast<size_t>(seq_len)));
    sequences.push_back(std::move(ids));
  }
  return sequences;
}

}  // namespace fracsweep
