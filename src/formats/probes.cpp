#include "fracsweep/formats/probes.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr const char* columns[] = {"kind", "prompt", "target"};
constexpr size_t n_columns = 3;

std::string at_line(const std::string& path, int64_t line, const std::string& message) {
  return in_file(path, "line " + std::to_string(line) + ": " + message);
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(
        line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

bool valid_kind(const std::string& kind) {
  return !kind.empty() && std::all_of(kind.begin(), kind.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

void check_header(const std::string& path, const std::vector<std::string>& fields) {
  bool ok = fields.size() == n_columns;
  for (size_t c = 0; ok && c < n_columns; ++c) ok = fields[c] == columns[c];
  check_input(ok, at_line(path, 1, "expected the header 'kind<TAB>prompt<TAB>target'"));
}

Probe parse_probe(const std::string& path, int64_t line, const std::vector<std::string>& fields) {
  check_input(fields.size() == n_columns,
              at_line(path, line,
                      "expected 3 tab-separated columns (kind, prompt, target), found " +
                          std::to_string(fields.size())));
  Probe probe{fields[0], fields[1], fields[2], line};
  check_input(valid_kind(probe.kind),
              at_line(path, line,
                      "column 'kind': expected a name of letters, digits and '_', found '" +
                          probe.kind + "'"));
  check_input(!probe.prompt.empty(), at_line(path, line, "column 'prompt' is empty"));
  check_input(!probe.target.empty(), at_line(path, line, "column 'target' is empty"));
  return probe;
}

}  // namespace

int32_t ProbeSet::kind_index(const std::string& kind) const {
  const auto found = std::find(kinds.begin(), kinds.end(), kind);
  return found == kinds.end() ? -1 : static_cast<int32_t>(found - kinds.begin());
}

ProbeSet read_probes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  check_input(file.good(), in_file(path, "cannot open the probes file"));
  ProbeSet set;
  set.path = path;
  std::string line;
  int64_t number = 0;
  bool header_seen = false;
  while (std::getline(file, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    if (line.empty()) continue;
    const std::vector<std::string> fields = split_tabs(line);
    if (!header_seen) {
      check_header(path, fields);
      header_seen = true;
      continue;
    }
    Probe probe = parse_probe(path, number, fields);
    if (set.kind_index(probe.kind) < 0) {
      check_input(static_cast<int64_t>(set.kinds.size()) < max_probe_kinds,
                  at_line(path, number,
                          "column 'kind': more than " + std::to_string(max_probe_kinds) +
                              " kinds (each adds two result columns)"));
      set.kinds.push_back(probe.kind);
    }
    set.probes.push_back(std::move(probe));
  }
  check_input(!file.bad(), in_file(path, "read error"));
  check_input(header_seen,
              in_file(path, "empty; expected the header 'kind<TAB>prompt<TAB>target'"));
  check_input(!set.probes.empty(), in_file(path, "has a header but no probe"));
  return set;
}

std::vector<ProbeTokens> probe_token_ids(const ProbeSet& set, const Tokenizer& tokenizer,
                                         int64_t seq_len) {
  std::vector<ProbeTokens> encoded;
  encoded.reserve(set.probes.size());
  for (const Probe& probe : set.probes) {
    ProbeTokens tokens;
    tokens.kind = set.kind_index(probe.kind);
    tokens.prompt_ids = tokenizer.encode(probe.prompt, true, false,
                                         at_line(set.path, probe.line, "column 'prompt'"));
    // The prompt encodes, so a character the tokenizer cannot encode is in the target.
    const std::vector<int32_t> joint = tokenizer.encode(
        probe.prompt + probe.target, true, false, at_line(set.path, probe.line, "column 'target'"));
    const size_t n_prompt = tokens.prompt_ids.size();
    const bool prefix =
        joint.size() > n_prompt &&
        std::equal(tokens.prompt_ids.begin(), tokens.prompt_ids.end(), joint.begin());
    check_input(prefix,
                at_line(set.path, probe.line,
                        "column 'target': the prompt's tokens are not a prefix of the tokens of "
                        "prompt + target (the tokenizer merges across their boundary); end the "
                        "prompt or start the target differently"));
    check_input(
        static_cast<int64_t>(joint.size()) <= seq_len,
        at_line(set.path, probe.line,
                "column 'target': prompt + target is " + std::to_string(joint.size()) +
                    " tokens with BOS, more than the model's seq_len " + std::to_string(seq_len)));
    tokens.target_ids.assign(joint.begin() + static_cast<std::ptrdiff_t>(n_prompt), joint.end());
    encoded.push_back(std::move(tokens));
  }
  return encoded;
}

}  // namespace fracsweep
