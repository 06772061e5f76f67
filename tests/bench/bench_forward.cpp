// Forward-pass benchmark on the engine's evaluation batch: times llama_forward (median of N
// runs), the same projection GEMMs alone (matmul_nt on exactly the forward's shapes), and the
// other kernels, and prints GFLOP/s, forward/GEMM ratio and where the time goes.
//
//   fracsweep_bench MODEL.bin TOKENIZER.bin TEXT.txt [runs=20] [threads=1] [kernels=auto]
//
// The baseline's greedy continuation (256 tokens after BOS, no early stop): the engine's
// KV-cached decoding with teacher-forced verification against decoding on the growing prefix
// (the old O(n^2) method, greedy_reference.hpp), one run each, on MODEL.bin and on random-weight
// Llamas of the shapes named (110M: dim 768, 12 layers, 12 heads, hidden 2048, vocab 32000;
// 1.1B: dim 2048, 22 layers, 32 heads / 4 KV heads, hidden 5632; the growing prefix is skipped
// at 1.1B, where it would take most of an hour), and the ratio to one trial's forward pass
// (8 x 256 tokens). Also the memory-bandwidth floor of the 256 decoding steps (each reads every
// weight once: weight bytes / this machine's streaming-read bandwidth at THREADS threads) and
// the teacher-forced verification pass alone. CPU time at 1 thread, wall time at more:
//
//   fracsweep_bench --greedy MODEL.bin [110M] [1.1B] [threads=1] [kernels=auto]
//
// One layout of scripts/bench-shapes.py: the same at THREADS threads, on a random-weight Llama of
// a named shape only:
//
//   fracsweep_bench --shape {110M|1.1B} THREADS [runs=3] [kernels=auto]
//
// Thread scaling of the forward pass: at 1 and 2 threads per rank, in one process, the share of
// a forward pass spent outside BLIS (1 - the projection GEMMs timed alone / the forward) and the
// forward's FLOP rate over the GEMMs' (wall time, median of N runs), on stories260K's evaluation
// batch and on random-weight Llamas of the shapes named (8 x 256 tokens):
//
//   fracsweep_bench --threads MODEL.bin TOKENIZER.bin TEXT.txt [runs=20] [110M] [kernels=auto]
//
// kernels: auto, native, skx, haswell or zen3 (see gemm.hpp); BLIS_ARCH_TYPE in the
// environment wins. BLIS fixes its kernel set once per process: compare sets in separate runs
// (scripts/bench.sh skx haswell).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../unit/greedy_reference.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/eval_data.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/formats/tokenizer.hpp"
#include "fracsweep/nn/gemm.hpp"
#include "fracsweep/nn/llama.hpp"
#include "fracsweep/nn/llama_backward.hpp"
#include "fracsweep/nn/ops.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"

namespace fs = fracsweep;

