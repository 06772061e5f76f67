#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/eval/classifier.hpp"
#include "fracsweep/formats/gguf.hpp"
#include "fracsweep/formats/hf.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/nn/sequential.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

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

// A config value as JSON: numbers and booleans as they are, anything else as a string.
std::string json_scalar(const std::string& text) {
  if (text == "true" || text == "false") return text;
  double number = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  const bool is_number =
      error == std::errc() && end == text.data() + text.size() && std::isfinite(number);
  return is_number ? text : json_string(text);
}

std::string json_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t count_nonfinite(const Model& model, const TensorInfo& t) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.count; ++i)
    n += !std::isfinite(model.values[static_cast<size_t>(t.offset + i)]);
  return n;
}

using ConfigFields = std::vector<std::pair<std::string, std::string>>;

// A loaded model and its hyper-parameters as (name, value) in the architecture's vocabulary.
struct Inspected {
  Model model;
  ConfigFields config;
};

ConfigFields config_fields(const Model& model) {
  const LlamaConfig& c = model.config;
  auto integer = [](int64_t v) { return std::to_string(v); };
  auto real = [](float v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", static_cast<double>(v));
    return std::string(buffer);
  };
  if (model.architecture == "gpt2") {
    return {{"n_embd", integer(c.dim)},
            {"n_inner", integer(c.hidden_dim)},
            {"n_layer", integer(c.n_layers)},
            {"n_head", integer(c.n_heads)},
            {"vocab_size", integer(c.vocab_size)},
            {"n_positions", integer(c.seq_len)},
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

void print_text(const Inspected& inspected) {
  const Model& model = inspected.model;
  std::printf("model       %s\nformat      %s\narchitecture %s\n", model.path.c_str(),
              model.format.c_str(), model.architecture.c_str());
  std::string config;
  for (const auto& [name, value] : inspected.config)
    config += (config.empty() ? "" : "  ") + name + " " + value;
  std::printf("%s\n", config.c_str());
  std::printf("\n%-32s %-12s %-6s %-9s %12s %12s %10s\n", "tensor", "shape", "dtype", "role",
              "elements", "offset", "nonfinite");
  int64_t nonfinite = 0;
  size_t buffers = 0;
  for (const TensorInfo& t : model.tensors) {
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    buffers += t.is_buffer();
    std::printf("%-32s %-12s %-6s %-9s %12lld %12lld %10lld\n", t.name.c_str(),
                shape_text(t.shape).c_str(), stored_type_name(t.stored), tensor_role_name(t.role),
                static_cast<long long>(t.count), static_cast<long long>(t.offset),
                static_cast<long long>(bad));
  }
  std::printf("\n%zu tensors, %lld parameters", model.tensors.size(),
              static_cast<long long>(model.n_parameters()));
  if (buffers > 0) {
    std::printf(
        " (learned; the default scope) + %lld buffer values in %zu buffer tensor%s (not "
        "learned; perturbed only under an explicit include=)",
        static_cast<long long>(model.n_buffer_values()), buffers, buffers == 1 ? "" : "s");
  }
  std::printf(", %lld non-finite\n", static_cast<long long>(nonfinite));
}

void print_json(const Inspected& inspected) {
  const Model& model = inspected.model;
  std::printf("{\n  \"path\": %s,\n  \"format\": %s,\n  \"architecture\": %s,\n",
              json_string(model.path).c_str(), json_string(model.format).c_str(),
              json_string(model.architecture).c_str());
  std::string config;
  for (const auto& [name, value] : inspected.config) {
    config += (config.empty() ? "" : ", ") + json_string(name) + ": " + json_scalar(value);
  }
  std::printf("  \"config\": {%s},\n  \"tensors\": [\n", config.c_str());
  int64_t nonfinite = 0;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const TensorInfo& t = model.tensors[i];
    const int64_t bad = count_nonfinite(model, t);
    nonfinite += bad;
    std::printf(
        "    {\"name\": %s, \"shape\": %s, \"dtype\": \"%s\", \"role\": \"%s\", \"elements\": "
        "%lld, \"offset\": %lld, \"nonfinite\": %lld}%s\n",
        json_string(t.name).c_str(), json_shape(t.shape).c_str(), stored_type_name(t.stored),
        tensor_role_name(t.role), static_cast<long long>(t.count), static_cast<long long>(t.offset),
        static_cast<long long>(bad), i + 1 < model.tensors.size() ? "," : "");
  }
  // n_parameters: learned parameters (the default scope); n_buffer_values: buffer elements;
  // n_values: both (the flat offset space).
  std::printf(
      "  ],\n  \"n_parameters\": %lld,\n  \"n_buffer_values\": %lld,\n  \"n_values\": %lld,\n"
      "  \"n_nonfinite\": %lld\n}\n",
      static_cast<long long>(model.n_parameters()), static_cast<long long>(model.n_buffer_values()),
      static_cast<long long>(model.n_values()), static_cast<long long>(nonfinite));
}

// The sequential description: input shape, classes and the layer types in order.
ConfigFields sequential_fields(const SequentialSpec& spec) {
  std::string layers;
  for (const LayerSpec& layer : spec.layers) {
    layers += (layers.empty() ? "" : ",") + std::string(layer_kind_name(layer.kind));
  }
  return {{"input_shape", shape_text(spec.input_shape)},
          {"classes", std::to_string(spec.classes)},
          {"layers", layers}};
}

// The model at `path` in the format its name implies (as in job files): a directory is a
// Hugging Face model directory, *.gguf GGUF, *.json a sequential classifier, anything else a
// llama2.c checkpoint.
Inspected load_any(const std::string& path) {
  std::error_code ec;
  Inspected inspected;
  if (path.ends_with(".json") && !std::filesystem::is_directory(path, ec)) {
    const SequentialSpec spec = read_sequential_spec(path);
    inspected.model = load_sequential_model(spec);
    build_network(spec, inspected.model);  // shapes must chain, as in a sweep
    inspected.config = sequential_fields(spec);
    return inspected;
  }
  inspected.model = load_model_file(path);
  inspected.config = config_fields(inspected.model);
  return inspected;
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
                                       "usage: fracsweep inspect MODEL [--json]\n  MODEL: llama2.c "
                                       "checkpoint, *.gguf, a Hugging Face "
                                       "model directory, or a sequential classifier *.json",
                                       help, rank);
    if (help) return;
    const Inspected inspected = load_any(vm["model"].as<std::string>());
    if (vm.count("json")) {
      print_json(inspected);
    } else {
      print_text(inspected);
    }
  });
  return exit_ok;
}

}  // namespace fracsweep
