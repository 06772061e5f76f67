#include "fracsweep/eval/evaluator.hpp"

#include <algorithm>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// Rows the stacked batch can ever need: every eval sequence, plus prompt + continuation minus
// its last token (which predicts nothing we score).
int64_t greedy_input_length(const EvalInputs& inputs) {
  if (inputs.greedy_tokens <= 0) return 0;
  return static_cast<int64_t>(inputs.greedy_prompt.size()) + inputs.greedy_tokens - 1;
}

int64_t capacity_tokens(const EvalInputs& inputs) {
  int64_t total = greedy_input_length(inputs);
  for (const auto& sequence : inputs.sequences) total += static_cast<int64_t>(sequence.size());
  return total;
}

int64_t capacity_seq_len(const EvalInputs& inputs) {
  int64_t longest = greedy_input_length(inputs);
  for (const auto& sequence : inputs.sequences) {
    longest = std::max(longest, static_cast<int64_t>(sequence.size()));
  }
  return longest;
}

void check_sequence(const LlamaConfig& config, const std::vector<int32_t>& sequence,
                    const std::string& what) {
  check_input(!sequence.empty(), what + " is empty");
  check_input(static_cast<int64_t>(sequence.size()) <= config.seq_len,
              what + " has " + std::to_string(sequence.size()) +
                  " tokens, more than the model's seq_len " + std::to_string(config.seq_len));
  for (int32_t token : sequence) {
    check_input(token >= 0 && token < config.vocab_size,
                what + " holds token id " + std::to_string(token) + " outside the vocabulary 0.." +
                    std::to_string(config.vocab_size - 1));
  }
}

const EvalInputs& checked(const LlamaConfig& config, const EvalInputs& inputs) {
  check_input(!inputs.sequences.empty(), "evaluation set is empty");
  for (size_t i = 0; i < inputs.sequences.size(); ++i) {
    check_sequence(config, inputs.sequences[i], "evaluation sequence " + std::to_string(i));
  }
  if (inputs.greedy_tokens > 0) {
    check_sequence(config, inputs.greedy_prompt, "greedy prompt");
    check_input(greedy_input_length(inputs) + 1 <= config.seq_len,
                "greedy prompt plus greedy_tokens (" + std::to_string(greedy_input_length(inputs) + 1) +
                    ") exceeds the model's seq_len " + std::to_string(config.seq_len));
  }
  return inputs;
}

}  // namespace

LanguageModelEvaluator::LanguageModelEvaluator(const Model& model, const EvalInputs& inputs,
                                               ForwardFactory make_forward)
    : vocab_(model.config.vocab_size),
      forward_(make_forward(model.config, capacity_tokens(checked(model.config, inputs)),
                            capacity_seq_len(inputs))),
      logits_(floats(capacity_tokens(inputs) * vocab_)) {
  for (const auto& sequence : inputs.sequences) {
    const int64_t start = batch_.n_tokens();
    batch_.append(sequence);
    for (size_t t = 0; t + 1 < sequence.size(); ++t) {
      pred_rows_.push_back(start + static_cast<int64_t>(t));
      targets_.push_back(sequence[t + 1]);
    }
  }
  if (inputs.greedy_tokens > 0) {
    baseline_.greedy_ids =
        greedy_continuation(model, inputs.greedy_prompt, inputs.greedy_tokens, inputs.greedy_stop_id);
    std::vector<int32_t> greedy_input = inputs.greedy_prompt;
    if (!baseline_.greedy_ids.empty()) {
      greedy_input.insert(greedy_input.end(), baseline_.greedy_ids.begin(),
                          baseline_.greedy_ids.end() - 1);
    }
    greedy_first_row_ = batch_.n_tokens() + static_cast<int64_t>(inputs.greedy_prompt.size()) - 1;
    batch_.append(greedy_input);
  }

  logits_.resize(floats(batch_.n_tokens() * vocab_));
  forward_->run(model, batch_, logits_.data());
  ref_probs_.resize(pred_rows_.size() * floats(vocab_));
  ref_rows_.reserve(pred_rows_.size());
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    const float* row = logits_.data() + pred_rows_[p] * vocab_;
    check_input(row_is_finite(row, vocab_),
                model.path + ": the unperturbed model produces non-finite logits on evaluation "
                             "position " + std::to_string(p));
    ref_rows_.push_back(make_reference_row(row, vocab_, ref_probs_.data() + p * floats(vocab_)));
  }
  baseline_.metrics = score();
}

// The prefix never exceeds prompt + max_new - 1 tokens (the last token is not fed back), which
// the forward pass and logits_ were sized for.
std::vector<int32_t> LanguageModelEvaluator::greedy_continuation(const Model& model,
                                                                 const std::vector<int32_t>& prompt,
                                                                 int64_t max_new, int32_t stop_id) {
  std::vector<int32_t> sequence = prompt;
  std::vector<int32_t> generated;
  while (static_cast<int64_t>(generated.size()) < max_new) {
    TokenBatch prefix;
    prefix.append(sequence);
    forward_->run(model, prefix, logits_.data());
    const int32_t next = argmax_row(logits_.data() + (prefix.n_tokens() - 1) * vocab_, vocab_);
    if (next < 0 || next == stop_id) break;
    generated.push_back(next);
    sequence.push_back(next);
  }
  return generated;
}

TrialMetrics LanguageModelEvaluator::score() const {
  MetricAccumulator accumulator;
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    accumulator.add(logits_.data() + pred_rows_[p] * vocab_, vocab_, ref_rows_[p], targets_[p]);
  }
  TrialMetrics metrics = accumulator.finish();
  const auto& greedy = baseline_.greedy_ids;
  metrics.greedy_length = static_cast<int64_t>(greedy.size());
  metrics.greedy_match = greedy.empty() ? 0
                                        : leading_matches(logits_.data() + greedy_first_row_ * vocab_,
                                                          vocab_, greedy.data(), metrics.greedy_length);
  return metrics;
}

double LanguageModelEvaluator::forward_flops() const { return forward_->flops(batch_); }

TrialMetrics LanguageModelEvaluator::evaluate(const Model& model) {
  forward_->run(model, batch_, logits_.data());
  return score();
}

}  // namespace fracsweep