namespace {

constexpr int64_t eval_paragraphs = 50;  // the engine's evaluation set

// Median times in seconds of `runs` calls of `work`, after one warm-up call. `cpu` is process
// CPU time: with one thread it leaves out time spent waiting for a core on a shared machine,
// so it is what tables and shares use then; with more threads (BLIS's OpenMP workers spin
// while the main thread runs attention) they use `wall`.
struct Timing {
  double wall = 0.0;
  double cpu = 0.0;
};

double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

double median(std::vector<double> values) {
  const auto middle = values.begin() + static_cast<int64_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

Timing median_timing(int runs, const std::function<void()>& work) {
  work();
  std::vector<double> wall;
  std::vector<double> cpu;
  for (int run = 0; run < runs; ++run) {
    const double cpu_start = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    work();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    cpu.push_back(cpu_seconds() - cpu_start);
  }
  return {median(wall), median(cpu)};
}

// One projection of the forward: C (n_tokens x n) = A (n_tokens x k) W^T, `per_forward` times.
struct Projection {
  const char* name;
  int64_t n, k;
  float beta;  // 1 where the forward accumulates into the residual stream
  int64_t per_forward;
};

// The projection GEMMs of one Llama forward pass: shapes, and how many of each.
std::vector<Projection> forward_projections(const fs::LlamaConfig& c) {
  return {{"wq", c.dim, c.dim, 0.0f, c.n_layers},
          {"wk, wv", c.kv_dim(), c.dim, 0.0f, 2 * c.n_layers},
          {"wo (+x)", c.dim, c.dim, 1.0f, c.n_layers},
          {"w1, w3", c.hidden_dim, c.dim, 0.0f, 2 * c.n_layers},
          {"w2 (+x)", c.dim, c.hidden_dim, 1.0f, c.n_layers},
          {"classifier", c.vocab_size, c.dim, 0.0f, 1}};
}

int parse_positive(const char* text, const char* what) {
  const int value = std::atoi(text);
  fs::check_input(value > 0,
                  std::string(what) + " must be a positive integer, found '" + text + "'");
  return value;
}

int run(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    std::fprintf(stderr,
                 "usage: %s MODEL.bin TOKENIZER.bin TEXT.txt [runs=20] [threads=1] "
                 "[kernels=auto|native|skx|haswell|zen3]\n",
                 argv[0]);
    return fs::exit_bad_input;
  }
  const int runs = argc > 4 ? parse_positive(argv[4], "runs") : 20;
  const int threads = argc > 5 ? parse_positive(argv[5], "threads") : 1;
  const fs::BlisKernels kernels =
      argc > 6 ? fs::parse_blis_kernels(argv[6]) : fs::BlisKernels::automatic;
  const fs::GemmInfo blis = fs::gemm_init(fs::GemmSetup{kernels, threads});
  const bool use_cpu_time = threads == 1;
  const char* clock_name = use_cpu_time ? "cpu" : "wall";
  const auto measured = [&](const Timing& timing) {
    return use_cpu_time ? timing.cpu : timing.wall;
  };
  const auto time_of = [&](const std::function<void()>& work) {
    return measured(median_timing(runs, work));
  };

  const fs::Model model = fs::load_llama2c(argv[1]);
  const fs::LlamaConfig& c = model.config;
  const fs::Tokenizer tokenizer = fs::Tokenizer::load_llama2c(argv[2], c.vocab_size);
  const std::vector<std::vector<int32_t>> sequences =  // (paragraphs) token ids
      fs::encode_paragraphs(tokenizer, fs::read_paragraphs(argv[3], eval_paragraphs), c.seq_len,
                            argv[3]);
  fs::TokenBatch batch;
  for (const auto& sequence : sequences) batch.append(sequence);
  const int64_t n = batch.n_tokens();
  int64_t longest = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    longest = std::max(longest, batch.seq_start[s + 1] - batch.seq_start[s]);
  }

