// Reads a results file back (`fracsweep merge`, resume): provenance, models, trials, sites.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "fracsweep/formats/probes.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/util/error.hpp"
#include "hdf5_reader.hpp"
#include "trial_column_io.hpp"

namespace fracsweep {
namespace {

// The parts of `text` between separators ("a,b" -> {"a", "b"}; "" -> {}; "a\n" -> {"a"}).
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// "64x512" -> {64, 512}; "" -> {}; anything else (signs, empty parts, values past int64):
// nullopt.
std::optional<std::vector<int64_t>> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  for (const std::string& part : split(text, 'x')) {
    int64_t value = 0;
    const char* end = part.data() + part.size();
    const auto [stop, error] = std::from_chars(part.data(), end, value);
    if (part.empty() || part[0] == '-' || error != std::errc() || stop != end) return std::nullopt;
    shape.push_back(value);
  }
  if (!text.empty() && text.back() == 'x') return std::nullopt;  // "4x": split drops the empty tail
  return shape;
}

void read_provenance(const Hdf5FileReader& file, StoredResults& stored) {
  Provenance& p = stored.provenance;
  p.software_version = file.text_attribute("software_version");
  p.git_commit = file.text_attribute("git_commit");
  p.command_line = file.text_attribute("command_line");
  p.job_sha256 = file.text_attribute("job_sha256");
  p.schedule = file.text_attribute("schedule");
  p.mpi_size = file.numeric_attribute<int32_t>("mpi_size");
  p.hostnames = split(file.text_attribute("hostnames"), ',');
  p.blis_version = file.text_attribute("blis_version");
  p.blis_kernels = file.text_attribute("blis_kernels");
  p.blis_kernels_selected_by = file.text_attribute("blis_kernels_selected_by");
  p.blis_threads = file.numeric_attribute<int32_t>("blis_threads");
  p.started_utc = file.text_attribute("started_utc");
  p.finished_utc = file.text_attribute("finished_utc");
  if (file.has_attribute("shard_index")) {  // files from before sharding: one whole run
    p.shard_index = file.numeric_attribute<int64_t>("shard_index");
    p.shard_count = file.numeric_attribute<int64_t>("shard_count");
    p.resume_count = file.numeric_attribute<int32_t>("resume_count");
    p.sessions = split(file.text_attribute("sessions"), '\n');
  }
  // Files from before the attribute drew sites by the sparse Fisher-Yates shuffle.
  p.site_recipe =
      file.has_attribute("site_recipe") ? file.text_attribute("site_recipe") : "fisher-yates";
  stored.job_name = file.text_attribute("job_name");
  stored.job_path = file.text_attribute("job_path");
  stored.job_text = file.text_attribute("job_text");
  stored.n_trials = file.numeric_attribute<int64_t>("n_trials");
  // Merge splits [0, n_trials) into shard_count ranges: n_trials * shard_count must not overflow.
  if (stored.n_trials < 0) file.fail("root attribute n_trials", "is negative");
  if (p.shard_count < 1 || p.shard_index < 0 || p.shard_index >= p.shard_count) {
    file.fail("root attributes shard_index, shard_count",
              "shard " + std::to_string(p.shard_index) + " of " + std::to_string(p.shard_count) +
                  "; expected 0 <= shard_index < shard_count");
  }
  if (stored.n_trials > std::numeric_limits<int64_t>::max() / p.shard_count) {
    file.fail("root attributes n_trials, shard_count",
              std::to_string(stored.n_trials) + " trials in " + std::to_string(p.shard_count) +
                  " shards is beyond any grid");
  }
}

void read_models(const Hdf5FileReader& file, StoredResults& stored) {
  const std::string models = "/grid/model";
  const std::vector<std::string> names = file.strings(models);
  const size_t n_models = names.size();
  const std::vector<std::string> paths = file.strings("/grid/model_path", n_models, models);
  const std::vector<std::string> formats = file.strings("/grid/model_format", n_models, models);
  const std::vector<int64_t> n_parameters =
      file.column<int64_t>("/grid/model_n_parameters", n_models, models);
  const std::vector<double> mean_nll = file.column<double>("/baseline/mean_nll", n_models, models);
  const std::vector<double> perplexity =
      file.column<double>("/baseline/perplexity", n_models, models);
  const std::vector<double> accuracy = file.column<double>("/baseline/accuracy", n_models, models);
  const std::vector<int64_t> positions =
      file.column<int64_t>("/baseline/positions", n_models, models);
  const std::vector<int64_t> nonfinite =
      file.column<int64_t>("/baseline/nonfinite_positions", n_models, models);
  const std::vector<int64_t> greedy_length =
      file.column<int64_t>("/baseline/greedy_length", n_models, models);
  const std::vector<std::string> greedy_text =
      file.strings("/baseline/greedy_text", n_models, models);
  std::vector<hsize_t> greedy_extent;  // (n_models, longest greedy continuation)
  const std::vector<int32_t> greedy_ids =
      file.numeric<int32_t>("/baseline/greedy_ids", &greedy_extent);
  if (greedy_extent.size() != 2 || greedy_extent[0] != n_models) {
    std::string shape;
    for (const hsize_t axis : greedy_extent)
      shape += (shape.empty() ? "" : " x ") + std::to_string(axis);
    file.fail("/baseline/greedy_ids", "has shape (" + shape + "); expected (" +
                                          std::to_string(n_models) +
                                          " x longest continuation), one row per /grid/model");
  }
  const auto longest = static_cast<size_t>(greedy_extent[1]);
  stored.models.resize(n_models);
  for (size_t m = 0; m < n_models; ++m) {
    if (greedy_length[m] < 0 || static_cast<uint64_t>(greedy_length[m]) > longest) {
      file.fail("/baseline/greedy_length",
                "model " + std::to_string(m) + " has " + std::to_string(greedy_length[m]) +
                    " greedy tokens; expected 0.." + std::to_string(longest) +
                    " (the width of /baseline/greedy_ids)");
    }
    ModelSummary& model = stored.models[m];
    model.name = names[m];
    model.path = paths[m];
    model.format = formats[m];
    model.n_parameters = n_parameters[m];
    model.baseline.metrics.mean_nll = mean_nll[m];
    model.baseline.metrics.perplexity = perplexity[m];
    model.baseline.metrics.accuracy = accuracy[m];
    model.baseline.metrics.positions = positions[m];
    model.baseline.metrics.nonfinite_positions = nonfinite[m];
    const auto first = greedy_ids.begin() + static_cast<ptrdiff_t>(m * longest);
    model.baseline.greedy_ids.assign(first, first + greedy_length[m]);
    model.greedy_text = greedy_text[m];
  }
  if (file.has_object("/grid/probe_kind")) stored.probe_kinds = file.strings("/grid/probe_kind");
  if (stored.probe_kinds.size() > static_cast<size_t>(max_probe_kinds)) {
    file.fail("/grid/probe_kind", "lists " + std::to_string(stored.probe_kinds.size()) +
                                      " probe kinds; at most " + std::to_string(max_probe_kinds) +
                                      " are supported");
  }
  for (const JobTrialColumn& description : job_trial_columns(false, stored.probe_kinds)) {
    if (description.kind < 0) continue;
    const std::vector<double> values =
        file.column<double>("/baseline/" + description.name, n_models, models);
    for (size_t m = 0; m < n_models; ++m) {
      TrialRow row;
      row.metrics = stored.models[m].baseline.metrics;
      with_trial_value(description, row, [&](auto& value) {
        if constexpr (std::is_same_v<std::decay_t<decltype(value)>, double>) value = values[m];
      });
      stored.models[m].baseline.metrics = row.metrics;
    }
  }
  const std::string tensors = "/tensors/name";
  const std::vector<std::string> tensor_names = file.strings(tensors);
  const size_t n_tensors = tensor_names.size();
  const std::vector<int32_t> tensor_model =
      file.column<int32_t>("/tensors/model_idx", n_tensors, tensors);
  const std::vector<int64_t> offsets = file.column<int64_t>("/tensors/offset", n_tensors, tensors);
  const std::vector<int64_t> counts = file.column<int64_t>("/tensors/count", n_tensors, tensors);
  const std::vector<std::string> shapes = file.strings("/tensors/shape", n_tensors, tensors);
  const std::vector<std::string> dtypes = file.strings("/tensors/dtype", n_tensors, tensors);
  // Files written before the role column hold learned parameters only.
  const std::vector<std::string> roles =
      file.has_object("/tensors/role")
          ? file.strings("/tensors/role", n_tensors, tensors)
          : std::vector<std::string>(n_tensors, tensor_role_name(TensorRole::parameter));
  for (size_t t = 0; t < n_tensors; ++t) {
    const std::string which = "tensor " + std::to_string(t) + " ('" + tensor_names[t] + "')";
    if (tensor_model[t] < 0 || static_cast<size_t>(tensor_model[t]) >= n_models) {
      file.fail("/tensors/model_idx", which + " belongs to model " +
                                          std::to_string(tensor_model[t]) + "; expected 0.." +
                                          std::to_string(n_models) + " - 1 (/grid/model)");
    }
    if (offsets[t] < 0 || counts[t] < 0) {
      file.fail("/tensors/offset, /tensors/count",
                which + " has offset " + std::to_string(offsets[t]) + " and count " +
                    std::to_string(counts[t]) + "; expected both >= 0");
    }
    std::optional<std::vector<int64_t>> shape = parse_shape(shapes[t]);
    if (!shape) {
      file.fail("/tensors/shape",
                which + " has shape '" + shapes[t] + "'; expected sizes joined by x, like 64x512");
    }
    TensorInfo tensor;
    tensor.name = tensor_names[t];
    tensor.shape = std::move(*shape);
    tensor.offset = offsets[t];
    tensor.count = counts[t];
    const StoredType types[] = {StoredType::f32, StoredType::f16, StoredType::bf16};
    const auto type = std::find_if(std::begin(types), std::end(types), [&](StoredType candidate) {
      return dtypes[t] == stored_type_name(candidate);
    });
    check_input(
        type != std::end(types),
        in_file(stored.source_path, "/tensors/dtype '" + dtypes[t] + "' is not f32, f16 or bf16"));
    tensor.stored = *type;
    check_input(
        roles[t] == tensor_role_name(TensorRole::parameter) ||
            roles[t] == tensor_role_name(TensorRole::buffer),
        in_file(stored.source_path, "/tensors/role '" + roles[t] + "' is not parameter or buffer"));
    tensor.role = roles[t] == tensor_role_name(TensorRole::buffer) ? TensorRole::buffer
                                                                   : TensorRole::parameter;
    stored.models[static_cast<size_t>(tensor_model[t])].tensors.push_back(std::move(tensor));
  }
}

// Checks a per-trial id column of `group` (/trials, /sites, /paths): every id in
// [0, n_trials), ascending (`strictly`: each trial once).
void check_trial_ids(const Hdf5FileReader& file, const std::string& path,
                     const std::vector<int64_t>& trials, int64_t n_trials, bool strictly) {
  for (size_t i = 0; i < trials.size(); ++i) {
    if (trials[i] < 0 || trials[i] >= n_trials) {
      file.fail(path, "entry " + std::to_string(i) + " is trial " + std::to_string(trials[i]) +
                          "; expected 0.." + std::to_string(n_trials) +
                          " - 1 (root attribute n_trials)");
    }
    if (i > 0 && (trials[i] < trials[i - 1] || (strictly && trials[i] == trials[i - 1]))) {
      file.fail(path, "entry " + std::to_string(i) + " (trial " + std::to_string(trials[i]) +
                          ") follows trial " + std::to_string(trials[i - 1]) + "; expected " +
                          (strictly ? "strictly " : "") + "ascending trial ids");
    }
  }
}

// /paths grouped by trial (every column the same length, trials ascending).
void read_paths(const Hdf5FileReader& file, StoredResults& stored) {
  if (!file.has_object("/paths")) return;
  const std::string steps = "/paths/trial";
  const std::vector<int64_t> trial = file.column<int64_t>(steps);
  const size_t n = trial.size();
  check_trial_ids(file, steps, trial, stored.n_trials, false);
  const std::vector<int64_t> offset = file.column<int64_t>("/paths/offset", n, steps);
  const std::vector<int64_t> bit = file.column<int64_t>("/paths/bit", n, steps);
  const std::vector<float> old_value = file.column<float>("/paths/old_value", n, steps);
  const std::vector<float> new_value = file.column<float>("/paths/new_value", n, steps);
  const std::vector<double> objective = file.column<double>("/paths/objective", n, steps);
  const std::vector<double> mean_nll = file.column<double>("/paths/mean_nll", n, steps);
  const std::vector<double> top1 = file.column<double>("/paths/top1_agreement", n, steps);
  const std::vector<double> accuracy = file.column<double>("/paths/accuracy", n, steps);
  for (size_t s = 0; s < n; ++s) {
    check_input(bit[s] >= 0 && bit[s] < 32,
                in_file(stored.source_path, "/paths/bit outside 0..31"));
    if (stored.paths.empty() || stored.paths.back().trial != trial[s])
      stored.paths.push_back({trial[s], {}});
    stored.paths.back().steps.push_back({offset[s], static_cast<int32_t>(bit[s]), old_value[s],
                                         new_value[s], objective[s], mean_nll[s], top1[s],
                                         accuracy[s]});
  }
}

// /trials through the column table, the bfa paths, then the recorded sites grouped by trial.
void read_rows(const Hdf5FileReader& file, StoredResults& stored) {
  stored.rows = read_trial_rows(file, stored.probe_kinds);
  std::vector<int64_t> trials;  // (n_rows)
  for (const TrialRow& row : stored.rows) {
    trials.push_back(row.trial);
    const bool inside = row.model_idx >= 0 &&
                        static_cast<size_t>(row.model_idx) < stored.models.size() &&
                        row.strategy_idx >= 0 && row.amount_idx >= 0 && row.seed_idx >= 0;
    if (!inside) {
      file.fail("/trials", "trial " + std::to_string(row.trial) + " has model_idx " +
                               std::to_string(row.model_idx) + ", strategy_idx " +
                               std::to_string(row.strategy_idx) + ", fraction_idx " +
                               std::to_string(row.amount_idx) + ", seed_idx " +
                               std::to_string(row.seed_idx) +
                               "; expected indices >= 0 and model_idx below the " +
                               std::to_string(stored.models.size()) + " models of /grid/model");
    }
  }
  check_trial_ids(file, "/trials/trial", trials, stored.n_trials, true);
  read_paths(file, stored);
  if (!file.has_object("/sites")) return;
  const std::string sites = "/sites/trial";
  const std::vector<int64_t> site_trial = file.column<int64_t>(sites);
  const size_t n = site_trial.size();
  check_trial_ids(file, sites, site_trial, stored.n_trials, false);
  const std::vector<int64_t> site_offset = file.column<int64_t>("/sites/offset", n, sites);
  const std::vector<float> old_value = file.column<float>("/sites/old_value", n, sites);
  const std::vector<float> new_value = file.column<float>("/sites/new_value", n, sites);
  for (size_t s = 0; s < n; ++s) {
    if (stored.sites.empty() || stored.sites.back().trial != site_trial[s]) {
      stored.sites.push_back({site_trial[s], {}});
    }
    stored.sites.back().sites.push_back({site_offset[s], old_value[s], new_value[s]});
  }
}

}  // namespace

StoredResults read_results(const std::string& path) {
  const QuietHdf5Errors quiet;
  const Hdf5FileReader file(path);
  check_input(file.has_attribute("schema_version") &&
                  file.text_attribute("schema_version") == results_schema_version,
              in_file(path, std::string("not a fracsweep results file (schema_version is not ") +
                                results_schema_version + ")"));
  StoredResults stored;
  stored.source_path = path;
  read_provenance(file, stored);
  read_models(file, stored);
  read_rows(file, stored);
  return stored;
}

}  // namespace fracsweep
