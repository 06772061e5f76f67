#include <cmath>
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "fracsweep/error.hpp"
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

void print_text(const Model& model) {
  const LlamaConfig& c = model.config;
  std::printf("model       %s\nformat      %s\narchitecture llama\n", model.path.c_str(), model.format.c_str());
  std::printf("dim %lld  hidden_dim %lld  n_layers %lld  n_heads %lld  n_kv_heads %lld  vocab_size %lld  "
              "seq_len %lld  classifier %s\n",
              static_cast<long long>(c.dim), static_cast<long long>(c.hidden_dim),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.vocab_size),
              static_cast<long long>(c.seq_len), c.shared_classifier ? "shared" : "separate");
  std::printf("\n%-24s %-12s %-8s %12s %12s %10s\n", "tensor", "shape", "dtype", "elements", "offset", "nonfinite");
  int64_t nonfinite = 0;
  for (const TensorInfo& t : model.tensors) {
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    std::printf("%-24s %-12s %-8s %12lld %12lld %10lld\n", t.name.c_str(), shape_text(t.shape).c_str(),
                "f32", static_cast<long long>(t.count), static_cast<long long>(t.offset),
                static_cast<long long>(bad));
  }
  std::printf("\n%zu tensors, %lld parameters, %lld non-finite\n", model.tensors.size(),
              static_cast<long long>(model.n_parameters()), static_cast<long long>(nonfinite));
}

void print_json(const Model& model) {
  const LlamaConfig& c = model.config;
  std::printf("{\n  \"path\": %s,\n  \"format\": %s,\n  \"architecture\": \"llama\",\n",
              json_string(model.path).c_str(), json_string(model.format).c_str());
  std::printf("  \"config\": {\"dim\": %lld, \"hidden_dim\": %lld, \"n_layers\": %lld, \"n_heads\": %lld, "
              "\"n_kv_heads\": %lld, \"vocab_size\": %lld, \"seq_len\": %lld, \"shared_classifier\": %s},\n",
              static_cast<long long>(c.dim), static_cast<long long>(c.hidden_dim),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.vocab_size),
              static_cast<long long>(c.seq_len), c.shared_classifier ? "true" : "false");
  std::printf("  \"tensors\": [\n");
  int64_t nonfinite = 0;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const TensorInfo& t = model.tensors[i];
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    std::printf("    {\"name\": %s, \"shape\": %s, \"dtype\": \"f32\", \"elements\": %lld, \"offset\": %lld, "
                "\"nonfinite\": %lld}%s\n",
                json_string(t.name).c_str(), json_shape(t.shape).c_str(), static_cast<long long>(t.count),
                static_cast<long long>(t.offset), static_cast<long long>(bad),
                i + 1 < model.tensors.size() ? "," : "");
  }
  std::printf("  ],\n  \"n_parameters\": %lld,\n  \"n_nonfinite\": %lld\n}\n",
              static_cast<long long>(model.n_parameters()), static_cast<long long>(nonfinite));
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
                                       "usage: fracsweep inspect MODEL [--json]", help, rank);
    if (help) return;
    const Model model = load_llama2c(vm["model"].as<std::string>());
    if (vm.count("json")) {
      print_json(model);
    } else {
      print_text(model);
    }
  });
  return exit_ok;
}

}  // namespace fracsweep
