#include "fracsweep/gpt2.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "fracsweep/error.hpp"
#include "fracsweep/gemm.hpp"
#include "fracsweep/ops.hpp"

namespace fracsweep {

namespace {

size_t floats(int64_t n) { return static_cast<size_t>(n); }

// out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias; x, out (rows, d).
void layernorm_rows(const float* x, const float* weight, const float* bias, float* out, int64_t rows, int64_t d,
                    float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += row[i];
    const double mean = sum / static_cast<double>(d);
    double squares = 0;
    for (int64_t i = 0; i < d; ++i) squares += (row[i] - mean) * (row[i] - mean);
    const auto inv = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(d) + eps));
    const auto mean_f = static_cast<float>(mean);
    float* o = out + r * d;
    for (int64_t i = 0; i < d; ++i) o[i] = (row[i] - mean_f) * inv * weight[i] + bias[i];
  }
}

// x[r, :] += bias for every row; x (rows, d).
void add_bias_rows(float* x, const float* bias, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) add_inplace(x + r * d, bias, d);
}

// GELU, tanh approximation (GPT-2's "gelu_new"), in place.
void gelu_tanh(float* x, int64_t n) {
  constexpr float sqrt_2_over_pi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(sqrt_2_over_pi * (v + 0.044715f * v * v * v)));
  }
}

void check_sequence(const LlamaConfig& config, const std::vector<int32_t>& sequence, const std::string& what) {
  check_input(!sequence.empty(), what + " is empty");
  check_input(static_cast<int64_t>(sequence.size()) <= config.seq_len,
              what + " has " + std::to_string(sequence.size()) + " tokens, more than the model's n_positions " +
                  std::to_string(config.seq_len));
  for (int32_t token : sequence) {
    check_input(token >= 0 && token < config.vocab_size,
                what + " holds token id " + std::to_string(token) + " outside the vocabulary 0.." +
                    std::to_string(config.vocab_size - 1));
  }
}

int64_t greedy_input_length(const EvalInputs& inputs) {
  if (inputs.greedy_tokens <= 0) return 0;
  return static_cast<int64_t>(inputs.greedy_prompt.size()) + inputs.greedy_tokens - 1;
}

const EvalInputs& checked(const LlamaConfig& config, const EvalInputs& inputs) {
  check_input(!inputs.sequences.empty(), "evaluation set is empty");
  for (size_t i = 0; i < inputs.sequences.size(); ++i) {
    check_sequence(config, inputs.sequences[i], "evaluation sequence " + std::to_string(i));
  }
  if (inputs.greedy_tokens > 0) {
    check_sequence(config, inputs.greedy_prompt, "greedy prompt");
    check_input(greedy_input_length(inputs) + 1 <= config.seq_len,
                "greedy prompt plus greedy_tokens exceeds the model's n_positions " + std::to_string(config.seq_len));
  }
  return inputs;
}

int64_t capacity_tokens(const EvalInputs& inputs) {
  int64_t total = greedy_input_length(inputs);
  for (const auto& s : inputs.sequences) total += static_cast<int64_t>(s.size());
  return total;
}

int64_t capacity_seq_len(const EvalInputs& inputs) {
  int64_t longest = greedy_input_length(inputs);
  for (const auto& s : inputs.sequences) longest = std::max(longest, static_cast<int64_t>(s.size()));
  return longest;
}

std::vector<int32_t> gpt2_greedy(const Model& model, const std::vector<int32_t>& prompt, int64_t max_new,
                                 int32_t stop_id) {
  const int64_t vocab = model.config.vocab_size;
  const int64_t longest = std::min(model.config.seq_len, static_cast<int64_t>(prompt.size()) + max_new);
  Gpt2Workspace workspace(model.config, longest, longest);
  std::vector<float> logits(floats(longest * vocab));  // (longest, vocab)
  std::vector<int32_t> sequence = prompt, generated;
  while (static_cast<int64_t>(generated.size()) < max_new) {
    TokenBatch batch;
    batch.append(sequence);
    gpt2_forward(model, batch, workspace, logits.data());
    const int32_t next = argmax_row(logits.data() + (batch.n_tokens() - 1) * vocab, vocab);
    if (next < 0 || next == stop_id) break;
    generated.push_back(next);
    if (static_cast<int64_t>(sequence.size()) == longest) break;
    sequence.push_back(next);
  }
  return generated;
}

}  // namespace

