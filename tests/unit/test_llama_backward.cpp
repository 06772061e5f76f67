// llama_backward.hpp / ops_backward.hpp: each backward kernel against its ref twin (and the
// rotation against its adjoint identity); the whole Llama gradient against central finite
// differences of a double-precision forward pass written here (MHA and GQA, shared and
// separate classifier, stacked sequences); the input norms against identities they must obey;
// and stories260K's d(mean NLL)/dW against the fixture computed by an independent float64
// autograd implementation.
#define BOOST_TEST_MODULE llama_backward

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/llama_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/ops_backward.hpp"
#include "gradient_checks.hpp"
#include "random_llama.hpp"
#include "shared_data.hpp"

namespace fs = fracsweep;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

using fs::test::mean_nll_objective;
using fs::test::random_floats;
using fs::test::relative_error;

// The Llama forward pass in double from `values` (laid out like model.values), returning the
// mean NLL of next-token prediction: the independent truth for finite differences.
double mean_nll_in_double(const fs::Model& model, const std::vector<double>& values,
                          const fs::TokenBatch& batch) {
  const fs::LlamaConfig& c = model.config;
  const int64_t d = c.dim, kv = c.kv_dim(), hd = c.head_dim(), hidden = c.hidden_dim,
                V = c.vocab_size;
  const auto at = [&](const std::string& name) {
    return values.data() + model.tensor(name).offset;
  };
  // y (rows, out) = x (rows, in) W^T
  const auto project = [](const std::vector<double>& x, const double* w, int64_t rows, int64_t in,
                          int64_t out) {
    std::vector<double> y(static_cast<size_t>(rows * out), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) y[r * out + o] += x[r * in + i] * w[o * in + i];
    return y;
  };
  const auto rmsnorm = [&](const std::vector<double>& x, const double* g, int64_t rows) {
    std::vector<double> y(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < d; ++i) ss += x[r * d + i] * x[r * d + i];
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + c.norm_eps);
      for (int64_t i = 0; i < d; ++i) y[r * d + i] = x[r * d + i] * inv * g[i];
    }
    return y;
  };
  const auto rope = [&](std::vector<double>& x, int64_t rows, int64_t heads, const int32_t* pos) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd; i += 2) {
          const double angle = pos[r] * std::pow(static_cast<double>(c.rope_theta),
                                                 -static_cast<double>(i) / static_cast<double>(hd));
          double* p = x.data() + r * heads * hd + h * hd + i;
          const double a = p[0], b = p[1];
          p[0] = a * std::cos(angle) - b * std::sin(angle);
          p[1] = a * std::sin(angle) + b * std::cos(angle);
        }
  };
  double nll = 0.0;
  int64_t predicted = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[s], len = batch.seq_start[s + 1] - first;
    const int32_t* tokens = batch.tokens.data() + first;
    const int32_t* positions = batch.positions.data() + first;
    std::vector<double> x(static_cast<size_t>(len * d));
    for (int64_t t = 0; t < len; ++t)
      for (int64_t i = 0; i < d; ++i) x[t * d + i] = at("tok_embeddings")[tokens[t] * d + i];
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      std::vector<double> xn = rmsnorm(x, at(p + "attn_norm"), len);
      std::vector<double> q = project(xn, at(p + "attn.wq"), len, d, d);
      std::vector<double> k = project(xn, at(p + "attn.wk"), len, d, kv);
      const std::vector<double> v = project(xn, at(p + "attn.wv"), len, d, kv);
      rope(q, len, c.n_heads, positions);
      rope(k, len, c.n_kv_heads, positions);
      std::vector<double> att(static_cast<size_t>(len * d), 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t kvh = h / (c.n_heads / c.n_kv_heads);
        for (int64_t t = 0; t < len; ++t) {
          std::vector<double> w(static_cast<size_t>(t + 1));
          double largest = -INFINITY, sum = 0.0;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0.0;
            for (int64_t e = 0; e < hd; ++e)
              dot += q[t * d + h * hd + e] * k[j * kv + kvh * hd + e];
            w[j] = dot / std::sqrt(static_cast<double>(hd));
            largest = std::max(largest, w[j]);
          }
          for (double& value : w) sum += (value = std::exp(value - largest));
          for (int64_t j = 0; j <= t; ++j)
            for (int64_t e = 0; e < hd; ++e)
              att[t * d + h * hd + e] += w[j] / sum * v[j * kv + kvh * hd + e];
        }
      }
      const std::vector<double> o = project(att, at(p + "attn.wo"), len, d, d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      xn = rmsnorm(x, at(p + "ffn_norm"), len);
      std::vector<double> a = project(xn, at(p + "ffn.w1"), len, d, hidden);
      const std::vector<double> b = project(xn, at(p + "ffn.w3"), len, d, hidden);
      for (size_t i = 0; i < a.size(); ++i) a[i] = a[i] / (1.0 + std::exp(-a[i])) * b[i];
      const std::vector<double> f = project(a, at(p + "ffn.w2"), len, hidden, d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += f[i];
    }
    const std::vector<double> xf = rmsnorm(x, at("norm_final"), len);
    const std::vector<double> logits =
        project(xf, at(c.shared_classifier ? "tok_embeddings" : "output"), len, d, V);
    for (int64_t t = 0; t + 1 < len; ++t) {
      const double* row = logits.data() + t * V;
      const double largest = *std::max_element(row, row + V);
      double sum = 0.0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - largest);
      nll += largest + std::log(sum) - row[tokens[t + 1]];
      ++predicted;
    }
  }
  return nll / static_cast<double>(predicted);
}

