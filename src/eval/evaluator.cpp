#include "fracsweep/eval/evaluator.hpp"

#include <algorithm>

#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

// Rows the stacked batch can ever need: every eval sequence, plus prompt + continuation minus
// its last token (which predicts nothing we score).
int64_t greedy_input_length(const EvalInputs& inputs) {
  if (inputs.greedy_tokens <= 0) return 0;
  return static_cast<int64_t>(inputs.greedy_prompt.size()) + inputs.greedy_tokens - 1;
}

// A probe's teacher-forced input: prompt + target without its last token (which predicts
// nothing we score).
int64_t probe_input_length(const ProbeTokens& probe) {
  return static_cast<int64_t>(probe.prompt_ids.size() + probe.target_ids.size()) - 1;
}

int64_t capacity_tokens(const EvalInputs& inputs) {
  int64_t total = greedy_input_length(inputs);
  for (const auto& sequence : inputs.sequences) total += static_cast<int64_t>(sequence.size());
  for (const auto& probe : inputs.probes) total += probe_input_length(probe);
  return total;
}

int64_t capacity_seq_len(const EvalInputs& inputs) {
  int64_t longest = greedy_input_length(inputs);
  for (const auto& sequence : inputs.sequences) {
    longest = std::max(longest, static_cast<int64_t>(sequence.size()));
  }
  for (const auto& probe : inputs.probes) longest = std::max(longest, probe_input_length(probe));
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
                "greedy prompt plus greedy_tokens (" +
                    std::to_string(greedy_input_length(inputs) + 1) +
                    ") exceeds the model's seq_len " + std::to_string(config.seq_len));
  }
  for (size_t p = 0; p < inputs.probes.size(); ++p) {
    const ProbeTokens& probe = inputs.probes[p];
    check_input(!probe.target_ids.empty(), "probe " + std::to_string(p) + " has an empty target");
    check_input(probe.kind >= 0 && probe.kind < static_cast<int32_t>(inputs.probe_kinds.size()),
                "probe " + std::to_string(p) + " has no kind");
    std::vector<int32_t> joint = probe.prompt_ids;
    joint.insert(joint.end(), probe.target_ids.begin(), probe.target_ids.end());
    check_sequence(config, joint, "probe " + std::to_string(p) + " (prompt + target)");
  }
  return inputs;
}

}  // namespace

LanguageModelEvaluator::LanguageModelEvaluator(const Model& model, const EvalInputs& inputs,
                                               ForwardFactory make_forward,
                                               const std::function<void()>& greedy_done)
    : vocab_(model.config.vocab_size),
      config_(model.config),
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
    baseline_.greedy_ids = greedy_continuation(model, inputs.greedy_prompt, inputs.greedy_tokens,
                                               inputs.greedy_stop_id);
    std::vector<int32_t> greedy_input = inputs.greedy_prompt;
    if (!baseline_.greedy_ids.empty()) {
      greedy_input.insert(greedy_input.end(), baseline_.greedy_ids.begin(),
                          baseline_.greedy_ids.end() - 1);
    }
    greedy_first_row_ = batch_.n_tokens() + static_cast<int64_t>(inputs.greedy_prompt.size()) - 1;
    batch_.append(greedy_input);
    if (greedy_done) greedy_done();
  }
  probe_kinds_ = inputs.probe_kinds;
  n_probe_kinds_ = static_cast<int64_t>(probe_kinds_.size());
  for (const ProbeTokens& probe : inputs.probes) {
    std::vector<int32_t> input = probe.prompt_ids;
    input.insert(input.end(), probe.target_ids.begin(), probe.target_ids.end() - 1);
    const int64_t first_row = batch_.n_tokens() + static_cast<int64_t>(probe.prompt_ids.size()) - 1;
    probe_rows_.push_back(ProbeRows{probe.kind, first_row, probe.target_ids});
    batch_.append(input);
  }

  logits_.resize(floats(batch_.n_tokens() * vocab_));
  scores_.resize(pred_rows_.size());
  forward_->run(model, batch_, logits_.data());
  cache_reference(model.path, ref_probs_, ref_rows_);
  baseline_.metrics = score();
}

void LanguageModelEvaluator::cache_reference(const std::string& path, std::vector<float>& probs,
                                             std::vector<ReferenceRow>& rows) const {
  probs.resize(pred_rows_.size() * floats(vocab_));
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    check_input(row_is_finite(logits_.data() + pred_rows_[p] * vocab_, vocab_),
                path +
                    ": the unperturbed model produces non-finite logits on evaluation "
                    "position " +
                    std::to_string(p));
  }
  rows.assign(pred_rows_.size(), ReferenceRow{});
  const auto n_pred = static_cast<int64_t>(pred_rows_.size());
#pragma omp parallel for schedule(static) if (worth_threads(n_pred * vocab_))
  for (int64_t p = 0; p < n_pred; ++p) {
    const auto i = static_cast<size_t>(p);
    rows[i] = make_reference_row(logits_.data() + pred_rows_[i] * vocab_, vocab_,
                                 probs.data() + i * floats(vocab_));
  }
}