  std::printf("BLIS %s, kernels %s (%s), %d thread(s)\n", blis.blis_version.c_str(),
              blis.kernel_set.c_str(), blis.selected_by.c_str(), blis.threads);
  std::printf("model %s: dim %lld hidden %lld layers %lld heads %lld/%lld vocab %lld\n", argv[1],
              static_cast<long long>(c.dim), static_cast<long long>(c.hidden_dim),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.vocab_size));
  std::printf("batch: %lld sequences, %lld tokens, longest %lld; median of %d runs\n\n",
              static_cast<long long>(batch.n_seqs()), static_cast<long long>(n),
              static_cast<long long>(longest), runs);

  // The whole forward.
  fs::LlamaWorkspace ws(c, n, longest);
  std::vector<float> logits(static_cast<size_t>(n * c.vocab_size));  // (n, vocab)
  const Timing forward =
      median_timing(runs, [&] { fs::llama_forward(model, batch, ws, logits.data()); });
  const double forward_flops = fs::llama_forward_flops(c, batch);

  // The forward's projections alone, on its buffers (contents do not change GEMM speed).
  const std::vector<Projection> projections = forward_projections(c);
  const int64_t widest_k = std::max(c.dim, c.hidden_dim);
  const int64_t widest_n = std::max(c.vocab_size, c.hidden_dim);
  const std::vector<float> a(static_cast<size_t>(n * widest_k), 0.5f);          // (n, k)
  const std::vector<float> w(static_cast<size_t>(widest_n * widest_k), 0.25f);  // (n_out, k)
  std::vector<float> out(static_cast<size_t>(n * widest_n));                    // (n, n_out)
  std::printf("%-12s %6s %6s %6s %9s %9s\n", "GEMM", "M", "N", "K",
              (std::string(clock_name) + " ms").c_str(), "GFLOP/s");
  double gemm_s = 0.0;
  double gemm_flops = 0.0;
  for (const Projection& p : projections) {
    const double s = time_of(
        [&] { fs::matmul_nt(n, p.n, p.k, a.data(), p.k, w.data(), p.k, out.data(), p.n, p.beta); });
    const double flops = 2.0 * static_cast<double>(n * p.n * p.k);
    std::printf("%-12s %6lld %6lld %6lld %9.3f %9.1f   x%lld per forward\n", p.name,
                static_cast<long long>(n), static_cast<long long>(p.n), static_cast<long long>(p.k),
                s * 1e3, flops / s * 1e-9, static_cast<long long>(p.per_forward));
    gemm_s += s * static_cast<double>(p.per_forward);
    gemm_flops += flops * static_cast<double>(p.per_forward);
  }

  // The other kernels, per forward (timed on the forward's buffers).
  const int64_t hd = c.head_dim();
  const auto layers = static_cast<double>(c.n_layers);
  const auto attention_of_one_layer = [&] {
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      const int64_t first = batch.seq_start[s];
      fs::attention_causal(ws.q.data() + first * c.dim, c.dim, ws.k.data() + first * c.kv_dim(),
                           ws.v.data() + first * c.kv_dim(), c.kv_dim(),
                           ws.att.data() + first * c.dim, c.dim, batch.seq_start[s + 1] - first,
                           c.n_heads, c.n_kv_heads, hd, ws.scratch.data());
    }
  };
  const double attention_s = layers * time_of(attention_of_one_layer);
  const double rope_s =
      layers * time_of([&] {
        fs::rope_rows(ws.q.data(), batch.positions.data(), ws.rope.data(), n, c.n_heads, hd);
        fs::rope_rows(ws.k.data(), batch.positions.data(), ws.rope.data(), n, c.n_kv_heads, hd);
      });
  const std::vector<float> norm_weight(static_cast<size_t>(c.dim), 1.0f);  // (dim)
  const double rmsnorm_s =
      (2.0 * layers + 1.0) * time_of([&] {
        fs::rmsnorm_rows(ws.x.data(), norm_weight.data(), ws.xn.data(), n, c.dim, c.norm_eps);
      });
  // With up = 1 repeated SwiGLU roughly halves small gates: 21 calls stay clear of denormals.
  const std::vector<float> ones(ws.up.size(), 1.0f);  // (n, hidden)
  const double swiglu_s =
      layers * time_of([&] { fs::swiglu(ws.gate.data(), ones.data(), n * c.hidden_dim); });

  // The gradient of the mean NLL (llama_backward.hpp), objective included.
  std::vector<float> grad(model.values.size());  // (n_values)
  std::vector<float> arena;                      // the gradient's buffers, reused
  const fs::LogitObjective mean_nll = [&](const float* out_logits, int64_t rows, int64_t vocab,
                                          float* dlogits) {
    std::fill_n(dlogits, rows * vocab, 0.0f);
    (void)out_logits;
    return 0.0;
  };
  const Timing gradient = median_timing(runs, [&] {
    fs::llama_gradient(model, batch, mean_nll, fs::GradientOutputs{grad.data(), nullptr}, arena);
  });
  const double gradient_flops = fs::llama_gradient_flops(c, batch);

  const double forward_s = measured(forward);
  const double gemm_rate = gemm_flops / gemm_s * 1e-9;
  const double forward_rate = forward_flops / forward_s * 1e-9;
  std::printf("\nforward      %.3f GFLOP: cpu %.3f ms, wall %.3f ms -> %.1f GFLOP/s (%s)\n",
              forward_flops * 1e-9, forward.cpu * 1e3, forward.wall * 1e3, forward_rate,
              clock_name);
  std::printf("GEMMs alone  %.3f GFLOP: %s %.3f ms -> %.1f GFLOP/s\n", gemm_flops * 1e-9,
              clock_name, gemm_s * 1e3, gemm_rate);
  std::printf("forward / GEMM rate: %.2f\n", forward_rate / gemm_rate);
  const double gradient_rate = gradient_flops / measured(gradient) * 1e-9;
  std::printf(
      "gradient     %.3f GFLOP: cpu %.3f ms, wall %.3f ms -> %.1f GFLOP/s; gradient / forward "
      "time %.2f, rate %.2f\n",
      gradient_flops * 1e-9, gradient.cpu * 1e3, gradient.wall * 1e3, gradient_rate,
      measured(gradient) / forward_s, gradient_rate / forward_rate);
  if (use_cpu_time && forward.wall > 1.1 * forward.cpu) {
    std::printf("note: wall time exceeds CPU time by %.0f %%: other processes share the cores\n",
                100.0 * (forward.wall / forward.cpu - 1.0));
  }
  const double rest_s = forward_s - gemm_s - attention_s;
  const auto share = [&](const char* what, double seconds) {
    std::printf("  %-22s %8.3f ms  %5.1f %%\n", what, seconds * 1e3, 100.0 * seconds / forward_s);
  };
  std::printf("\n%s time per forward (kernels timed alone; shares of the forward):\n", clock_name);
  share("GEMM", gemm_s);
  share("attention", attention_s);
  share("rest (below + other)", rest_s);
  share("  rope", rope_s);
  share("  rmsnorm", rmsnorm_s);
  share("  swiglu", swiglu_s);
  share("  other", rest_s - rope_s - rmsnorm_s - swiglu_s);

  // Whole trials, as the engine runs them: select sites, perturb in place, forward on the eval
  // batch plus the 256-token greedy check, metrics against the cached baseline, restore.
  fs::Model trial_model = fs::load_llama2c(argv[1]);
  fs::EvalInputs inputs;
  inputs.sequences = sequences;
  inputs.greedy_prompt = {tokenizer.bos_id()};
  inputs.greedy_tokens = 256;
  inputs.greedy_stop_id = tokenizer.bos_id();
  fs::LanguageModelEvaluator evaluator(trial_model, inputs, fs::make_llama_forward);
  fs::Perturber perturber(trial_model, 0, "bench");
  std::vector<fs::Touched> undo;
  std::printf(
      "\nwhole trials (perturb + forward + metrics + restore), zero and gaussian strategies, "
      "one rank:\n%-10s %9s %12s %12s\n",
      "fraction", "sites", "ms/trial", "trials/s");
  const fs::StrategySpec strategies[] = {fs::parse_strategy("zero", "bench"),
                                         fs::parse_strategy("gaussian sigma=0.1", "bench")};
  for (const double fraction : {1e-4, 1e-2, 0.25}) {
    const fs::Amount amount{false, fraction, 0};
    const int64_t k = amount.sites(trial_model.n_parameters());
    int64_t seed = 0;
    const double per_trial = measured(median_timing(runs, [&] {
      const fs::StrategySpec& strategy = strategies[seed % 2];
      perturber.apply(trial_model, strategy, k, seed++, undo);
      evaluator.evaluate(trial_model);
      fs::Perturber::restore(trial_model, undo);
    }));
    std::printf("%-10g %9lld %12.2f %12.2f\n", fraction, static_cast<long long>(k), per_trial * 1e3,
                1.0 / per_trial);
  }
  std::printf("(2 ranks on 2 cores run about twice as many trials/s: trials are independent.)\n");
  return fs::exit_ok;
}