fs::TokenBatch two_sequences(int64_t vocab) {
  fs::TokenBatch batch;
  batch.append(fs::test::random_tokens(7, vocab, 11));
  batch.append(fs::test::random_tokens(5, vocab, 12));
  return batch;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rmsnorm_backward_matches_reference) {
  const int64_t rows = 7, d = 37;
  const std::vector<float> x = random_floats(rows * d, 1), weight = random_floats(d, 2),
                           dout = random_floats(rows * d, 3), initial = random_floats(rows * d, 4);
  std::vector<float> dx_fast = initial, dx_plain = initial;
  std::vector<double> dw_fast(d, 0.5), dw_plain(d, 0.5);
  fs::rmsnorm_rows_backward(x.data(), weight.data(), dout.data(), dx_fast.data(), dw_fast.data(),
                            rows, d, 1e-5f);
  fs::ref::rmsnorm_rows_backward(x.data(), weight.data(), dout.data(), dx_plain.data(),
                                 dw_plain.data(), rows, d, 1e-5f);
  BOOST_TEST(relative_error(dx_fast, dx_plain) < 1e-5);
  BOOST_TEST(relative_error(dw_fast, dw_plain) < 1e-5);
  BOOST_TEST(relative_error(dx_plain, initial) > 1e-2);  // it really accumulated something
}

BOOST_AUTO_TEST_CASE(rope_backward_is_the_adjoint_rotation) {
  const int64_t rows = 5, heads = 3, hd = 8, width = heads * hd;
  const std::vector<int32_t> positions = {0, 3, 1, 7, 15};
  std::vector<float> table(16 * hd);
  fs::rope_table(16, hd, 10000.0f, table.data());
  const std::vector<float> x = random_floats(rows * width, 5), y = random_floats(rows * width, 6);
  std::vector<float> rotated = x, back_fast = y, back_plain = y;
  fs::rope_rows(rotated.data(), positions.data(), table.data(), rows, heads, hd);
  fs::rope_rows_backward(back_fast.data(), positions.data(), table.data(), rows, heads, hd);
  fs::ref::rope_rows_backward(back_plain.data(), positions.data(), rows, heads, hd, 10000.0f);
  BOOST_TEST(relative_error(back_fast, back_plain) < 1e-5);
  double lhs = 0.0, rhs = 0.0;  // <R x, y> = <x, R^T y>
  for (size_t i = 0; i < x.size(); ++i) {
    lhs += static_cast<double>(rotated[i]) * y[i];
    rhs += static_cast<double>(x[i]) * back_fast[i];
  }
  BOOST_TEST(std::abs(lhs - rhs) < 1e-4 * std::abs(lhs) + 1e-5);
}

BOOST_AUTO_TEST_CASE(swiglu_backward_matches_reference_and_finite_differences) {
  const int64_t n = 301;
  std::vector<float> gate = random_floats(n, 7, 6.0f);
  gate[0] = -100.0f;  // saturated sigmoid
  const std::vector<float> up = random_floats(n, 8), dh = random_floats(n, 9);
  std::vector<float> dgate(n), dup(n), dgate_ref(n), dup_ref(n);
  fs::swiglu_backward(gate.data(), up.data(), dh.data(), dgate.data(), dup.data(), n);
  fs::ref::swiglu_backward(gate.data(), up.data(), dh.data(), dgate_ref.data(), dup_ref.data(), n);
  BOOST_TEST(relative_error(dgate, dgate_ref) < 1e-5);
  BOOST_TEST(relative_error(dup, dup_ref) < 1e-5);
  for (int64_t i = 0; i < n; ++i) {  // d/dg of dh * g sigmoid(g) * up, in double
    const auto h = [&](double g) { return dh[i] * g / (1.0 + std::exp(-g)) * up[i]; };
    const double fd = (h(gate[i] + 1e-6) - h(gate[i] - 1e-6)) / 2e-6;
    BOOST_TEST(std::abs(dgate_ref[i] - fd) < 1e-5 * std::max(1.0, std::abs(fd)), "element " << i);
  }
}