void LanguageModelEvaluator::set_reference(const Model& reference) {
  check_input(same_dimensions(reference.config, config_),
              reference.path +
                  ": a reference checkpoint must have the dimensions of the model it "
                  "is compared with (" +
                  dimensions_text(config_) + "), found " + dimensions_text(reference.config));
  forward_->run(reference, batch_, logits_.data());
  cache_reference(reference.path, second_probs_, second_rows_);
}

// The sequence never exceeds prompt + max_new - 1 fed tokens (the last token is not fed back),
// which the forward pass, its KV cache and logits_ were sized for.
void LanguageModelEvaluator::decode_greedily(const Model& model, std::vector<int32_t>& sequence,
                                             int64_t n_prompt, int64_t from, int64_t max_new,
                                             int32_t stop_id) {
  int64_t start = from;  // sequence[0 .. start) is in the KV cache
  while (static_cast<int64_t>(sequence.size()) - n_prompt < max_new) {
    const int64_t n = static_cast<int64_t>(sequence.size()) - start;
    forward_->decode(model, sequence.data() + start, n, start, logits_.data());
    const int32_t next = argmax_row(logits_.data() + (n - 1) * vocab_, vocab_);
    if (next < 0 || next == stop_id) return;
    sequence.push_back(next);
    start += n;
  }
}

// KV-cached decoding, then teacher-forced verification: the continuation is exactly the one
// whose every token is the argmax of the teacher-forced row predicting it (and whose end, when
// it ends early, is a stop there too), which is what decoding on the growing prefix yields and
// what greedy_match compares with. A cached row may differ from the teacher-forced one in its
// last bits (the GEMMs see 1 row instead of many); where that changes an argmax, the
// teacher-forced token is taken and decoding resumes after it. Each round confirms at least one
// more position, so this ends; in practice the first verification confirms everything.
std::vector<int32_t> LanguageModelEvaluator::greedy_continuation(const Model& model,
                                                                 const std::vector<int32_t>& prompt,
                                                                 int64_t max_new, int32_t stop_id) {
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  std::vector<int32_t> sequence = prompt;  // (n_prompt + continuation) tokens
  decode_greedily(model, sequence, n_prompt, 0, max_new, stop_id);
  int64_t confirmed = 0;  // leading continuation tokens a teacher-forced pass agreed with
  while (true) {
    const int64_t n_new = static_cast<int64_t>(sequence.size()) - n_prompt;
    const bool stopped = n_new < max_new;  // then row n_prompt - 1 + n_new must predict a stop
    TokenBatch forced;
    forced.append(stopped ? sequence : std::vector<int32_t>(sequence.begin(), sequence.end() - 1));
    forward_->run(model, forced, logits_.data());
    int64_t i = confirmed;
    int32_t forced_next = 0;  // the teacher-forced argmax at the first disagreement
    for (; i < n_new + (stopped ? 1 : 0); ++i) {
      forced_next = argmax_row(logits_.data() + (n_prompt - 1 + i) * vocab_, vocab_);
      const bool forced_stops = forced_next < 0 || forced_next == stop_id;
      if (i < n_new ? forced_next != sequence[floats(n_prompt + i)] : !forced_stops) break;
    }
    if (i == n_new + (stopped ? 1 : 0)) break;  // every row agrees
    sequence.resize(floats(n_prompt + i));
    if (forced_next < 0 || forced_next == stop_id) break;  // the continuation ends at i
    sequence.push_back(forced_next);
    confirmed = i + 1;
    decode_greedily(model, sequence, n_prompt, n_prompt + i, max_new, stop_id);
  }
  return {sequence.begin() + n_prompt, sequence.end()};
}

// Each position's vocabulary-wide work on the rank's threads, then the sums in position order.
TrialMetrics LanguageModelEvaluator::score() {
  const bool second = !second_rows_.empty();
  const auto n_pred = static_cast<int64_t>(pred_rows_.size());
#pragma omp parallel for schedule(static) if (worth_threads(n_pred * vocab_))
  for (int64_t p = 0; p < n_pred; ++p) {
    const auto i = static_cast<size_t>(p);
    scores_[i] = score_position(logits_.data() + pred_rows_[i] * vocab_, vocab_, ref_rows_[i],
                                targets_[i], second ? &second_rows_[i] : nullptr);
  }
  MetricAccumulator accumulator;
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    accumulator.add(scores_[p], ref_rows_[p], targets_[p], second ? &second_rows_[p] : nullptr);
  }
  TrialMetrics metrics = accumulator.finish();
  score_probes(metrics);
  const auto& greedy = baseline_.greedy_ids;
  metrics.greedy_length = static_cast<int64_t>(greedy.size());
  metrics.greedy_match = greedy.empty()
                             ? 0
                             : leading_matches(logits_.data() + greedy_first_row_ * vocab_, vocab_,
                                               greedy.data(), metrics.greedy_length);
  return metrics;
}