// Process CPU seconds of one call of `work` (one thread: leaves out waiting for a core on a
// shared machine).
double seconds_of(const std::function<void()>& work) {
  const double start = cpu_seconds();
  work();
  return cpu_seconds() - start;
}

// Wall and process CPU seconds of one call of `work`.
Timing timing_of(const std::function<void()>& work) {
  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  work();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
          cpu_seconds() - cpu_start};
}

// This machine's streaming-read bandwidth in bytes/s at `threads` threads: each sums its own
// contiguous part of a 1 GiB buffer (far beyond any cache); best of 3 reads. At 1 thread per CPU
// second (the unit of the 1-thread tables), at more per wall second.
double streaming_read_bandwidth(int threads) {
  constexpr int64_t lanes = 64;                              // independent partial sums per thread
  constexpr int64_t n = (int64_t{1} << 28) / lanes * lanes;  // floats: 1 GiB
  std::vector<float> buffer(static_cast<size_t>(n), 1.0f);   // (n) read-only after this
  const int64_t part = n / lanes / threads * lanes;  // each thread's floats, a multiple of lanes
  std::vector<float> sums(static_cast<size_t>(threads));  // (threads) kept so reads are not dead
  const auto read_part = [&](int t) {
    float partial[lanes] = {};
    const float* x = buffer.data() + t * part;
    for (int64_t i = 0; i < part; i += lanes) {
      for (int64_t j = 0; j < lanes; ++j) partial[j] += x[i + j];
    }
    float total = 0.0f;
    for (const float value : partial) total += value;
    sums[static_cast<size_t>(t)] = total;
  };
  double best = 0.0;
  for (int run = 0; run < 3; ++run) {
    const Timing t = timing_of([&] {
      std::vector<std::thread> workers;
      for (int i = 1; i < threads; ++i) workers.emplace_back(read_part, i);
      read_part(0);
      for (std::thread& worker : workers) worker.join();
    });
    const double bytes = 4.0 * static_cast<double>(part * threads);
    best = std::max(best, bytes / (threads == 1 ? t.cpu : t.wall));
  }
  if (sums[0] != static_cast<float>(part)) std::printf("(bandwidth check sum wrong)\n");
  return best;
}