BOOST_AUTO_TEST_CASE(attention_backward_matches_reference) {
  // GQA (6 heads on 2 kv heads), q/k/v interleaved in one (len, 3 * 48) buffer as GPT-2 lays
  // them out, and dq/dk/dv written into one such buffer.
  const int64_t len = 13, heads = 6, kv_heads = 2, hd = 8, width = heads * hd, kv = kv_heads * hd;
  const int64_t stride = width + 2 * kv;
  const std::vector<float> qkv = random_floats(len * stride, 10, 2.0f),
                           dout = random_floats(len * width, 11);
  std::vector<float> grads(len * stride, 7.0f), grads_ref(len * stride, 7.0f);
  std::vector<float> scratch(fs::attention_backward_scratch_floats(len, hd));
  fs::attention_causal_backward(qkv.data(), stride, qkv.data() + width, qkv.data() + width + kv,
                                stride, dout.data(), width, grads.data(), stride,
                                grads.data() + width, grads.data() + width + kv, stride, len, heads,
                                kv_heads, hd, scratch.data());
  fs::ref::attention_causal_backward(
      qkv.data(), stride, qkv.data() + width, qkv.data() + width + kv, stride, dout.data(), width,
      grads_ref.data(), stride, grads_ref.data() + width, grads_ref.data() + width + kv, stride,
      len, heads, kv_heads, hd);
  BOOST_TEST(relative_error(grads, grads_ref) < 1e-5);
  // The last key and value only receive gradient from the last query; the first from all.
  BOOST_TEST(std::count(grads.begin(), grads.end(), 7.0f) == 0);
}

BOOST_AUTO_TEST_CASE(gradient_matches_double_precision_finite_differences) {
  struct Case {
    const char* name;
    fs::LlamaConfig config;
  };
  for (const Case& test_case :
       {Case{"MHA, shared classifier", fs::test::config_of(8, 12, 2, 2, 2, 11, true)},
        Case{"GQA, separate classifier", fs::test::config_of(16, 20, 2, 4, 2, 13, false)}}) {
    const fs::Model model = fs::test::random_model(test_case.config, 3);
    const fs::TokenBatch batch = two_sequences(test_case.config.vocab_size);
    std::vector<float> grad(model.values.size(), 123.0f);
    std::vector<float> logits_seen;
    std::vector<float> arena(3, std::nanf(""));  // grown by the call; stale values must not matter
    const fs::LogitObjective nll = mean_nll_objective(batch);
    const double value = fs::llama_gradient(
        model, batch,
        [&](const float* logits, int64_t rows, int64_t vocab, float* dlogits) {
          logits_seen.assign(logits, logits + rows * vocab);
          return nll(logits, rows, vocab, dlogits);
        },
        fs::GradientOutputs{grad.data(), nullptr}, arena);
    // The objective sees exactly llama_forward's logits.
    fs::LlamaWorkspace workspace(model.config, batch.n_tokens(), model.config.seq_len);
    std::vector<float> logits(logits_seen.size());
    fs::llama_forward(model, batch, workspace, logits.data());
    BOOST_TEST((logits == logits_seen), test_case.name);

    std::vector<double> values(model.values.begin(), model.values.end());
    BOOST_TEST(std::abs(value - mean_nll_in_double(model, values, batch)) < 1e-5 * value);
    const double h = 1e-5;
    for (const fs::TensorInfo& tensor : model.tensors) {
      std::vector<double> fd(static_cast<size_t>(tensor.count));
      for (int64_t i = 0; i < tensor.count; ++i) {
        double& w = values[static_cast<size_t>(tensor.offset + i)];
        const double saved = w;
        w = saved + h;
        const double up = mean_nll_in_double(model, values, batch);
        w = saved - h;
        const double down = mean_nll_in_double(model, values, batch);
        w = saved;
        fd[static_cast<size_t>(i)] = (up - down) / (2.0 * h);
      }
      const std::vector<float> got(grad.begin() + tensor.offset,
                                   grad.begin() + tensor.offset + tensor.count);
      double diff2 = 0.0, norm2 = 0.0;
      for (size_t i = 0; i < fd.size(); ++i) {
        diff2 += (got[i] - fd[i]) * (got[i] - fd[i]);
        norm2 += fd[i] * fd[i];
      }
      BOOST_TEST(norm2 > 0.0, test_case.name << " " << tensor.name << ": gradient is zero");
      BOOST_TEST(std::sqrt(diff2 / norm2) < 1e-3, test_case.name << " " << tensor.name
                                                                 << ": relative L2 error "
                                                                 << std::sqrt(diff2 / norm2));
      BOOST_TEST(relative_error(got, fd) < 1e-3, test_case.name << " " << tensor.name
                                                                << ": max error / max |g| "
                                                                << relative_error(got, fd));
    }
  }
}

