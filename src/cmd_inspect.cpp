#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "commands.hpp"
#include "fracsweep/error.hpp"
#include "fracsweep/gguf.hpp"
#include "fracsweep/hf.hpp"
#include "fracsweep/llama2c.hpp"
#include "fracsweep/sched.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string json_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t count_nonfinite(const Model& model, const TensorInfo& t) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.count; ++i) n += !std::isfinite(model.values[static_cast<size_t>(t.offset + i)]);
  return n;
}

// Hyper-parameters as (name, value) in the architecture's own vocabulary.
std::vector<std::pair<std::string, std::string>> config_fields(const Model& model) {
  const LlamaConfig& c = model.config;
  auto integer = [](int64_t v) { return std::to_string(v); };
  auto real = [](float v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", static_cast<double>(v));
    return std::string(buffer);
  };
  if (model.architecture == "gpt2") {
    return {{"n_embd", integer(c.dim)},          {"n_inner", integer(c.hidden_dim)},
            {"n_layer", integer(c.n_layers)},    {"n_head", integer(c.n_heads)},
            {"vocab_size", integer(c.vocab_size)}, {"n_positions", integer(c.seq_len)},
            {"layer_norm_epsilon", real(c.norm_eps)}};
  }
  return {{"dim", integer(c.dim)},
          {"hidden_dim", integer(c.hidden_dim)},
          {"n_layers", integer(c.n_layers)},
          {"n_heads", integer(c.n_heads)},
          {"n_kv_heads", integer(c.n_kv_heads)},
          {"vocab_size", integer(c.vocab_size)},
          {"seq_len", integer(c.seq_len)},
          {"norm_eps", real(c.norm_eps)},
          {"rope_theta", real(c.rope_theta)},
          {"shared_classifier", c.shared_classifier ? "true" : "false"}};
}

void print_text(const Model& model) {
  std::printf("model       %s\nformat      %s\narchitecture %s\n", model.path.c_str(), model.format.c_str(),
              model.architecture.c_str());
  std::string config;
  for (const auto& [name, value] : config_fields(model)) config += (config.empty() ? "" : "  ") + name + " " + value;
  std::printf("%s\n", config.c_str());
  std::printf("\n%-32s %-12s %-6s %12s %12s %10s\n", "tensor", "shape", "dtype", "elements", "offset", "nonfinite");
  int64_t nonfinite = 0;
  for (const TensorInfo& t : model.tensors) {
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    std::printf("%-32s %-12s %-6s %12lld %12lld %10lld\n", t.name.c_str(), shape_text(t.shape).c_str(),
                stored_type_name(t.stored), static_cast<long long>(t.count), static_cast<long long>(t.offset),
                static_cast<long long>(bad));
  }
  std::printf("\n%zu tensors, %lld parameters, %lld non-finite\n", model.tensors.size(),
              static_cast<long long>(model.n_parameters()), static_cast<long long>(nonfinite));
}

void print_json(const Model& model) {
  std::printf("{\n  \"path\": %s,\n  \"format\": %s,\n  \"architecture\": %s,\n", json_string(model.path).c_str(),
              json_string(model.format).c_str(), json_string(model.architecture).c_str());
  std::string config;
  for (const auto& [name, value] : config_fields(model)) {
    config += (config.empty() ? "" : ", ") + json_string(name) + ": " + value;
  }
  std::printf("  \"config\": {%s},\n  \"tensors\": [\n", config.c_str());
  int64_t nonfinite = 0;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const TensorInfo& t = model.tensors[i];
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    std::printf("    {\"name\": %s, \"shape\": %s, \"dtype\": \"%s\", \"elements\": %lld, \"offset\": %lld, "
                "\"nonfinite\": %lld}%s\n",
                json_string(t.name).c_str(), json_shape(t.shape).c_str(), stored_type_name(t.stored),
                static_cast<long long>(t.count), static_cast<long long>(t.offset), static_cast<long long>(bad),
                i + 1 < model.tensors.size() ? "," : "");
  }
  std::printf("  ],\n  \"n_parameters\": %lld,\n  \"n_nonfinite\": %lld\n}\n",
              static_cast<long long>(model.n_parameters()), static_cast<long long>(nonfinite));
}

// The model at `path` in the format its name implies (as in job files): a directory is a
// Hugging Face model directory, *.gguf GGUF, anything else a llama2.c checkpoint.
Model load_any(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return load_hf_model(path);
  if (path.ends_with(".gguf")) return load_gguf_llama(path);
  check_input(!path.ends_with(".json"),
              in_file(path, "inspect reads llama2.c, GGUF and Hugging Face models; sequential descriptions are "
                            "not supported yet"));
  return load_llama2c(path);
}

}  // namespace

int command_inspect(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("json", "print JSON for scripts");
  run_collective_phase(comm, [&] {
    if (rank != 0) return;
    bool help = false;
    const auto vm = parse_command_line("inspect", args, options, {"model"},
                                       "usage: fracsweep inspect MODEL [--json]\n  MODEL: llama2.c checkpoint, *.gguf, or a Hugging Face model directory", help, rank);
    if (help) return;
    const Model model = load_any(vm["model"].as<std::string>());
    if (vm.count("json")) {
      print_json(model);
    } else {
      print_text(model);
    }
  });
  return exit_ok;
}

}  // namespace fracsweep