// A llama2c-layout Llama of `config` with cheap pseudo-random weights (uniform in
// +-1/sqrt(fan_in), norms 1): only the speed of the forward pass matters here.
fs::Model random_llama(const fs::LlamaConfig& config, const std::string& name) {
  fs::Model model;
  model.path = "<random " + name + ">";
  model.format = "bench";
  model.config = config;
  const int64_t dim = config.dim, kv = config.kv_dim(), hidden = config.hidden_dim;
  fs::append_tensor(model.tensors, "tok_embeddings", {config.vocab_size, dim});
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    fs::append_tensor(model.tensors, prefix + "attn_norm", {dim});
    fs::append_tensor(model.tensors, prefix + "attn.wq", {dim, dim});
    fs::append_tensor(model.tensors, prefix + "attn.wk", {kv, dim});
    fs::append_tensor(model.tensors, prefix + "attn.wv", {kv, dim});
    fs::append_tensor(model.tensors, prefix + "attn.wo", {dim, dim});
    fs::append_tensor(model.tensors, prefix + "ffn_norm", {dim});
    fs::append_tensor(model.tensors, prefix + "ffn.w1", {hidden, dim});
    fs::append_tensor(model.tensors, prefix + "ffn.w2", {dim, hidden});
    fs::append_tensor(model.tensors, prefix + "ffn.w3", {hidden, dim});
  }
  fs::append_tensor(model.tensors, "norm_final", {dim});
  const fs::TensorInfo& last = model.tensors.back();
  model.values.resize(static_cast<size_t>(last.offset + last.count));
  uint64_t state = 0x9e3779b97f4a7c15ULL;  // xorshift64
  for (const fs::TensorInfo& tensor : model.tensors) {
    const bool norm = tensor.shape.size() == 1;
    const float half_width = norm ? 0.0f : 1.0f / std::sqrt(static_cast<float>(tensor.shape[1]));
    float* values = model.values.data() + tensor.offset;
    for (int64_t i = 0; i < tensor.count; ++i) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      const float unit = static_cast<float>(state >> 40) * 0x1p-24f;  // [0, 1)
      values[i] = norm ? 1.0f : (2.0f * unit - 1.0f) * half_width;
    }
  }
  return model;
}

fs::LlamaConfig llama_shape(int64_t dim, int64_t layers, int64_t heads, int64_t kv_heads,
                            int64_t hidden) {
  fs::LlamaConfig config;
  config.dim = dim;
  config.hidden_dim = hidden;
  config.n_layers = layers;
  config.n_heads = heads;
  config.n_kv_heads = kv_heads;
  config.vocab_size = 32000;
  config.seq_len = 2048;
  config.shared_classifier = true;
  return config;
}

// The real shapes of scripts/make-random-llama.py: 110M (dim 768, 12 layers, 12 heads, hidden
// 2048) and 1.1B (TinyLlama: dim 2048, 22 layers, 32 heads / 4 KV heads, hidden 5632).
fs::LlamaConfig named_shape(const std::string& name) {
  if (name == "110M") return llama_shape(768, 12, 12, 12, 2048);
  if (name == "1.1B") return llama_shape(2048, 22, 32, 4, 5632);
  throw fs::InputError("unknown shape '" + name + "'; expected 110M or 1.1B");
}

// 8 x 256 token ids below 32000, as one trial of the real-shape jobs.
fs::TokenBatch real_shape_batch() {
  fs::TokenBatch batch;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> sequence(256);
    for (int64_t t = 0; t < 256; ++t) {
      sequence[static_cast<size_t>(t)] = static_cast<int32_t>((s * 977 + t * 131) % 32000);
    }
    batch.append(sequence);
  }
  return batch;
}

