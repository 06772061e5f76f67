// Writes the HDF5 results file (schema "fracsweep-results/1", documented in README.md).
//
// Layout decisions beyond the README:
// - Every group holding datasets is a self-contained netCDF-4 style group: each axis is a 1-D
//   dimension scale dataset named like its dimension, and every other dataset in the group is
//   attached to the scales of its axes, so `xarray.open_dataset(file, group=..., engine=
//   "h5netcdf")` opens /grid, /trials, /baseline, /tensors and /sites.
//   /grid holds four scales (model, strategy, fraction, seed); /baseline adds the scale
//   `greedy_position` for the second axis of greedy_ids.
// - /trials_table carries the attributes PyTables gives a Table (CLASS, VERSION, TITLE,
//   FIELD_<i>_NAME, NROWS) and is chunked with an unlimited extent like one, so
//   pandas.read_hdf opens it as a generic table.
// - Links and attributes keep creation order, so readers list columns in schema order.
// - The per-trial columns come from one table (fracsweep/io/trial_columns.hpp); /trials also
//   lists that table in its attributes.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "columns.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"
#include "hdf5_writer.hpp"
#include "trial_column_io.hpp"

namespace fracsweep {
namespace {

// 0, 1, ..., n-1
std::vector<int64_t> iota_int64(size_t n) {
  std::vector<int64_t> values(n);
  for (size_t i = 0; i < n; ++i) values[i] = static_cast<int64_t>(i);
  return values;
}

std::string join_distinct_sorted(std::vector<std::string> values, const std::string& separator) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  std::string joined;
  for (const std::string& value : values) {
    if (!joined.empty()) joined += separator;
    joined += value;
  }
  return joined;
}

std::vector<std::string> strategy_labels(const JobConfig& job) {
  std::vector<std::string> labels;  // (n_strategies)
  for (const StrategySpec& strategy : job.strategies) labels.push_back(strategy.canonical());
  return labels;
}

// Broken inputs are bugs in the caller: RunError before anything is created.
void check_content(const ResultsContent& content) {
  check_invariant(content.job != nullptr && content.grid != nullptr,
                  "results content needs its job and grid");
  const JobConfig& job = *content.job;
  check_invariant(content.models.size() == job.models.size(),
                  "results content has one model summary per job model");
  for (size_t m = 0; m < job.models.size(); ++m) {
    check_invariant(content.models[m].name == job.models[m].name,
                    "model summary " + std::to_string(m) + " is '" + content.models[m].name +
                        "', expected job model '" + job.models[m].name + "'");
  }
  check_invariant(job.strategy_texts.size() == job.strategies.size(),
                  "job has one strategy text per strategy");
  const auto in_axis = [](int32_t index, size_t axis_size) {
    return index >= 0 && static_cast<size_t>(index) < axis_size;
  };
  const int64_t n_trials = content.grid->size();
  int64_t previous = -1;
  for (const TrialRow& row : content.rows) {
    check_invariant(row.trial > previous && row.trial < n_trials,
                    "result rows must have ascending trial ids below " + std::to_string(n_trials) +
                        "; found " + std::to_string(row.trial));
    check_invariant(in_axis(row.model_idx, job.models.size()) &&
                        in_axis(row.strategy_idx, job.strategies.size()) &&
                        in_axis(row.amount_idx, job.amounts.size()) &&
                        in_axis(row.seed_idx, job.seeds.size()),
                    "trial " + std::to_string(row.trial) + " has an axis index outside the grid");
    previous = row.trial;
  }
  previous = -1;
  for (const TrialSites& recorded : content.sites) {
    check_invariant(recorded.trial > previous && recorded.trial < n_trials,
                    "recorded sites must have ascending trial ids below " +
                        std::to_string(n_trials) + "; found " + std::to_string(recorded.trial));
    previous = recorded.trial;
  }
}

void write_root_attributes(const Hdf5FileWriter& writer, const ResultsContent& content) {
  const JobConfig& job = *content.job;
  const Provenance& provenance = content.provenance;
  const Group root = writer.root();
  writer.write_text_attribute(root, "schema_version", results_schema_version);
  writer.write_text_attribute(root, "software_version", provenance.software_version);
  writer.write_text_attribute(root, "git_commit", provenance.git_commit);
  writer.write_text_attribute(root, "job_name", job.name);
  writer.write_text_attribute(root, "job_path", job.path);
  writer.write_text_attribute(root, "job_text", job.text);
  writer.write_text_attribute(root, "job_sha256", provenance.job_sha256);
  writer.write_numeric_attribute(root, "job_seed", job.seed);
  writer.write_text_attribute(root, "command_line", provenance.command_line);
  writer.write_text_attribute(root, "schedule", provenance.schedule);
  writer.write_numeric_attribute(root, "mpi_size", static_cast<int32_t>(provenance.mpi_size));
  writer.write_text_attribute(root, "hostnames", join_distinct_sorted(provenance.hostnames, ","));
  writer.write_text_attribute(root, "blis_version", provenance.blis_version);
  writer.write_text_attribute(root, "blis_kernels", provenance.blis_kernels);
  writer.write_text_attribute(root, "blis_kernels_selected_by",
                              provenance.blis_kernels_selected_by);
  writer.write_numeric_attribute(root, "blis_threads",
                                 static_cast<int32_t>(provenance.blis_threads));
  writer.write_text_attribute(root, "started_utc", provenance.started_utc);
  writer.write_text_attribute(root, "finished_utc", provenance.finished_utc);
  writer.write_numeric_attribute(root, "n_trials", content.grid->size());
  writer.write_numeric_attribute(root, "n_trials_done", static_cast<int64_t>(content.rows.size()));
  writer.write_numeric_attribute(root, "shard_index", provenance.shard_index);
  writer.write_numeric_attribute(root, "shard_count", provenance.shard_count);
  writer.write_numeric_attribute(root, "resume_count", provenance.resume_count);
  std::string sessions;
  for (const std::string& session : provenance.sessions) sessions += session + "\n";
  writer.write_text_attribute(root, "sessions", sessions);
  writer.write_text_attribute(root, "site_recipe", provenance.site_recipe);
}

// /grid: the four axes, each its own dimension scale.
void write_grid(const Hdf5FileWriter& writer, const ResultsContent& content) {
  const JobConfig& job = *content.job;
  const Group group = writer.create_group("grid");

  std::vector<std::string> model_names, model_paths, model_formats;  // (n_models)
  std::vector<int64_t> model_parameters;                             // (n_models)
  for (size_t m = 0; m < job.models.size(); ++m) {
    model_names.push_back(job.models[m].name);
    model_paths.push_back(content.models[m].path);
    model_formats.push_back(content.models[m].format);
    model_parameters.push_back(content.models[m].n_parameters);
  }
  write_dimension(writer, group, make_column("model", model_names, "model label"),
                  {make_column("model_path", model_paths, "model file"),
                   make_column("model_format", model_formats, "model file format"),
                   make_column("model_n_parameters", model_parameters, "parameters in the model")});

  std::vector<std::string> names, scopes;  // (n_strategies)
  std::vector<int8_t> deterministic;       // (n_strategies)
  for (const StrategySpec& strategy : job.strategies) {
    names.push_back(strategy.name());
    scopes.push_back(strategy.scope.canonical());
    deterministic.push_back(strategy.deterministic() ? 1 : 0);
  }
  write_dimension(
      writer, group,
      make_column("strategy", strategy_labels(job),
                  "strategy canonical label (keys its value stream)"),
      {make_column("strategy_name", names, "strategy kind"),
       make_column("strategy_scope", scopes, "tensors the strategy may touch"),
       make_column("strategy_spec", job.strategy_texts, "strategy as written in the job file"),
       make_column("strategy_deterministic", deterministic,
                   "1: one trial per fraction whatever the seed axis")});

  std::vector<double> fractions;    // (n_amounts) NaN for count entries
  std::vector<int64_t> counts;      // (n_amounts) -1 for fraction entries
  std::vector<std::string> labels;  // (n_amounts)
  for (const Amount& amount : job.amounts) {
    fractions.push_back(amount.is_count ? not_a_number : amount.fraction);
    counts.push_back(amount.is_count ? amount.count : -1);
    labels.push_back(amount.label());
  }
  write_dimension(writer, group,
                  make_column("fraction", fractions,
                              "fraction of in-scope parameters (NaN for count entries)", "1"),
                  {make_column("count", counts, "sites perturbed (-1 for fraction entries)"),
                   make_column("amount_label", labels, "amount as labelled")});

  write_dimension(writer, group, make_column("seed", job.seeds, "trial seed"), {});
  if (!content.probe_kinds.empty()) {
    write_dimension(
        writer, group,
        make_column("probe_kind", content.probe_kinds, "behaviour probe kind ([eval] probes)"), {});
  }
}

// /trials: one dataset per column over the dimension scale `trial` (the first column), and the
// column table as attributes of the group.
void write_trials(const Hdf5FileWriter& writer, const ResultsContent& content,
                  const std::vector<Column>& columns) {
  const Group group = writer.create_group("trials");
  write_trial_column_table(writer, group, content_trial_columns(content));
  write_dimension(writer, group, columns.front(),
                  std::vector<Column>(columns.begin() + 1, columns.end()));
}

// /baseline: the unperturbed model per model over `model_index`; greedy_ids (M, G) padded
// with -1 over (model_index, greedy_position).
void write_baseline(const Hdf5FileWriter& writer, const ResultsContent& content) {
  const size_t n_models = content.models.size();
  std::vector<int32_t> model_index(n_models);                                        // (n_models)
  std::vector<std::string> model(n_models), greedy_text(n_models);                   // (n_models)
  std::vector<double> mean_nll(n_models), perplexity(n_models), accuracy(n_models);  // (n_models)
  std::vector<int64_t> positions(n_models), nonfinite_positions(n_models),
      greedy_length(n_models);  // (n_models)
  size_t longest_greedy = 0;
  for (size_t m = 0; m < n_models; ++m) {
    const ModelSummary& summary = content.models[m];
    const TrialMetrics& metrics = summary.baseline.metrics;
    model_index[m] = static_cast<int32_t>(m);
    model[m] = content.job->models[m].name;
    mean_nll[m] = metrics.mean_nll;
    perplexity[m] = metrics.perplexity;
    accuracy[m] = metrics.accuracy;
    positions[m] = metrics.positions;
    nonfinite_positions[m] = metrics.nonfinite_positions;
    greedy_length[m] = static_cast<int64_t>(summary.baseline.greedy_ids.size());
    greedy_text[m] = summary.greedy_text;
    longest_greedy = std::max(longest_greedy, summary.baseline.greedy_ids.size());
  }
  std::vector<int32_t> greedy_ids(n_models * longest_greedy, -1);  // (n_models, longest_greedy)
  for (size_t m = 0; m < n_models; ++m) {
    const std::vector<int32_t>& ids = content.models[m].baseline.greedy_ids;
    std::copy(ids.begin(), ids.end(),
              greedy_ids.begin() + static_cast<ptrdiff_t>(m * longest_greedy));
  }

  const Group group = writer.create_group("baseline");
  const Column model_scale =
      make_column("model_index", std::move(model_index), "index into /grid/model");
  const Dataset model_scale_dataset = writer.write_column(group, model_scale);
  writer.make_dimension_scale(model_scale_dataset, model_scale.name);
  const std::vector<Column> columns = {
      make_column("model", std::move(model), "model label"),
      make_column("mean_nll", std::move(mean_nll), "mean negative log-likelihood of the next token",
                  "nats"),
      make_column("perplexity", std::move(perplexity), "exp(mean_nll)", "1"),
      make_column("accuracy", std::move(accuracy),
                  "fraction of positions whose argmax is the next token", "1"),
      make_column("positions", std::move(positions), "predicted positions evaluated"),
      make_column("nonfinite_positions", std::move(nonfinite_positions),
                  "positions whose logits contain NaN or Inf"),
      make_column("greedy_length", std::move(greedy_length), "length of the greedy continuation"),
      make_column("greedy_text", std::move(greedy_text), "decoded greedy continuation"),
  };
  std::vector<Column> probe_columns;  // per probe kind: rate and log-prob over the models
  for (const JobTrialColumn& description : job_trial_columns(false, content.probe_kinds)) {
    if (description.kind < 0) continue;
    std::vector<double> values;  // (n_models)
    for (const ModelSummary& summary : content.models) {
      TrialRow row;
      row.metrics = summary.baseline.metrics;
      with_trial_value(description, row, [&](const auto& value) {
        if constexpr (std::is_same_v<std::decay_t<decltype(value)>, double>)
          values.push_back(value);
      });
    }
    probe_columns.push_back(
        make_column(description.name, std::move(values), description.meaning, description.unit));
  }
  for (const std::vector<Column>* group_columns :
       std::initializer_list<const std::vector<Column>*>{&columns, &probe_columns}) {
    for (const Column& column : *group_columns) {
      const Dataset dataset = writer.write_column(group, column);
      writer.attach_dimension_scale(dataset, model_scale_dataset, 0);
    }
  }

  const Column position_scale = make_column("greedy_position", iota_int64(longest_greedy),
                                            "position in the greedy continuation");
  const Dataset position_scale_dataset = writer.write_column(group, position_scale);
  writer.make_dimension_scale(position_scale_dataset, position_scale.name);
  const Dataset ids =
      writer.write_int32_matrix(group, "greedy_ids", greedy_ids, n_models, longest_greedy);
  writer.write_text_attribute(ids, "long_name", "greedy continuation token ids (-1: padding)");
  writer.attach_dimension_scale(ids, model_scale_dataset, 0);
  writer.attach_dimension_scale(ids, position_scale_dataset, 1);
}

// /tensors: every named tensor of every model, over `tensor`.
void write_tensors(const Hdf5FileWriter& writer, const ResultsContent& content) {
  std::vector<int32_t> model_idx;                         // (n_tensors)
  std::vector<std::string> names, shapes, dtypes, roles;  // (n_tensors)
  std::vector<int64_t> offsets, counts;                   // (n_tensors)
  for (size_t m = 0; m < content.models.size(); ++m) {
    for (const TensorInfo& tensor : content.models[m].tensors) {
      model_idx.push_back(static_cast<int32_t>(m));
      names.push_back(tensor.name);
      dtypes.push_back(stored_type_name(tensor.stored));
      offsets.push_back(tensor.offset);
      counts.push_back(tensor.count);
      shapes.push_back(shape_text(tensor.shape));
      roles.push_back(tensor_role_name(tensor.role));
    }
  }
  // Built before the columns below move their buffers away.
  const Column tensor_scale = make_column("tensor", iota_int64(names.size()), "tensor index");
  const Group group = writer.create_group("tensors");
  write_dimension(
      writer, group, tensor_scale,
      {make_column("model_idx", std::move(model_idx), "index into /grid/model"),
       make_column("name", std::move(names), "tensor name"),
       make_column("offset", std::move(offsets),
                   "first element in the model's flat parameter order"),
       make_column("count", std::move(counts), "elements"),
       make_column("shape", std::move(shapes), "row-major shape"),
       make_column("dtype", std::move(dtypes), "stored number format: f32, f16 or bf16"),
       make_column("role", std::move(roles),
                   "parameter (learned; the default scope) or buffer (e.g. batch-norm running "
                   "statistics)")});
}

// The tensor of `tensors` (sorted by offset) holding flat parameter `offset`.
const TensorInfo& tensor_holding(const std::vector<TensorInfo>& tensors, int64_t offset,
                                 const std::string& model_name) {
  const auto after = std::upper_bound(
      tensors.begin(), tensors.end(), offset,
      [](int64_t value, const TensorInfo& tensor) { return value < tensor.offset; });
  check_invariant(
      after != tensors.begin() && offset < std::prev(after)->offset + std::prev(after)->count,
      "recorded site offset " + std::to_string(offset) + " is in no tensor of model " + model_name);
  return *std::prev(after);
}

// /sites: every recorded site over `site`, with the tensor it falls in.
void write_sites(const Hdf5FileWriter& writer, const ResultsContent& content) {
  std::vector<int64_t> trial, site_rank, offset, index_in_tensor;  // (n_sites)
  std::vector<std::string> tensor;                                 // (n_sites)
  std::vector<float> old_value, new_value;                         // (n_sites)
  for (const TrialSites& recorded : content.sites) {
    const auto model_idx = static_cast<size_t>(content.grid->trial(recorded.trial).model_idx);
    const ModelSummary& model = content.models.at(model_idx);
    for (size_t rank = 0; rank < recorded.sites.size(); ++rank) {
      const SiteRecord& site = recorded.sites[rank];
      const TensorInfo& holder = tensor_holding(model.tensors, site.offset, model.name);
      trial.push_back(recorded.trial);
      site_rank.push_back(static_cast<int64_t>(rank));
      offset.push_back(site.offset);
      tensor.push_back(holder.name);
      index_in_tensor.push_back(site.offset - holder.offset);
      old_value.push_back(site.old_value);
      new_value.push_back(site.new_value);
    }
  }
  // Built before the columns below move their buffers away.
  const Column site_scale = make_column("site", iota_int64(trial.size()), "site index");
  const Group group = writer.create_group("sites");
  write_dimension(
      writer, group, site_scale,
      {make_column("trial", std::move(trial), "trial id"),
       make_column("site_rank", std::move(site_rank), "position in the trial's site order"),
       make_column("offset", std::move(offset), "index into the model's flat parameters"),
       make_column("tensor", std::move(tensor), "tensor holding the site"),
       make_column("index_in_tensor", std::move(index_in_tensor),
                   "flat row-major index within the tensor"),
       make_column("old_value", std::move(old_value), "value before"),
       make_column("new_value", std::move(new_value), "value written")});
}

// /paths: every flip of every bfa trial over `step`, with the tensor and the state after it.
void write_paths(const Hdf5FileWriter& writer, const ResultsContent& content) {
  std::vector<int64_t> trial, step, offset, index_in_tensor, bit;     // (n_steps)
  std::vector<std::string> tensor;                                    // (n_steps)
  std::vector<float> old_value, new_value;                            // (n_steps)
  std::vector<double> objective, mean_nll, top1_agreement, accuracy;  // (n_steps)
  for (const TrialPath& path : content.paths) {
    const auto model_idx = static_cast<size_t>(content.grid->trial(path.trial).model_idx);
    const ModelSummary& model = content.models.at(model_idx);
    for (size_t s = 0; s < path.steps.size(); ++s) {
      const PathStep& flip = path.steps[s];
      const TensorInfo& holder = tensor_holding(model.tensors, flip.offset, model.name);
      trial.push_back(path.trial);
      step.push_back(static_cast<int64_t>(s) + 1);
      offset.push_back(flip.offset);
      tensor.push_back(holder.name);
      index_in_tensor.push_back(flip.offset - holder.offset);
      bit.push_back(flip.bit);
      old_value.push_back(flip.old_value);
      new_value.push_back(flip.new_value);
      objective.push_back(flip.objective);
      mean_nll.push_back(flip.mean_nll);
      top1_agreement.push_back(flip.top1_agreement);
      accuracy.push_back(flip.accuracy);
    }
  }
  // Built before the columns below move their buffers away.
  const Column step_scale = make_column("path_step", iota_int64(trial.size()), "path entry index");
  const Group group = writer.create_group("paths");
  write_dimension(
      writer, group, step_scale,
      {make_column("trial", std::move(trial), "trial id (a bfa trial)"),
       make_column("step", std::move(step), "flip number within the trial, from 1"),
       make_column("offset", std::move(offset), "index into the model's flat parameters"),
       make_column("tensor", std::move(tensor), "tensor holding the flipped parameter"),
       make_column("index_in_tensor", std::move(index_in_tensor),
                   "flat row-major index within the tensor"),
       make_column("bit", std::move(bit), "flipped bit of the stored pattern (0 = lowest)"),
       make_column("old_value", std::move(old_value), "value before the flip"),
       make_column("new_value", std::move(new_value), "value after the flip"),
       make_column("objective", std::move(objective), "the strategy's objective after the flip"),
       make_column("mean_nll", std::move(mean_nll), "mean NLL after the flip (nats)"),
       make_column("top1_agreement", std::move(top1_agreement),
                   "top-1 agreement with the unperturbed model after the flip"),
       make_column("accuracy", std::move(accuracy), "accuracy after the flip")});
}

// /adaptive: one row per search of an adaptive job, over `search`; its criteria, width and
// lattice as attributes of the group.
void write_searches(const Hdf5FileWriter& writer, const ResultsContent& content) {
  const AdaptiveSearch& adaptive = content.job->adaptive.value();
  std::vector<int64_t> model_idx, strategy_idx, seed_idx, criterion_idx, trials;  // (n_searches)
  std::vector<std::string> criterion, outcome;                                    // (n_searches)
  std::vector<double> fraction_below, fraction_above;                             // (n_searches)
  for (const SearchResult& search : content.searches) {
    model_idx.push_back(search.model_idx);
    strategy_idx.push_back(search.strategy_idx);
    seed_idx.push_back(search.seed_idx);
    criterion_idx.push_back(search.criterion_idx);
    criterion.push_back(adaptive.criteria.at(static_cast<size_t>(search.criterion_idx)).text());
    outcome.push_back(search_outcome_name(search.outcome));
    fraction_below.push_back(search.fraction_below);
    fraction_above.push_back(search.fraction_above);
    trials.push_back(search.trials);
  }
  std::vector<std::string> criteria;
  for (const AdaptiveCriterion& rule : adaptive.criteria) criteria.push_back(rule.text());
  const Column search_scale = make_column("search", iota_int64(model_idx.size()), "search index");
  const Group group = writer.create_group("adaptive");
  writer.write_text_attribute(group, "criteria", join(criteria, " "));
  writer.write_numeric_attribute(group, "width", adaptive.width);
  writer.write_numeric_attribute(group, "lattice_levels",
                                 static_cast<int64_t>(adaptive.lattice.levels));
  write_dimension(
      writer, group, search_scale,
      {make_column("model_idx", std::move(model_idx), "index into /grid/model"),
       make_column("strategy_idx", std::move(strategy_idx), "index into /grid/strategy"),
       make_column("seed_idx", std::move(seed_idx), "index into /grid/seed"),
       make_column("criterion_idx", std::move(criterion_idx), "index into the criteria"),
       make_column("criterion", std::move(criterion), "behaviour changed when this holds"),
       make_column("outcome", std::move(outcome),
                   "bracketed, below_range (f* <= smallest fraction), not_reached (f* > largest) "
                   "or pending (the run stopped first)"),
       make_column("fraction_below", std::move(fraction_below),
                   "largest fraction searched where the criterion does not hold (NaN: none)"),
       make_column("fraction_above", std::move(fraction_above),
                   "smallest fraction searched where the criterion holds (NaN: none)"),
       make_column("trials", std::move(trials), "trials the search used")});
}

// Removes a file this process created when destroyed, unless it was renamed into place.
class CreatedFile {
 public:
  explicit CreatedFile(std::string path) : path_(std::move(path)) {}
  CreatedFile(const CreatedFile&) = delete;
  CreatedFile& operator=(const CreatedFile&) = delete;
  ~CreatedFile() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  void rename_to(const std::string& destination) {
    std::error_code error;
    std::filesystem::rename(path_, destination, error);
    if (error) {
      throw RunError("results file " + destination + ": cannot rename " + path_ +
                     " into place: " + error.message());
    }
    path_.clear();
  }

