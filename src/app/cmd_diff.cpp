// `fracsweep diff A B`: how checkpoint B differs from checkpoint A, per tensor and overall.
#include <cmath>
#include <cstdio>
#include <string>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/model/diff.hpp"
#include "fracsweep/models/models.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

// A number for JSON: finite values as %.17g, NaN and Inf as null.
std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

void print_text_row(const DiffSummary& s) {
  std::printf("%-28s %10lld %10lld %9.6f", s.name.c_str(), static_cast<long long>(s.count),
              static_cast<long long>(s.changed), s.fraction_changed());
  for (double q : s.abs_quantiles) std::printf(" %10.4g", q);
  std::printf(" %10.4g\n", s.relative_change());
}

void print_text(const std::string& a, const std::string& b, const ModelDiff& diff) {
  std::printf(
      "A %s\nB %s\n|delta| quantiles are over the changed values; rel = ||B-A|| / ||A||\n\n",
      a.c_str(), b.c_str());
  std::printf("%-28s %10s %10s %9s", "tensor", "values", "changed", "fraction");
  for (double level : diff_quantile_levels) {
    char label[16];
    std::snprintf(label, sizeof label, level == 1.0 ? "max" : "q%g", level);
    std::printf(" %10s", label);
  }
  std::printf(" %10s\n", "rel");
  for (const DiffSummary& s : diff.tensors) print_text_row(s);
  std::printf("\n");
  print_text_row(diff.overall);
}

std::string json_summary(const DiffSummary& s) {
  std::string quantiles;
  for (size_t q = 0; q < diff_quantile_levels.size(); ++q) {
    char level[16];
    std::snprintf(level, sizeof level, "%g", diff_quantile_levels[q]);
    quantiles +=
        (q ? ", " : "") + std::string("\"") + level + "\": " + json_number(s.abs_quantiles[q]);
  }
  return "{\"name\": \"" + s.name + "\", \"values\": " + std::to_string(s.count) +
         ", \"changed\": " + std::to_string(s.changed) +
         ", \"fraction_changed\": " + json_number(s.fraction_changed()) +
         ", \"abs_delta_quantiles\": {" + quantiles +
         "}, \"delta_norm\": " + json_number(s.delta_norm) +
         ", \"weight_norm\": " + json_number(s.weight_norm) +
         ", \"relative_change\": " + json_number(s.relative_change()) + "}";
}

void print_json(const ModelDiff& diff) {
  std::printf("{\n  \"tensors\": [\n");
  for (size_t t = 0; t < diff.tensors.size(); ++t) {
    std::printf("    %s%s\n", json_summary(diff.tensors[t]).c_str(),
                t + 1 < diff.tensors.size() ? "," : "");
  }
  std::printf("  ],\n  \"overall\": %s\n}\n", json_summary(diff.overall).c_str());
}

}  // namespace

int command_diff(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("json", "print JSON for scripts");
  run_collective_phase(comm, [&] {
    if (rank != 0) return;
    bool help = false;
    const auto vm = parse_command_line(
        "diff", args, options, {"a", "b"},
        "usage: fracsweep diff A B [--json]\n  A, B: two checkpoints of one architecture "
        "(llama2.c, "
        "*.gguf, Hugging Face directory or sequential *.json); B is compared with A",
        help, rank);
    if (help) return;
    const std::string a_path = vm["a"].as<std::string>(), b_path = vm["b"].as<std::string>();
    const ModelDiff diff = diff_models(load_model_file(a_path), load_model_file(b_path));
    if (vm.count("json")) {
      print_json(diff);
    } else {
      print_text(a_path, b_path, diff);
    }
  });
  return exit_ok;
}

}  // namespace fracsweep