std::vector<TensorInfo> gpt2_tensor_table(const LlamaConfig& c) {
  std::vector<TensorInfo> tensors;
  const int64_t d = c.dim, h = c.hidden_dim;
  int64_t offset = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t count = 1;
    for (int64_t s : shape) count *= s;
    tensors.push_back(TensorInfo{name, std::move(shape), offset, count});
    offset += count;
  };
  add("wte", {c.vocab_size, d});
  add("wpe", {c.seq_len, d});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string layer = "layers." + std::to_string(l) + ".";
    add(layer + "ln_1.weight", {d});
    add(layer + "ln_1.bias", {d});
    add(layer + "attn.c_attn.weight", {3 * d, d});
    add(layer + "attn.c_attn.bias", {3 * d});
    add(layer + "attn.c_proj.weight", {d, d});
    add(layer + "attn.c_proj.bias", {d});
    add(layer + "ln_2.weight", {d});
    add(layer + "ln_2.bias", {d});
    add(layer + "mlp.c_fc.weight", {h, d});
    add(layer + "mlp.c_fc.bias", {h});
    add(layer + "mlp.c_proj.weight", {d, h});
    add(layer + "mlp.c_proj.bias", {d});
  }
  add("ln_f.weight", {d});
  add("ln_f.bias", {d});
  return tensors;
}

Gpt2Workspace::Gpt2Workspace(const LlamaConfig& c, int64_t tokens, int64_t seq_len)
    : x(floats(tokens * c.dim)),
      xn(floats(tokens * c.dim)),
      qkv(floats(tokens * 3 * c.dim)),
      att(floats(tokens * c.dim)),
      hidden(floats(tokens * c.hidden_dim)),
      scratch(floats(attention_scratch_floats(seq_len, c.head_dim()))),
      max_tokens(tokens),
      max_seq_len(seq_len) {}

void gpt2_forward(const Model& model, const TokenBatch& batch, Gpt2Workspace& ws, float* logits) {
  const LlamaConfig& c = model.config;
  const int64_t n = batch.n_tokens(), d = c.dim, h = c.hidden_dim;
  check_invariant(n <= ws.max_tokens, "GPT-2 workspace too small for the batch");
  const float* wte = model.data("wte");
  const float* wpe = model.data("wpe");
  for (int64_t r = 0; r < n; ++r) {
    const float* token = wte + batch.tokens[floats(r)] * d;
    const float* position = wpe + batch.positions[floats(r)] * d;
    for (int64_t i = 0; i < d; ++i) ws.x[floats(r * d + i)] = token[i] + position[i];
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string layer = "layers." + std::to_string(l) + ".";
    auto p = [&](const char* name) { return model.data(layer + name); };
    // x += c_proj(attention(c_attn(ln_1(x))))
    layernorm_rows(ws.x.data(), p("ln_1.weight"), p("ln_1.bias"), ws.xn.data(), n, d, c.norm_eps);
    matmul_nt(n, 3 * d, d, ws.xn.data(), d, p("attn.c_attn.weight"), d, ws.qkv.data(), 3 * d);
    add_bias_rows(ws.qkv.data(), p("attn.c_attn.bias"), n, 3 * d);
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t start = batch.seq_start[floats(s)], len = batch.seq_start[floats(s + 1)] - start;
      check_invariant(len <= ws.max_seq_len, "GPT-2 workspace too small for a sequence");
      const float* q = ws.qkv.data() + start * 3 * d;
      attention_causal(q, 3 * d, q + d, q + 2 * d, 3 * d, ws.att.data() + start * d, d, len, c.n_heads, c.n_heads,
                       c.head_dim(), ws.scratch.data());
    }
    matmul_nt(n, d, d, ws.att.data(), d, p("attn.c_proj.weight"), d, ws.x.data(), d, 1.0f);
    add_bias_rows(ws.x.data(), p("attn.c_proj.bias"), n, d);
    // x += mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
    layernorm_rows(ws.x.data(), p("ln_2.weight"), p("ln_2.bias"), ws.xn.data(), n, d, c.norm_eps);
    matmul_nt(n, h, d, ws.xn.data(), d, p("mlp.c_fc.weight"), d, ws.hidden.data(), h);
    add_bias_rows(ws.hidden.data(), p("mlp.c_fc.bias"), n, h);
    gelu_tanh(ws.hidden.data(), n * h);
    matmul_nt(n, d, h, ws.hidden.data(), h, p("mlp.c_proj.weight"), h, ws.x.data(), d, 1.0f);
    add_bias_rows(ws.x.data(), p("mlp.c_proj.bias"), n, d);
  }
  layernorm_rows(ws.x.data(), model.data("ln_f.weight"), model.data("ln_f.bias"), ws.xn.data(), n, d, c.norm_eps);
  matmul_nt(n, c.vocab_size, d, ws.xn.data(), d, wte, d, logits, c.vocab_size);
}