BOOST_AUTO_TEST_CASE(input_norms_obey_their_identities) {
  const fs::LlamaConfig config = fs::test::config_of(16, 20, 2, 4, 2, 13, false);
  const fs::Model model = fs::test::random_model(config, 4);
  const fs::TokenBatch batch = two_sequences(config.vocab_size);
  std::vector<float> norms(model.values.size(), -1.0f);
  std::vector<float> arena;
  fs::llama_gradient(model, batch, mean_nll_objective(batch),
                     fs::GradientOutputs{nullptr, norms.data()}, arena);
  const auto tensor = [&](const std::string& name) {
    return norms.data() + model.tensor(name).offset;
  };
  // Embedding rows: sqrt(number of lookups of the token).
  std::map<int32_t, int> lookups;
  for (const int32_t token : batch.tokens) ++lookups[token];
  for (int32_t t = 0; t < config.vocab_size; ++t) {
    BOOST_TEST(tensor("tok_embeddings")[t * config.dim + 3] ==
               std::sqrt(static_cast<float>(lookups[t])));
  }
  const double rows = static_cast<double>(batch.n_tokens());
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    // A normalised row has mean square 1 (up to eps): the gain's squared norms sum to rows * dim.
    double gain_sum = 0.0;
    for (int64_t i = 0; i < config.dim; ++i) gain_sum += std::pow(tensor(p + "attn_norm")[i], 2.0);
    BOOST_TEST(std::abs(gain_sum - rows * static_cast<double>(config.dim)) <
               1e-3 * rows * static_cast<double>(config.dim));
    // wq's input is the normalised row times the gain: column i's norm is |gain_i| times the
    // gain's own input norm, the same for every output row.
    const float* gain = model.values.data() + model.tensor(p + "attn_norm").offset;
    for (int64_t o = 0; o < config.dim; ++o) {
      for (int64_t i = 0; i < config.dim; ++i) {
        const double want = std::abs(gain[i]) * tensor(p + "attn_norm")[i];
        BOOST_TEST(std::abs(tensor(p + "attn.wq")[o * config.dim + i] - want) < 1e-4 * want);
        BOOST_TEST(tensor(p + "attn.wk")[(o % config.kv_dim()) * config.dim + i] ==
                   tensor(p + "attn.wq")[o * config.dim + i]);
      }
    }
  }
  BOOST_TEST(std::count(norms.begin(), norms.end(), -1.0f) == 0);  // every entry written
}

