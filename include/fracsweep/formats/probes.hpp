#pragma once
// Behaviour probes: a tab-separated file with the header line `kind<TAB>prompt<TAB>target` (the
// three columns in that order) and one probe per line. `kind` names a group of probes and
// becomes part of result column names (probe_<kind>_rate, probe_<kind>_logprob), so it is
// [A-Za-z0-9_]+; prompt and target are taken verbatim (a leading space in the target is kept)
// and must not be empty. Blank lines are skipped; a UTF-8 byte-order mark is allowed.
//
// Tokenization rule (probe_token_ids): the prompt and prompt + target are each encoded as one
// string with BOS; the prompt's ids must be a strict prefix of the joint ids, and the target's
// ids are the joint ids after the prompt's. Otherwise the probe is an input error.
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/formats/tokenizer.hpp"

namespace fracsweep {

// At most this many kinds per file: each kind adds two result columns.
constexpr int64_t max_probe_kinds = 8;

struct Probe {
  std::string kind;
  std::string prompt;
  std::string target;
  int64_t line = 0;  // 1-based line in the file, for messages
};

struct ProbeSet {
  std::string path;
  std::vector<std::string> kinds;                     // (n_kinds) in order of first appearance
  std::vector<Probe> probes;                          // (n_probes) file order
  int32_t kind_index(const std::string& kind) const;  // index into kinds, -1 when absent
};

// Reads and validates the file. Throws InputError naming the file, line and column.
ProbeSet read_probes(const std::string& path);

// One probe as token ids (see the tokenization rule above).
struct ProbeTokens {
  int32_t kind = 0;                 // index into ProbeSet::kinds
  std::vector<int32_t> prompt_ids;  // (n_prompt) BOS + prompt
  std::vector<int32_t> target_ids;  // (n_target) >= 1 tokens
};

// Encodes every probe; InputError naming the file, line and column 'target' when the prompt's
// ids are not a strict prefix of the joint ids, or when prompt + target exceed `seq_len` tokens;
// naming the file, line, column and character when the tokenizer cannot encode a character.
std::vector<ProbeTokens> probe_token_ids(const ProbeSet& probes, const Tokenizer& tokenizer,
                                         int64_t seq_len);

}  // namespace fracsweep
