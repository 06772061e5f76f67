// gpt2_backward.hpp / gpt2_ops_backward.hpp: each GPT-2 backward kernel against its ref twin
// (and GELU's and LayerNorm's against finite differences); the whole GPT-2 gradient against
// central finite differences of a double-precision forward pass written here (every entry of
// every tensor, tiny random models, stacked sequences); the input norms against the inputs that
// forward pass saw; and, on a larger model, the gradient's directional derivative (with the
// gradient pass's time against the forward pass's).
#define BOOST_TEST_MODULE gpt2_backward

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/gpt2.hpp"
#include "fracsweep/nn/gpt2_backward.hpp"
#include "fracsweep/nn/gpt2_ops_backward.hpp"
#include "gradient_checks.hpp"
#include "random_gpt2.hpp"
#include "random_llama.hpp"

namespace fs = fracsweep;

namespace {

struct BlisSetUp {
  BlisSetUp() { fs::gemm_init(fs::GemmSetup{}); }
};
BOOST_TEST_GLOBAL_FIXTURE(BlisSetUp);

using fs::test::mean_nll_objective;
using fs::test::random_floats;
using fs::test::relative_error;

// Squared column norms of the inputs a pass fed each weight and gain, by tensor name (the
// gains' input being the normalised, pre-gain rows; wte's its input as the head).
using ColumnSquares = std::map<std::string, std::vector<double>>;

// The GPT-2 forward pass in double from `values` (laid out like model.values, gpt2.hpp's
// tensors), returning the mean NLL of next-token prediction: the independent truth for finite
// differences. Adds what each tensor's input was to `seen` when given.
double mean_nll_in_double(const fs::Model& model, const std::vector<double>& values,
                          const fs::TokenBatch& batch, ColumnSquares* seen = nullptr) {
  const fs::LlamaConfig& c = model.config;
  const int64_t d = c.dim, hd = c.head_dim(), hidden = c.hidden_dim, V = c.vocab_size;
  const auto at = [&](const std::string& name) {
    return values.data() + model.tensor(name).offset;
  };
  const auto record = [&](const std::string& name, const std::vector<double>& x, int64_t rows,
                          int64_t cols) {
    if (seen == nullptr) return;
    std::vector<double>& sums = (*seen)[name];
    sums.resize(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < cols; ++i) sums[i] += x[r * cols + i] * x[r * cols + i];
  };
  // y (rows, out) = x (rows, in) W^T + b for weight `name` (out, in) and its bias.
  const auto linear = [&](const std::vector<double>& x, const std::string& name, int64_t rows,
                          int64_t in, int64_t out) {
    record(name + ".weight", x, rows, in);
    const double* w = at(name + ".weight");
    const double* b = at(name + ".bias");
    std::vector<double> y(static_cast<size_t>(rows * out));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double sum = b[o];
        for (int64_t i = 0; i < in; ++i) sum += x[r * in + i] * w[o * in + i];
        y[r * out + o] = sum;
      }
    return y;
  };
  const auto layernorm = [&](const std::vector<double>& x, const std::string& name, int64_t rows) {
    std::vector<double> xhat(x.size()), y(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0.0, variance = 0.0;
      for (int64_t i = 0; i < d; ++i) mean += x[r * d + i];
      mean /= static_cast<double>(d);
      for (int64_t i = 0; i < d; ++i) variance += (x[r * d + i] - mean) * (x[r * d + i] - mean);
      variance /= static_cast<double>(d);
      for (int64_t i = 0; i < d; ++i)
        xhat[r * d + i] = (x[r * d + i] - mean) / std::sqrt(variance + c.norm_eps);
    }
    record(name + ".weight", xhat, rows, d);
    const double* g = at(name + ".weight");
    const double* b = at(name + ".bias");
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < d; ++i) y[r * d + i] = xhat[r * d + i] * g[i] + b[i];
    return y;
  };
  double nll = 0.0;
  int64_t predicted = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    const int64_t first = batch.seq_start[s], len = batch.seq_start[s + 1] - first;
    const int32_t* tokens = batch.tokens.data() + first;
    const int32_t* positions = batch.positions.data() + first;
    std::vector<double> x(static_cast<size_t>(len * d));
    for (int64_t t = 0; t < len; ++t)
      for (int64_t i = 0; i < d; ++i)
        x[t * d + i] = at("wte")[tokens[t] * d + i] + at("wpe")[positions[t] * d + i];
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      const std::vector<double> qkv =
          linear(layernorm(x, p + "ln_1", len), p + "attn.c_attn", len, d, 3 * d);
      std::vector<double> att(static_cast<size_t>(len * d), 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        for (int64_t t = 0; t < len; ++t) {
          std::vector<double> w(static_cast<size_t>(t + 1));
          double largest = -INFINITY, sum = 0.0;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0.0;
            for (int64_t e = 0; e < hd; ++e)
              dot += qkv[t * 3 * d + h * hd + e] * qkv[j * 3 * d + d + h * hd + e];
            w[j] = dot / std::sqrt(static_cast<double>(hd));
            largest = std::max(largest, w[j]);
          }
          for (double& value : w) sum += (value = std::exp(value - largest));
          for (int64_t j = 0; j <= t; ++j)
            for (int64_t e = 0; e < hd; ++e)
              att[t * d + h * hd + e] += w[j] / sum * qkv[j * 3 * d + 2 * d + h * hd + e];
        }
      }
      const std::vector<double> o = linear(att, p + "attn.c_proj", len, d, d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      std::vector<double> a = linear(layernorm(x, p + "ln_2", len), p + "mlp.c_fc", len, d, hidden);
      for (double& v : a)
        v = 0.5 * v *
            (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
      const std::vector<double> f = linear(a, p + "mlp.c_proj", len, hidden, d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += f[i];
    }
    const std::vector<double> xf = layernorm(x, "ln_f", len);
    record("wte", xf, len, d);
    const double* wte = at("wte");
    for (int64_t t = 0; t + 1 < len; ++t) {
      std::vector<double> row(static_cast<size_t>(V), 0.0);
      for (int64_t v = 0; v < V; ++v)
        for (int64_t i = 0; i < d; ++i) row[v] += xf[t * d + i] * wte[v * d + i];
      const double largest = *std::max_element(row.begin(), row.end());
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - largest);
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

// n_embd, n_layer, n_head, n_positions, vocab, n_inner.
fs::test::Gpt2Shape shape_of(int64_t embd, int64_t layers, int64_t heads, int64_t positions,
                             int64_t vocab, int64_t inner) {
  return {embd, layers, heads, positions, vocab, inner};
}

}  // namespace

BOOST_AUTO_TEST_CASE(layernorm_backward_matches_reference_and_finite_differences) {
  const int64_t rows = 7, d = 37;
  std::vector<float> x = random_floats(rows * d, 1, 2.0f);
  for (int64_t i = 0; i < d; ++i) x[i] = 3.0f + 1e-3f * x[i];  // a row of small variance
  const std::vector<float> weight = random_floats(d, 2), dout = random_floats(rows * d, 3),
                           initial = random_floats(rows * d, 4);
  std::vector<float> dx_fast = initial, dx_plain = initial;
  std::vector<double> dw_fast(d, 0.5), dw_plain(d, 0.5), db_fast(d, -0.25), db_plain(d, -0.25);
  fs::layernorm_rows_backward(x.data(), weight.data(), dout.data(), dx_fast.data(), dw_fast.data(),
                              db_fast.data(), rows, d, 1e-5f);
  fs::ref::layernorm_rows_backward(x.data(), weight.data(), dout.data(), dx_plain.data(),
                                   dw_plain.data(), db_plain.data(), rows, d, 1e-5f);
  BOOST_TEST(relative_error(dx_fast, dx_plain) < 1e-5);
  BOOST_TEST(relative_error(dw_fast, dw_plain) < 1e-5);
  BOOST_TEST(relative_error(db_fast, db_plain) < 1e-6);
  BOOST_TEST(relative_error(dx_plain, initial) > 1e-2);  // it really accumulated something
  // The ref twin against central differences of sum_i dout_i layernorm(x)_i, in double.
  for (int64_t r : {int64_t{0}, int64_t{4}}) {
    const auto objective = [&](std::vector<double> row) {
      double mean = 0.0, variance = 0.0;
      for (double v : row) mean += v;
      mean /= static_cast<double>(d);
      for (double v : row) variance += (v - mean) * (v - mean);
      variance /= static_cast<double>(d);
      double total = 0.0;
      for (int64_t i = 0; i < d; ++i)
        total += dout[r * d + i] * ((row[i] - mean) / std::sqrt(variance + 1e-5) * weight[i]);
      return total;
    };
    const std::vector<double> row(x.begin() + r * d, x.begin() + (r + 1) * d);
    std::vector<double> fd(static_cast<size_t>(d)), got(static_cast<size_t>(d));
    const double h = r == 0 ? 1e-8 : 1e-6;  // row 0's scale is 1e-3 of the others'
    for (int64_t j = 0; j < d; ++j) {
      std::vector<double> up = row, down = row;
      up[j] += h;
      down[j] -= h;
      fd[j] = (objective(up) - objective(down)) / (2.0 * h);
      got[j] = static_cast<double>(dx_plain[r * d + j]) - initial[r * d + j];
    }
    BOOST_TEST(relative_error(got, fd) < 1e-5, "row " << r);
  }
}

BOOST_AUTO_TEST_CASE(gelu_backward_matches_reference_and_finite_differences) {
  const int64_t n = 301;
  std::vector<float> x = random_floats(n, 7, 6.0f);
  x[0] = -30.0f;  // saturated: slope 0
  x[1] = 30.0f;   // saturated: slope 1
  const std::vector<float> dy = random_floats(n, 8);
  std::vector<float> dx(n), dx_ref(n), in_place = dy;
  fs::gelu_tanh_backward(x.data(), dy.data(), dx.data(), n);
  fs::ref::gelu_tanh_backward(x.data(), dy.data(), dx_ref.data(), n);
  fs::gelu_tanh_backward(x.data(), in_place.data(), in_place.data(), n);
  BOOST_TEST(relative_error(dx, dx_ref) < 1e-5);
  BOOST_TEST((in_place == dx));  // dx may alias dy
  BOOST_TEST(dx[0] == 0.0f);
  BOOST_TEST(dx[1] == dy[1]);
  for (int64_t i = 0; i < n; ++i) {  // d/dx of dy * gelu(x), in double
    const auto y = [&](double v) {
      return dy[i] * 0.5 * v *
             (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
    };
    const double fd = (y(x[i] + 1e-6) - y(x[i] - 1e-6)) / 2e-6;
    BOOST_TEST(std::abs(dx_ref[i] - fd) < 1e-5 * std::max(1.0, std::abs(fd)), "element " << i);
  }
}

BOOST_AUTO_TEST_CASE(bias_backward_sums_columns) {
  const int64_t rows = 9, d = 13;
  const std::vector<float> dy = random_floats(rows * d, 9);
  std::vector<double> sums(d, 1.0), sums_ref(d, 1.0);
  fs::add_bias_rows_backward(dy.data(), rows, d, sums.data());
  fs::ref::add_bias_rows_backward(dy.data(), rows, d, sums_ref.data());
  BOOST_TEST(relative_error(sums, sums_ref) < 1e-12);
  double column_3 = 1.0;
  for (int64_t r = 0; r < rows; ++r) column_3 += dy[r * d + 3];
  BOOST_TEST(std::abs(sums_ref[3] - column_3) < 1e-12);
}

BOOST_AUTO_TEST_CASE(gradient_matches_double_precision_finite_differences) {
  struct Case {
    const char* name;
    fs::test::Gpt2Shape shape;
  };
  for (const Case& test_case :
       {Case{"2 layers, n_inner 12", shape_of(8, 2, 2, 16, 11, 12)},
        Case{"1 layer, 4 heads, n_inner 4 n_embd", shape_of(16, 1, 4, 12, 13, 64)}}) {
    const fs::Model model =
        fs::test::gpt2_model(fs::test::random_gpt2(3, test_case.shape), test_case.shape);
    const fs::TokenBatch batch = two_sequences(test_case.shape.vocab);
    std::vector<float> grad(model.values.size(), 123.0f);
    std::vector<float> logits_seen;
    std::vector<float> arena(3, std::nanf(""));  // grown by the call; stale values must not matter
    const fs::LogitObjective nll = mean_nll_objective(batch);
    const double value = fs::gpt2_gradient(
        model, batch,
        [&](const float* logits, int64_t rows, int64_t vocab, float* dlogits) {
          logits_seen.assign(logits, logits + rows * vocab);
          return nll(logits, rows, vocab, dlogits);
        },
        fs::GradientOutputs{grad.data(), nullptr}, arena);
    // The objective sees exactly gpt2_forward's logits.
    fs::Gpt2Workspace workspace(model.config, batch.n_tokens(), model.config.seq_len);
    std::vector<float> logits(logits_seen.size());
    fs::gpt2_forward(model, batch, workspace, logits.data());
    BOOST_TEST((logits == logits_seen), test_case.name);

    std::vector<double> values(model.values.begin(), model.values.end());
    BOOST_TEST(std::abs(value - mean_nll_in_double(model, values, batch)) < 1e-5 * value);
    const double h = 1e-5;
    double worst_l2 = 0.0, worst_max = 0.0;
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
      worst_l2 = std::max(worst_l2, std::sqrt(diff2 / norm2));
      worst_max = std::max(worst_max, relative_error(got, fd));
      BOOST_TEST(std::sqrt(diff2 / norm2) < 1e-3, test_case.name << " " << tensor.name
                                                                 << ": relative L2 error "
                                                                 << std::sqrt(diff2 / norm2));
      BOOST_TEST(relative_error(got, fd) < 1e-3, test_case.name << " " << tensor.name
                                                                << ": max error / max |g| "
                                                                << relative_error(got, fd));
    }
    BOOST_TEST_MESSAGE(test_case.name << ": worst relative L2 error " << worst_l2
                                      << ", worst max error / max |fd| " << worst_max);
    // Positions no sequence reaches get exactly zero.
    const fs::TensorInfo& wpe = model.tensor("wpe");
    BOOST_TEST(std::all_of(grad.begin() + wpe.offset + 7 * test_case.shape.n_embd,
                           grad.begin() + wpe.offset + wpe.count,
                           [](float g) { return g == 0.0f; }));
  }
}

BOOST_AUTO_TEST_CASE(input_norms_are_the_norms_of_what_each_tensor_multiplies) {
  const fs::test::Gpt2Shape shape = shape_of(16, 2, 4, 12, 13, 24);
  const fs::Model model = fs::test::gpt2_model(fs::test::random_gpt2(4, shape), shape);
  const fs::TokenBatch batch = two_sequences(shape.vocab);
  std::vector<float> norms(model.values.size(), -1.0f), grad(model.values.size()),
      grad_alone(model.values.size());
  std::vector<float> arena;
  fs::gpt2_gradient(model, batch, mean_nll_objective(batch),
                    fs::GradientOutputs{grad.data(), norms.data()}, arena);
  BOOST_TEST(std::count(norms.begin(), norms.end(), -1.0f) == 0);  // every entry written
  fs::gpt2_gradient(model, batch, mean_nll_objective(batch),
                    fs::GradientOutputs{grad_alone.data(), nullptr}, arena);
  BOOST_TEST((grad == grad_alone));  // the norms do not change the gradient

  ColumnSquares seen;
  const std::vector<double> values(model.values.begin(), model.values.end());
  mean_nll_in_double(model, values, batch, &seen);
  const auto rows = static_cast<double>(batch.n_tokens());
  std::map<int64_t, double> token_lookups, position_lookups;
  for (const int32_t token : batch.tokens) ++token_lookups[token];
  for (const int32_t position : batch.positions) ++position_lookups[position];
  double worst = 0.0;
  for (const fs::TensorInfo& tensor : model.tensors) {
    const float* got = norms.data() + tensor.offset;
    const int64_t cols = tensor.shape.back(), rows_out = tensor.count / cols;
    const bool is_bias = tensor.name.ends_with(".bias");
    BOOST_TEST((is_bias || seen.count(tensor.name) || tensor.name == "wpe"),
               tensor.name << " was never an input");
    for (int64_t o = 0; o < rows_out; ++o) {
      for (int64_t i = 0; i < cols; ++i) {
        double want = 0.0;
        if (is_bias) {  // biases and LayerNorm shifts multiply 1 in every row
          want = std::sqrt(rows);
        } else if (tensor.name == "wpe") {
          want = std::sqrt(position_lookups[o]);
        } else {  // weights (every output row alike), gains, and wte as head plus its lookups
          want = std::sqrt(seen[tensor.name][static_cast<size_t>(i)] +
                           (tensor.name == "wte" ? token_lookups[o] : 0.0));
        }
        const double error = std::abs(got[o * cols + i] - want) / std::max(want, 1e-30);
        worst = std::max(worst, error);
        BOOST_TEST(error < 1e-4, tensor.name << " (" << o << ", " << i << "): " << got[o * cols + i]
                                             << " vs " << want);
      }
    }
  }
  BOOST_TEST_MESSAGE("input norms vs the double forward's inputs: worst relative error " << worst);
  // Identities: a normalised row has mean square var / (var + eps) ~ 1, so a gain's squared input
  // norms sum to about rows * n_embd; a weight's norms are the same for every output row.
  for (const std::string gain : {"layers.0.ln_1.weight", "layers.1.ln_2.weight", "ln_f.weight"}) {
    double sum = 0.0;
    for (int64_t i = 0; i < shape.n_embd; ++i)
      sum += std::pow(norms[model.tensor(gain).offset + i], 2.0);
    BOOST_TEST(std::abs(sum / (rows * static_cast<double>(shape.n_embd)) - 1.0) < 1e-3, gain);
  }
  const fs::TensorInfo& c_attn = model.tensor("layers.1.attn.c_attn.weight");
  for (int64_t o = 1; o < 3 * shape.n_embd; ++o) {
    BOOST_TEST(std::equal(norms.begin() + c_attn.offset,
                          norms.begin() + c_attn.offset + shape.n_embd,
                          norms.begin() + c_attn.offset + o * shape.n_embd));
  }
}

BOOST_AUTO_TEST_CASE(larger_model_directional_derivative_and_speed) {
  // 4 layers of width 128 over two sequences of 64 tokens: the derivative along the gradient
  // against the central difference of the double forward along it; the time of one gradient
  // pass against one forward pass (reported, not checked).
  const fs::test::Gpt2Shape shape = shape_of(128, 4, 4, 128, 512, 512);
  const fs::Model model = fs::test::gpt2_model(fs::test::random_gpt2(5, shape), shape);
  fs::TokenBatch batch;
  batch.append(fs::test::random_tokens(64, shape.vocab, 21));
  batch.append(fs::test::random_tokens(64, shape.vocab, 22));
  std::vector<float> grad(model.values.size());
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> arena;
  const double value = fs::gpt2_gradient(model, batch, mean_nll_objective(batch),
                                         fs::GradientOutputs{grad.data(), nullptr}, arena);
  const auto gradient_done = std::chrono::steady_clock::now();
  fs::Gpt2Workspace workspace(model.config, batch.n_tokens(), shape.n_positions);
  std::vector<float> logits(static_cast<size_t>(batch.n_tokens() * shape.vocab));
  fs::gpt2_forward(model, batch, workspace, logits.data());
  const auto forward_done = std::chrono::steady_clock::now();
  const double gradient_seconds = std::chrono::duration<double>(gradient_done - start).count();
  const double forward_seconds =
      std::chrono::duration<double>(forward_done - gradient_done).count();
  BOOST_TEST_MESSAGE("GPT-2 " << model.n_parameters() << " parameters, " << batch.n_tokens()
                              << " tokens: gradient " << gradient_seconds << " s, forward "
                              << forward_seconds << " s, ratio "
                              << gradient_seconds / forward_seconds << " (FLOP ratio "
                              << fs::gpt2_gradient_flops(model.config, batch) /
                                     fs::gpt2_forward_flops(model.config, batch)
                              << ")");

  // Along the unit vector u = g / |g| the derivative is g . u = |g|; were the computed gradient
  // g' wrong, the difference would instead measure g . g' / |g'|, off |g'| by (g' - g) . g' / |g'|.
  double norm2 = 0.0;
  for (const float g : grad) norm2 += static_cast<double>(g) * g;
  const double norm = std::sqrt(norm2), h = 1e-4;
  std::vector<double> values(model.values.begin(), model.values.end());
  BOOST_TEST(std::abs(value - mean_nll_in_double(model, values, batch)) < 1e-5 * value);
  for (size_t i = 0; i < values.size(); ++i) values[i] = model.values[i] + h * grad[i] / norm;
  const double up = mean_nll_in_double(model, values, batch);
  for (size_t i = 0; i < values.size(); ++i) values[i] = model.values[i] - h * grad[i] / norm;
  const double down = mean_nll_in_double(model, values, batch);
  const double fd = (up - down) / (2.0 * h);
  BOOST_TEST_MESSAGE("derivative along the gradient: |g| = " << std::setprecision(9) << norm
                                                             << ", finite difference " << fd);
  BOOST_TEST(std::abs(fd - norm) < 1e-5 * norm);
  // The FLOP count: forward + recomputed layers + twice the GEMMs + 5/2 of attention.
  const double n = 128.0, d = 128.0, L = 4.0;
  const double projections = 2.0 * n * L * (4.0 * d * d + 2.0 * d * 512.0),
               classifier = 2.0 * n * d * 512.0;
  const double attention = 2.0 * (2.0 * L * 64.0 * 65.0 * d);
  BOOST_TEST(fs::gpt2_forward_flops(model.config, batch) == projections + classifier + attention);
  BOOST_TEST(fs::gpt2_gradient_flops(model.config, batch) ==
             4.0 * projections + 3.0 * classifier + 4.5 * attention);
}