 private:
  std::string path_;
};

}  // namespace

void check_output_path(const std::string& path, bool force) {
  namespace fs = std::filesystem;
  check_input(!path.empty(), "results file: the output path is empty");
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  check_input(!fs::is_directory(status),
              in_file(path, "is a directory; expected the path of a results file"));
  check_input(!fs::exists(status) || force,
              in_file(path, "already exists; use --force to overwrite it"));
  const fs::path target(path);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  check_input(fs::is_directory(directory, error),
              in_file(path, "directory " + directory.string() + " does not exist"));
  check_input(::access(directory.c_str(), W_OK | X_OK) == 0,
              in_file(path, "directory " + directory.string() + " is not writable"));
}

void write_results(const std::string& path, const ResultsContent& content, bool force) {
  check_output_path(path, force);
  check_content(content);
  const std::string temporary_path = path + ".tmp-" + std::to_string(::getpid());
  const QuietHdf5Errors quiet;
  Hdf5FileWriter writer(temporary_path);
  // From here on a failure removes the temporary file.
  CreatedFile temporary(temporary_path);
  write_root_attributes(writer, content);
  write_grid(writer, content);
  const std::vector<Column> columns = trial_column_values(content);
  write_trials(writer, content, columns);
  writer.write_pytables_table("trials_table", columns);
  write_baseline(writer, content);
  write_tensors(writer, content);
  if (!content.sites.empty()) write_sites(writer, content);
  if (!content.paths.empty()) write_paths(writer, content);
  if (content.job->adaptive) write_searches(writer, content);
  writer.close();
  temporary.rename_to(path);
}

}  // namespace fracsweep