Gpt2Evaluator::Gpt2Evaluator(const Model& model, const EvalInputs& inputs, int32_t stop_id)
    : config_(model.config),
      vocab_(model.config.vocab_size),
      workspace_(model.config, capacity_tokens(checked(model.config, inputs)), capacity_seq_len(inputs)) {
  for (const auto& sequence : inputs.sequences) {
    const int64_t start = batch_.n_tokens();
    batch_.append(sequence);
    for (size_t t = 0; t + 1 < sequence.size(); ++t) {
      pred_rows_.push_back(start + static_cast<int64_t>(t));
      targets_.push_back(sequence[t + 1]);
    }
  }
  if (inputs.greedy_tokens > 0) {
    baseline_.greedy_ids = gpt2_greedy(model, inputs.greedy_prompt, inputs.greedy_tokens, stop_id);
    std::vector<int32_t> greedy_input = inputs.greedy_prompt;
    if (!baseline_.greedy_ids.empty()) {
      greedy_input.insert(greedy_input.end(), baseline_.greedy_ids.begin(), baseline_.greedy_ids.end() - 1);
    }
    greedy_first_row_ = batch_.n_tokens() + static_cast<int64_t>(inputs.greedy_prompt.size()) - 1;
    batch_.append(greedy_input);
  }
  logits_.resize(floats(batch_.n_tokens() * vocab_));
  gpt2_forward(model, batch_, workspace_, logits_.data());
  ref_probs_.resize(pred_rows_.size() * floats(vocab_));
  ref_rows_.reserve(pred_rows_.size());
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    const float* row = logits_.data() + pred_rows_[p] * vocab_;
    check_input(row_is_finite(row, vocab_), model.path + ": the unperturbed model produces non-finite logits on "
                                                         "evaluation position " + std::to_string(p));
    ref_rows_.push_back(make_reference_row(row, vocab_, ref_probs_.data() + p * floats(vocab_)));
  }
  baseline_.metrics = score();
}

TrialMetrics Gpt2Evaluator::score() const {
  MetricAccumulator accumulator;
  for (size_t p = 0; p < pred_rows_.size(); ++p) {
    accumulator.add(logits_.data() + pred_rows_[p] * vocab_, vocab_, ref_rows_[p], targets_[p]);
  }
  TrialMetrics metrics = accumulator.finish();
  const auto& greedy = baseline_.greedy_ids;
  metrics.greedy_length = static_cast<int64_t>(greedy.size());
  metrics.greedy_match = greedy.empty() ? 0
                                        : leading_matches(logits_.data() + greedy_first_row_ * vocab_, vocab_,
                                                          greedy.data(), metrics.greedy_length);
  return metrics;
}

TrialMetrics Gpt2Evaluator::evaluate(const Model& model) {
  gpt2_forward(model, batch_, workspace_, logits_.data());
  return score();
}

double Gpt2Evaluator::forward_flops() const {
  const LlamaConfig& c = config_;
  const auto n = static_cast<double>(batch_.n_tokens());
  const auto d = static_cast<double>(c.dim), h = static_cast<double>(c.hidden_dim);
  double flops = 2.0 * n * static_cast<double>(c.n_layers) * (3 * d * d + d * d + 2 * d * h);
  flops += 2.0 * n * d * static_cast<double>(c.vocab_size);
  for (int64_t s = 0; s < batch_.n_seqs(); ++s) {  // q k^T and p v over the causal triangle
    const auto len = static_cast<double>(batch_.seq_start[floats(s + 1)] - batch_.seq_start[floats(s)]);
    flops += 2.0 * static_cast<double>(c.n_layers) * len * (len + 1) * d;
  }
  return flops;
}

}  // namespace fracsweep
