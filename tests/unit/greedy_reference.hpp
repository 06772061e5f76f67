#pragma once
// The reference twin of LanguageModelEvaluator::greedy_continuation: greedy decoding by running
// the full forward pass on the growing prefix (O(n^2) in the continuation length), for tests and
// the benchmark. The KV-cached, teacher-forced-verified engine must give exactly these tokens.
#include <cstdint>
#include <memory>
#include <vector>

#include "fracsweep/eval/metrics.hpp"
#include "fracsweep/nn/forward.hpp"

namespace fracsweep::test {

// Up to `max_new` argmax tokens after `prompt`, stopping at `stop_id` (not included) or a
// non-finite row; `make_forward` builds the architecture's forward pass.
inline std::vector<int32_t> greedy_growing_prefix(const Model& model, ForwardFactory make_forward,
                                                  const std::vector<int32_t>& prompt,
                                                  int64_t max_new, int32_t stop_id) {
  const int64_t longest = static_cast<int64_t>(prompt.size()) + max_new - 1;
  const int64_t vocab = model.config.vocab_size;
  const std::unique_ptr<LanguageModelForward> forward =
      make_forward(model.config, longest, longest);
  std::vector<float> logits(floats(longest * vocab));  // (prefix, vocab)
  std::vector<int32_t> sequence = prompt;
  std::vector<int32_t> generated;
  while (static_cast<int64_t>(generated.size()) < max_new) {
    TokenBatch prefix;
    prefix.append(sequence);
    forward->run(model, prefix, logits.data());
    const int32_t next = argmax_row(logits.data() + (prefix.n_tokens() - 1) * vocab, vocab);
    if (next < 0 || next == stop_id) break;
    generated.push_back(next);
    sequence.push_back(next);
  }
  return generated;
}

}  // namespace fracsweep::test