// A probe's greedy continuation begins with its target exactly when, teacher-forced on the
// target, every target token is the argmax of the row that predicts it: then greedy decoding
// emits those tokens one by one.
std::vector<LanguageModelEvaluator::ProbeOutcome> LanguageModelEvaluator::probe_outcomes() const {
  std::vector<ProbeOutcome> outcomes(probe_rows_.size());  // (n_probes)
  const auto n_probes = static_cast<int64_t>(probe_rows_.size());
#pragma omp parallel for schedule(dynamic) if (worth_threads(n_probes * vocab_))
  for (int64_t p = 0; p < n_probes; ++p) {
    const ProbeRows& probe = probe_rows_[static_cast<size_t>(p)];
    ProbeOutcome& outcome = outcomes[static_cast<size_t>(p)];
    outcome.begins_with_target = true;
    for (size_t j = 0; j < probe.targets.size(); ++j) {
      const float* row = logits_.data() + (probe.first_row + static_cast<int64_t>(j)) * vocab_;
      outcome.logprob += token_logprob(row, vocab_, probe.targets[j]);
      outcome.begins_with_target =
          outcome.begins_with_target && argmax_row(row, vocab_) == probe.targets[j];
    }
  }
  return outcomes;
}

// Per kind: the fraction of prompts that behave, and the mean log-probability of the target.
void LanguageModelEvaluator::score_probes(TrialMetrics& metrics) const {
  std::vector<int64_t> prompts(static_cast<size_t>(n_probe_kinds_), 0);       // (n_kinds)
  std::vector<int64_t> behaving(static_cast<size_t>(n_probe_kinds_), 0);      // (n_kinds)
  std::vector<double> logprob_sum(static_cast<size_t>(n_probe_kinds_), 0.0);  // (n_kinds)
  const std::vector<ProbeOutcome> outcomes = probe_outcomes();
  for (size_t p = 0; p < outcomes.size(); ++p) {
    const auto k = static_cast<size_t>(probe_rows_[p].kind);
    ++prompts[k];
    behaving[k] += outcomes[p].begins_with_target;
    logprob_sum[k] += outcomes[p].logprob;
  }
  for (size_t k = 0; k < prompts.size(); ++k) {
    const auto n = static_cast<double>(prompts[k]);
    metrics.probe_rate[k] = static_cast<double>(behaving[k]) / n;
    metrics.probe_logprob[k] = logprob_sum[k] / n;
  }
}

double LanguageModelEvaluator::forward_flops() const {
  return forward_->flops(batch_);
}

TrialMetrics LanguageModelEvaluator::evaluate(const Model& model) {
  forward_->run(model, batch_, logits_.data());
  return score();
}

std::vector<CrossEntropyTerm> LanguageModelEvaluator::objective_terms(
    const Objective& objective) const {
  std::vector<CrossEntropyTerm> terms;
  if (!objective.uses_probes()) {
    const double weight = 1.0 / static_cast<double>(pred_rows_.size());
    for (size_t p = 0; p < pred_rows_.size(); ++p) {
      const int32_t target =
          objective.kind == ObjectiveKind::agreement ? ref_rows_[p].argmax : targets_[p];
      terms.push_back({pred_rows_[p], target, weight});
    }
    return terms;
  }
  const auto found = std::find(probe_kinds_.begin(), probe_kinds_.end(), objective.probe_kind);
  check_input(found != probe_kinds_.end(), [&] {
    return "objective=" + objective.canonical() +
           " names a probe kind the job's [eval] probes do not " + "have" +
           (probe_kinds_.empty() ? std::string(" (the job has no probes)")
                                 : " (kinds: " + join(probe_kinds_, ", ") + ")");
  });
  const auto kind = static_cast<int32_t>(found - probe_kinds_.begin());
  const auto of_kind = std::count_if(probe_rows_.begin(), probe_rows_.end(),
                                     [&](const ProbeRows& probe) { return probe.kind == kind; });
  // J = -(mean target log-probability) to remove, +(mean) to implant.
  const double weight =
      (objective.kind == ObjectiveKind::probe_remove ? 1.0 : -1.0) / static_cast<double>(of_kind);
  for (const ProbeRows& probe : probe_rows_) {
    if (probe.kind != kind) continue;
    for (size_t j = 0; j < probe.targets.size(); ++j) {
      terms.push_back({probe.first_row + static_cast<int64_t>(j), probe.targets[j], weight});
    }
  }
  return terms;
}

double LanguageModelEvaluator::gradient(const Model& model,
                                        const std::vector<CrossEntropyTerm>& terms,
                                        const GradientOutputs& out) {
  return forward_->gradient(model, batch_, cross_entropy_objective(terms), out);
}

double LanguageModelEvaluator::objective_value(const Model& model,
                                               const std::vector<CrossEntropyTerm>& terms) {
  forward_->run(model, batch_, logits_.data());
  return cross_entropy_value(terms, logits_.data(), vocab_);
}

}  // namespace fracsweep