// Bytes of weights one decoding step reads: every matrix and norm once, and one row of the
// token embeddings unless they are also the classifier.
double decode_step_bytes(const fs::Model& model) {
  const fs::LlamaConfig& c = model.config;
  const double embedding_rows_skipped =
      c.shared_classifier ? 0.0 : static_cast<double>((c.vocab_size - 1) * c.dim);
  return 4.0 * (static_cast<double>(model.values.size()) - embedding_rows_skipped);
}

// Times the baseline's 256-token greedy continuation after BOS (id 1) both ways, the
// verification pass alone and one trial's forward pass over 8 x 256 tokens; prints the ratios
// and the bandwidth floor (one run each; CPU time at 1 thread, wall time at more).
void bench_greedy(const fs::Model& model, bool with_reference, int threads, double bandwidth) {
  constexpr int64_t greedy_tokens = 256;
  const std::vector<int32_t> prompt = {1};
  const fs::LlamaConfig& c = model.config;
  const auto seconds = [threads](const Timing& t) { return threads == 1 ? t.cpu : t.wall; };
  fs::EvalInputs inputs;  // sized for 8 x 256 tokens; the greedy continuation is timed below
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> sequence(greedy_tokens);
    for (int64_t t = 0; t < greedy_tokens; ++t) {
      sequence[static_cast<size_t>(t)] = static_cast<int32_t>((s * 977 + t * 131) % c.vocab_size);
    }
    inputs.sequences.push_back(sequence);
  }
  inputs.greedy_tokens = 0;
  fs::LanguageModelEvaluator evaluator(model, inputs, fs::make_llama_forward);
  const double trial_s = seconds(timing_of([&] { evaluator.evaluate(model); }));
  std::vector<int32_t> cached;
  const double cached_s = seconds(
      timing_of([&] { cached = evaluator.greedy_continuation(model, prompt, greedy_tokens, -1); }));
  // The verification's teacher-forced pass over prompt + continuation (one batched forward).
  std::vector<int32_t> forced_tokens = prompt;
  forced_tokens.insert(forced_tokens.end(), cached.begin(), cached.end());
  fs::TokenBatch forced;
  forced.append(forced_tokens);
  const auto forward = fs::make_llama_forward(c, forced.n_tokens(), forced.n_tokens());
  std::vector<float> logits(static_cast<size_t>(forced.n_tokens() * c.vocab_size));  // (n, vocab)
  const double verify_s = seconds(timing_of([&] { forward->run(model, forced, logits.data()); }));
  const double step_bytes = decode_step_bytes(model);
  const double floor_s = static_cast<double>(greedy_tokens) * step_bytes / bandwidth;
  std::printf("%s: dim %lld layers %lld heads %lld/%lld hidden %lld vocab %lld\n",
              model.path.c_str(), static_cast<long long>(c.dim), static_cast<long long>(c.n_layers),
              static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
              static_cast<long long>(c.hidden_dim), static_cast<long long>(c.vocab_size));
  std::printf("  one trial (forward, 8 x %lld tokens): %.3f s\n",
              static_cast<long long>(greedy_tokens), trial_s);
  std::printf("  greedy %lld tokens, KV cache + verification: %.3f s = %.2f trials\n",
              static_cast<long long>(cached.size()), cached_s, cached_s / trial_s);
  std::printf("    of which the verification pass (%lld tokens, alone): %.3f s = %.2f trials\n",
              static_cast<long long>(forced.n_tokens()), verify_s, verify_s / trial_s);
  std::printf(
      "  bandwidth floor of the decoding: %lld steps x %.3f GB / %.1f GB/s = %.3f s = %.2f "
      "trials\n",
      static_cast<long long>(greedy_tokens), step_bytes * 1e-9, bandwidth * 1e-9, floor_s,
      floor_s / trial_s);
  if (!with_reference) return;
  std::vector<int32_t> growing;
  const double growing_s = seconds(timing_of([&] {
    growing =
        fs::test::greedy_growing_prefix(model, fs::make_llama_forward, prompt, greedy_tokens, -1);
  }));
  std::printf("  greedy %lld tokens, growing prefix:          %.3f s = %.2f trials\n",
              static_cast<long long>(growing.size()), growing_s, growing_s / trial_s);
  std::printf("  growing prefix / KV cache: %.1fx; continuations %s\n", growing_s / cached_s,
              growing == cached ? "identical" : "DIFFER");
}