BOOST_AUTO_TEST_CASE(stories260k_gradient_matches_fixture,
                     *boost::unit_test::precondition(fs::test::needs_shared())) {
  const fs::Model model =
      fs::load_llama2c(fs::test::shared_file("models/stories260K/stories260K.bin"));
  const fs::test::Fixture fixture("fixtures/stories260K/grad.json");
  const fs::Tokenizer tokenizer = fs::Tokenizer::load_llama2c(
      fs::test::shared_file("models/stories260K/tok512.bin"), model.config.vocab_size);
  const std::string eval_text = fs::test::shared_file("data/tinystories/tinystories_val.txt");
  fs::TokenBatch batch;
  const auto paragraphs = fs::read_paragraphs(eval_text, 50);
  for (const auto& sequence :
       fs::encode_paragraphs(tokenizer, paragraphs, model.config.seq_len, eval_text)) {
    batch.append(sequence);
  }
  BOOST_TEST(batch.n_tokens() - batch.n_seqs() == fixture.number("tokens"));
  std::vector<float> grad(model.values.size());
  std::vector<float> arena;
  const double nll = fs::llama_gradient(model, batch, mean_nll_objective(batch),
                                        fs::GradientOutputs{grad.data(), nullptr}, arena);
  // A second call reuses the arena (whatever the first left in it) and gives the same bits.
  std::vector<float> again(model.values.size());
  fs::llama_gradient(model, batch, mean_nll_objective(batch),
                     fs::GradientOutputs{again.data(), nullptr}, arena);
  BOOST_TEST((again == grad));
  BOOST_TEST(std::abs(nll - fixture.number("mean_nll")) < 1e-4 * fixture.number("mean_nll"));

  // The fixture's tensors are llama2.c's stacked ones: (L, ...) per layer, offsets row-major.
  const std::map<std::string, std::string> per_layer = {
      {"rms_att", "attn_norm"}, {"wq", "attn.wq"}, {"wk", "attn.wk"},
      {"wv", "attn.wv"},        {"wo", "attn.wo"}, {"rms_ffn", "ffn_norm"},
      {"w1", "ffn.w1"},         {"w2", "ffn.w2"},  {"w3", "ffn.w3"}};
  const std::map<std::string, std::string> whole = {{"tok_embeddings", "tok_embeddings"},
                                                    {"rms_final", "norm_final"}};
  const auto gradient_at = [&](const std::string& stacked, int64_t offset) -> double {
    if (whole.count(stacked)) return grad[model.tensor(whole.at(stacked)).offset + offset];
    const std::string name = per_layer.at(stacked);
    const int64_t layer_size = model.tensor("layers.0." + name).count;
    const fs::TensorInfo& info =
        model.tensor("layers." + std::to_string(offset / layer_size) + "." + name);
    return grad[static_cast<size_t>(info.offset + offset % layer_size)];
  };
  double worst_top = 0.0, worst_fixed = 0.0;
  for (const auto* names : {&per_layer, &whole}) {
    for (const auto& [stacked, ours] : *names) {
      const std::string key = "tensors." + stacked + ".";
      int64_t numel = 1;
      for (int i = 0; i < fixture.number(key + "shape#"); ++i)
        numel *= static_cast<int64_t>(fixture.number(key + "shape." + std::to_string(i)));
      double norm2 = 0.0, max_abs = 0.0;
      for (int64_t i = 0; i < numel; ++i) {
        norm2 += gradient_at(stacked, i) * gradient_at(stacked, i);
        max_abs = std::max(max_abs, std::abs(gradient_at(stacked, i)));
      }
      const double want_norm = fixture.number(key + "l2_norm"),
                   want_max = fixture.number(key + "max_abs");
      BOOST_TEST(std::abs(std::sqrt(norm2) - want_norm) < 1e-3 * want_norm,
                 stacked << " l2 norm " << std::sqrt(norm2) << " vs " << want_norm);
      BOOST_TEST(std::abs(max_abs - want_max) < 1e-3 * want_max,
                 stacked << " max |g| " << max_abs << " vs " << want_max);
      for (int i = 0; i < 5; ++i) {
        const std::string entry = key + "top5." + std::to_string(i) + ".";
        const double want = fixture.number(entry + "grad");
        const double got =
            gradient_at(stacked, static_cast<int64_t>(fixture.number(entry + "offset")));
        BOOST_TEST(std::abs(got - want) < 1e-3 * std::abs(want),
                   stacked << " top entry " << i << ": " << got << " vs " << want);
        worst_top = std::max(worst_top, std::abs(got - want) / std::abs(want));
        // Fixed offsets include entries near 1e-11, below float resolution of the sums that
        // make them: those are held to 1e-3 of the tensor's largest entry.
        const std::string fixed = key + "fixed." + std::to_string(i) + ".";
        const double want_fixed = fixture.number(fixed + "grad");
        const double got_fixed =
            gradient_at(stacked, static_cast<int64_t>(fixture.number(fixed + "offset")));
        BOOST_TEST(
            std::abs(got_fixed - want_fixed) < 1e-3 * std::max(std::abs(want_fixed), want_max),
            stacked << " fixed entry " << i << ": " << got_fixed << " vs " << want_fixed);
        worst_fixed = std::max(worst_fixed, std::abs(got_fixed - want_fixed) / want_max);
      }
    }
  }
  BOOST_TEST_MESSAGE("stories260K gradient vs fixture: worst top-5 relative error "
                     << worst_top << ", worst fixed-offset error / max|g| " << worst_fixed);
}
