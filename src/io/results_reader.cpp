// Reads a results file back (`fracsweep merge`, resume): provenance, models, trials, sites.
#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

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

// "64x512" -> {64, 512}; "" -> {}.
std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  for (const std::string& part : split(text, 'x')) shape.push_back(std::stoll(part));
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
  stored.job_name = file.text_attribute("job_name");
  stored.job_path = file.text_attribute("job_path");
  stored.job_text = file.text_attribute("job_text");
  stored.n_trials = file.numeric_attribute<int64_t>("n_trials");
}

void read_models(const Hdf5FileReader& file, StoredResults& stored) {
  const std::vector<std::string> names = file.strings("/grid/model");
  const std::vector<std::string> paths = file.strings("/grid/model_path");
  const std::vector<std::string> formats = file.strings("/grid/model_format");
  const std::vector<int64_t> n_parameters = file.numeric<int64_t>("/grid/model_n_parameters");
  const std::vector<double> mean_nll = file.numeric<double>("/baseline/mean_nll");
  const std::vector<double> perplexity = file.numeric<double>("/baseline/perplexity");
  const std::vector<double> accuracy = file.numeric<double>("/baseline/accuracy");
  const std::vector<int64_t> positions = file.numeric<int64_t>("/baseline/positions");
  const std::vector<int64_t> nonfinite = file.numeric<int64_t>("/baseline/nonfinite_positions");
  const std::vector<int64_t> greedy_length = file.numeric<int64_t>("/baseline/greedy_length");
  const std::vector<std::string> greedy_text = file.strings("/baseline/greedy_text");
  std::vector<hsize_t> greedy_extent;  // (n_models, longest greedy continuation)
  const std::vector<int32_t> greedy_ids =
      file.numeric<int32_t>("/baseline/greedy_ids", &greedy_extent);
  const size_t n_models = names.size();
  const bool consistent = paths.size() == n_models && formats.size() == n_models &&
                          n_parameters.size() == n_models && mean_nll.size() == n_models &&
                          greedy_text.size() == n_models && greedy_length.size() == n_models &&
                          greedy_extent.size() == 2 && greedy_extent[0] == n_models;
  check_input(consistent,
              in_file(stored.source_path, "/grid and /baseline disagree on the models"));
  const auto longest = static_cast<size_t>(greedy_extent[1]);
  stored.models.resize(n_models);
  for (size_t m = 0; m < n_models; ++m) {
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
  for (const JobTrialColumn& description : job_trial_columns(false, stored.probe_kinds)) {
    if (description.kind < 0) continue;
    const std::vector<double> values = file.numeric<double>("/baseline/" + description.name);
    check_input(values.size() == n_models,
                in_file(stored.source_path,
                        "/baseline/" + description.name + " disagrees with /grid/model"));
    for (size_t m = 0; m < n_models; ++m) {
      TrialRow row;
      row.metrics = stored.models[m].baseline.metrics;
      with_trial_value(description, row, [&](auto& value) {
        if constexpr (std::is_same_v<std::decay_t<decltype(value)>, double>) value = values[m];
      });
      stored.models[m].baseline.metrics = row.metrics;
    }
  }
  const std::vector<int32_t> tensor_model = file.numeric<int32_t>("/tensors/model_idx");
  const std::vector<std::string> tensor_names = file.strings("/tensors/name");
  const std::vector<int64_t> offsets = file.numeric<int64_t>("/tensors/offset");
  const std::vector<int64_t> counts = file.numeric<int64_t>("/tensors/count");
  const std::vector<std::string> shapes = file.strings("/tensors/shape");
  const std::vector<std::string> dtypes = file.strings("/tensors/dtype");
  // Files written before the role column hold learned parameters only.
  const std::vector<std::string> roles =
      file.has_object("/tensors/role")
          ? file.strings("/tensors/role")
          : std::vector<std::string>(tensor_names.size(), tensor_role_name(TensorRole::parameter));
  for (const size_t length : {tensor_model.size(), offsets.size(), counts.size(), shapes.size(),
                              dtypes.size(), roles.size()}) {
    check_input(length == tensor_names.size(),
                in_file(stored.source_path, "/tensors columns differ in length"));
  }
  for (size_t t = 0; t < tensor_names.size(); ++t) {
    check_input(tensor_model[t] >= 0 && static_cast<size_t>(tensor_model[t]) < n_models,
                in_file(stored.source_path, "/tensors/model_idx outside /grid/model"));
    TensorInfo tensor;
    tensor.name = tensor_names[t];
    tensor.shape = parse_shape(shapes[t]);
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

// /paths grouped by trial (every column the same length, trials ascending).
void read_paths(const Hdf5FileReader& file, StoredResults& stored) {
  if (!file.has_object("/paths")) return;
  const std::vector<int64_t> trial = file.numeric<int64_t>("/paths/trial");
  const std::vector<int64_t> offset = file.numeric<int64_t>("/paths/offset");
  const std::vector<int64_t> bit = file.numeric<int64_t>("/paths/bit");
  const std::vector<float> old_value = file.numeric<float>("/paths/old_value");
  const std::vector<float> new_value = file.numeric<float>("/paths/new_value");
  const std::vector<double> objective = file.numeric<double>("/paths/objective");
  const std::vector<double> mean_nll = file.numeric<double>("/paths/mean_nll");
  const std::vector<double> top1 = file.numeric<double>("/paths/top1_agreement");
  const std::vector<double> accuracy = file.numeric<double>("/paths/accuracy");
  const size_t n = trial.size();
  for (const size_t length : {offset.size(), bit.size(), old_value.size(), new_value.size(),
                              objective.size(), mean_nll.size(), top1.size(), accuracy.size()}) {
    check_input(length == n, in_file(stored.source_path, "/paths columns differ in length"));
  }
  for (size_t s = 0; s < n; ++s) {
    check_input(stored.paths.empty() || stored.paths.back().trial <= trial[s],
                in_file(stored.source_path, "/paths/trial is not ascending"));
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
  read_paths(file, stored);
  if (!file.has_object("/sites")) return;
  const std::vector<int64_t> site_trial = file.numeric<int64_t>("/sites/trial");
  const std::vector<int64_t> site_offset = file.numeric<int64_t>("/sites/offset");
  const std::vector<float> old_value = file.numeric<float>("/sites/old_value");
  const std::vector<float> new_value = file.numeric<float>("/sites/new_value");
  for (size_t s = 0; s < site_trial.size(); ++s) {
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