int run_greedy(int argc, char** argv) {
  fs::BlisKernels kernels = fs::BlisKernels::automatic;
  std::vector<std::string> shapes;
  int threads = 1;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "110M" || arg == "1.1B") {
      shapes.push_back(arg);
    } else if (!arg.empty() && std::isdigit(static_cast<unsigned char>(arg[0]))) {
      threads = parse_positive(argv[i], "threads");
    } else {
      kernels = fs::parse_blis_kernels(arg);
    }
  }
  const fs::GemmInfo blis = fs::gemm_init(fs::GemmSetup{kernels, threads});
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result as it comes (runs are long)
  const double bandwidth = streaming_read_bandwidth(threads);
  std::printf(
      "BLIS %s, kernels %s (%s), %d thread(s); one run per measurement, %s\n"
      "streaming-read bandwidth at %d thread(s): %.1f GB/s (best of 3 reads of 1 GiB)\n\n",
      blis.blis_version.c_str(), blis.kernel_set.c_str(), blis.selected_by.c_str(), threads,
      threads == 1 ? "CPU time" : "wall time", threads, bandwidth * 1e-9);
  bench_greedy(fs::load_llama2c(argv[2]), true, threads, bandwidth);
  for (const std::string& shape : shapes) {
    const bool small = shape == "110M";
    fs::Model model;
    const double make_s = seconds_of([&] { model = random_llama(named_shape(shape), shape); });
    std::printf("\n(%s random weights made in %.1f s)\n", shape.c_str(), make_s);
    bench_greedy(model, small, threads, bandwidth);
  }
  return fs::exit_ok;
}

// Wall seconds and FLOPs of the forward's projection GEMMs alone (matmul_nt on its shapes,
// constant operands: contents do not change GEMM speed), per forward pass.
struct GemmCost {
  double seconds = 0.0;
  double flops = 0.0;
};

GemmCost projection_gemms(const fs::LlamaConfig& c, int64_t n, int runs) {
  const std::vector<Projection> projections = forward_projections(c);
  const int64_t widest_k = std::max(c.dim, c.hidden_dim);
  const int64_t widest_n = std::max(c.vocab_size, c.hidden_dim);
  const std::vector<float> a(static_cast<size_t>(n * widest_k), 0.5f);          // (n, k)
  const std::vector<float> w(static_cast<size_t>(widest_n * widest_k), 0.25f);  // (n_out, k)
  std::vector<float> out(static_cast<size_t>(n * widest_n));                    // (n, n_out)
  GemmCost cost;
  for (const Projection& p : projections) {
    const double s =
        median_timing(runs, [&] {
          fs::matmul_nt(n, p.n, p.k, a.data(), p.k, w.data(), p.k, out.data(), p.n, p.beta);
        }).wall;
    cost.seconds += s * static_cast<double>(p.per_forward);
    cost.flops += 2.0 * static_cast<double>(n * p.n * p.k * p.per_forward);
  }
  return cost;
}

// At each thread count: forward wall time, GEMMs alone, the share outside BLIS and the rate
// ratio.
void bench_thread_scaling(const fs::Model& model, const fs::TokenBatch& batch, int runs,
                          fs::BlisKernels kernels, const std::vector<int>& thread_counts) {
  const fs::LlamaConfig& c = model.config;
  int64_t longest = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    longest = std::max(longest, batch.seq_start[s + 1] - batch.seq_start[s]);
  }
  const int64_t n = batch.n_tokens();
  fs::LlamaWorkspace ws(c, n, longest);
  std::vector<float> logits(static_cast<size_t>(n * c.vocab_size));  // (n, vocab)
  const double forward_flops = fs::llama_forward_flops(c, batch);
  std::printf(
      "%s: dim %lld layers %lld heads %lld/%lld hidden %lld vocab %lld; %lld sequences, "
      "%lld tokens; median of %d runs, wall time\n",
      model.path.c_str(), static_cast<long long>(c.dim), static_cast<long long>(c.n_layers),
      static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
      static_cast<long long>(c.hidden_dim), static_cast<long long>(c.vocab_size),
      static_cast<long long>(batch.n_seqs()), static_cast<long long>(n), runs);
  std::printf("%8s %12s %12s %14s %14s %16s\n", "threads", "forward ms", "GEMMs ms", "forward GF/s",
              "outside BLIS", "forward / GEMM");
  for (const int threads : thread_counts) {
    fs::gemm_init(fs::GemmSetup{kernels, threads});
    const Timing forward =
        median_timing(runs, [&] { fs::llama_forward(model, batch, ws, logits.data()); });
    const GemmCost gemm = projection_gemms(c, n, runs);
    const double forward_rate = forward_flops / forward.wall;
    const double gemm_rate = gemm.flops / gemm.seconds;
    std::printf("%8d %12.3f %12.3f %14.1f %13.1f%% %16.2f\n", threads, forward.wall * 1e3,
                gemm.seconds * 1e3, forward_rate * 1e-9,
                100.0 * (1.0 - gemm.seconds / forward.wall), forward_rate / gemm_rate);
  }
}

