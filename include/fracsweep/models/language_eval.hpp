#pragma once
// Evaluation inputs of the language-model loaders (llama2.c, GGUF, Hugging Face): text
// paragraphs through a tokenizer, or pre-tokenized sequences.
//
// Pre-tokenized evaluation sequences ([eval] tokens = FILE.npy), usable by every language model:
// an integer .npy array, 1-D (one sequence) or 2-D (N, T) with one sequence per row; a negative
// id ends its row early (padding). `[eval] examples = N` keeps the first N rows. Ids are used as
// they are (no BOS is added) and each sequence is truncated to the model's seq_len.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/npy.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/models/model_loaders.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

inline std::vector<std::vector<int32_t>> read_token_sequences(const std::string& path,
                                                              int64_t examples, int64_t vocab_size,
                                                              int64_t seq_len) {
  const NpyArray array = read_npy(path);
  check_input(
      array.shape.size() == 1 || array.shape.size() == 2,
      in_file(path, "pre-tokenized evaluation file: expected a 1-D or 2-D integer array, found " +
                        std::to_string(array.shape.size()) + " dimensions"));
  const std::vector<int64_t> ids = array.as_int64();  // (rows * row_length)
  const int64_t rows = array.shape.size() == 1 ? 1 : array.shape[0];
  const int64_t row_length = array.shape.back();
  const int64_t kept_rows = examples > 0 ? std::min(examples, rows) : rows;
  std::vector<std::vector<int32_t>> sequences;
  for (int64_t r = 0; r < kept_rows; ++r) {
    std::vector<int32_t> sequence;
    for (int64_t t = 0; t < row_length && static_cast<int64_t>(sequence.size()) < seq_len; ++t) {
      const int64_t id = ids[static_cast<size_t>(r * row_length + t)];
      if (id < 0) break;
      check_input(id < vocab_size,
                  in_file(path, "pre-tokenized evaluation file: row " + std::to_string(r) +
                                    ", position " + std::to_string(t) + ": token id " +
                                    std::to_string(id) + " is outside the model's vocabulary 0.." +
                                    std::to_string(vocab_size - 1)));
      sequence.push_back(static_cast<int32_t>(id));
    }
    check_input(sequence.size() >= 2,
                in_file(path, "pre-tokenized evaluation file: row " + std::to_string(r) +
                                  " has fewer than 2 tokens, so it predicts nothing"));
    sequences.push_back(std::move(sequence));
  }
  check_input(!sequences.empty(), in_file(path, "pre-tokenized evaluation file holds no sequence"));
  return sequences;
}

// The job's behaviour probes ([eval] probes), encoded with `tokenizer` (formats/probes.hpp),
// into `inputs`; read from `sources` when given, else from the file (checks before any work).
// Probes need a tokenizer: without one (nullptr) they are an input error naming the file.
inline void add_probes(const JobConfig& job, const EvalSources* sources, const Tokenizer* tokenizer,
                       int64_t seq_len, EvalInputs& inputs) {
  if (job.eval_probes.empty()) return;
  const ProbeSet probes =
      sources && sources->probes ? *sources->probes : read_probes(job.eval_probes);
  check_input(tokenizer != nullptr,
              in_file(probes.path,
                      "behaviour probes need the model's tokenizer, and this model has "
                      "none fracsweep can use"));
  inputs.probes = probe_token_ids(probes, *tokenizer, seq_len);
  inputs.probe_kinds = probes.kinds;
}

// Teacher-forced sequences and greedy prompt of model `spec`: [eval] tokens when given, else
// [eval] text through `tokenizer` (nullptr when the model has none usable, which is then an
// error naming the job and model). The greedy continuation stops at `bos_id`; without a
// tokenizer it also starts from `bos_id` alone and [eval] greedy_prompt must be empty.
// `sources` may be null (checks before any work: the paragraphs are then read from the file, so
// that a character the tokenizer cannot encode is refused before anything is written).
inline EvalInputs language_eval_inputs(const JobConfig& job, const ModelSpec& spec,
                                       const Tokenizer* tokenizer, int32_t bos_id,
                                       int64_t vocab_size, int64_t seq_len,
                                       const EvalSources* sources) {
  const std::string model_text = "model '" + spec.name + "'";
  EvalInputs inputs;
  if (!job.eval_tokens.empty()) {
    inputs.sequences =
        read_token_sequences(job.eval_tokens, job.eval_examples, vocab_size, seq_len);
  } else {
    check_input(!job.eval_text.empty(),
                in_file(job.path, model_text + " needs [eval] text or [eval] tokens"));
    check_input(
        tokenizer != nullptr,
        in_file(job.path, model_text + ": [eval] text needs a tokenizer, and " + spec.path +
                              " has none fracsweep can use; give pre-tokenized [eval] tokens"));
    std::vector<std::string> read;  // (paragraphs) when checking without sources
    if (!sources) read = read_paragraphs(job.eval_text, job.eval_paragraphs);
    inputs.sequences =
        encode_paragraphs(*tokenizer, sources ? sources->paragraphs : read, seq_len, job.eval_text);
  }
  if (tokenizer && !job.greedy_prompt.empty()) {
    inputs.greedy_prompt = tokenizer->encode(job.greedy_prompt, true, false,
                                             in_file(job.path, "[eval] greedy_prompt"));
  } else {
    check_input(job.greedy_prompt.empty(),
                in_file(job.path,
                        "[eval] greedy_prompt needs a tokenizer, and " + model_text + " has none"));
    inputs.greedy_prompt = {bos_id};
  }
  inputs.greedy_tokens = job.greedy_tokens;
  inputs.greedy_stop_id = bos_id;
  add_probes(job, sources, tokenizer, seq_len, inputs);
  check_input(
      job.greedy_tokens == 0 ||
          static_cast<int64_t>(inputs.greedy_prompt.size()) + job.greedy_tokens <= seq_len,
      in_file(job.path, "[eval] greedy_prompt (" + std::to_string(inputs.greedy_prompt.size()) +
                            " tokens) plus greedy_tokens (" + std::to_string(job.greedy_tokens) +
                            ") exceeds " + model_text + " seq_len " + std::to_string(seq_len)));
  return inputs;
}

// Every strategy's scope matches a tensor and fits the tensors' stored formats.
inline void check_strategies(const JobConfig& job, const ModelSpec& spec,
                             const std::vector<TensorInfo>& tensors) {
  check_scopes(job, spec, tensors);
  for (size_t s = 0; s < job.strategies.size(); ++s) {
    check_strategy_fits(job.strategies[s], tensors,
                        in_file(job.path, "[sweep] strategy '" + job.strategy_texts[s] +
                                              "' on model '" + spec.name + "'"));
  }
}

}  // namespace fracsweep