int run_threads(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: %s --threads MODEL.bin TOKENIZER.bin TEXT.txt [runs=20] [110M] "
                 "[kernels]\n",
                 argv[0]);
    return fs::exit_bad_input;
  }
  int runs = 20;
  bool with_110m = false;
  fs::BlisKernels kernels = fs::BlisKernels::automatic;
  for (int i = 5; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "110M") {
      with_110m = true;
    } else if (!arg.empty() && std::isdigit(static_cast<unsigned char>(arg[0]))) {
      runs = parse_positive(argv[i], "runs");
    } else {
      kernels = fs::parse_blis_kernels(arg);
    }
  }
  const fs::GemmInfo blis = fs::gemm_init(fs::GemmSetup{kernels, 1});
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("BLIS %s, kernels %s (%s); this process may run on %d core(s)\n\n",
              blis.blis_version.c_str(), blis.kernel_set.c_str(), blis.selected_by.c_str(),
              fs::affinity_cores());
  const fs::Model model = fs::load_llama2c(argv[2]);
  const fs::Tokenizer tokenizer = fs::Tokenizer::load_llama2c(argv[3], model.config.vocab_size);
  fs::TokenBatch batch;
  for (const auto& sequence :
       fs::encode_paragraphs(tokenizer, fs::read_paragraphs(argv[4], eval_paragraphs),
                             model.config.seq_len, argv[4])) {
    batch.append(sequence);
  }
  bench_thread_scaling(model, batch, runs, kernels, {1, 2});
  if (!with_110m) return fs::exit_ok;
  const fs::Model big = random_llama(named_shape("110M"), "110M");
  std::printf("\n");
  bench_thread_scaling(big, real_shape_batch(), std::max(3, runs / 4), kernels, {1, 2});
  return fs::exit_ok;
}

// One layout's side of scripts/bench-shapes.py: the forward pass and its projection GEMMs alone
// on a random-weight Llama of a named shape at THREADS threads, in this one process (the script
// starts T of these at once for T ranks x 1 thread).
int run_shape(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: %s --shape {110M|1.1B} THREADS [runs=3] [kernels]\n", argv[0]);
    return fs::exit_bad_input;
  }
  const std::string shape = argv[2];
  const int threads = parse_positive(argv[3], "threads");
  const int runs = argc > 4 ? parse_positive(argv[4], "runs") : 3;
  const fs::BlisKernels kernels =
      argc > 5 ? fs::parse_blis_kernels(argv[5]) : fs::BlisKernels::automatic;
  const fs::GemmInfo blis = fs::gemm_init(fs::GemmSetup{kernels, threads});
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("BLIS %s, kernels %s (%s); this process may run on %d core(s)\n",
              blis.blis_version.c_str(), blis.kernel_set.c_str(), blis.selected_by.c_str(),
              fs::affinity_cores());
  const fs::Model model = random_llama(named_shape(shape), shape);
  bench_thread_scaling(model, real_shape_batch(), runs, kernels, {threads});
  return fs::exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 3 && std::string(argv[1]) == "--greedy") return run_greedy(argc, argv);
    if (argc >= 2 && std::string(argv[1]) == "--threads") return run_threads(argc, argv);
    if (argc >= 2 && std::string(argv[1]) == "--shape") return run_shape(argc, argv);
    return run(argc, argv);
  } catch (const fs::InputError& error) {
    std::fprintf(stderr, "fracsweep_bench: %s\n", error.what());
    return fs::exit_bad_input;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fracsweep_bench: %s\n", error.what());
    return fs::exit_internal;
  }
}
