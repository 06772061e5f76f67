#include "trial_column_io.hpp"

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "fracsweep/io/trial_columns.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

// An empty buffer of the column's stored type, room for `n_rows`.
ColumnValues empty_values(ColumnType type, size_t n_rows) {
  switch (type) {
    case ColumnType::int32:
      return std::vector<int32_t>(n_rows);
    case ColumnType::int64:
      return std::vector<int64_t>(n_rows);
    case ColumnType::float64:
      return std::vector<double>(n_rows);
    case ColumnType::text:
      return std::vector<std::string>(n_rows);
  }
  return {};
}

// The job-derived labels of every row, one buffer per TrialLabel, each (n_rows).
struct RowLabels {
  std::vector<std::string> model, strategy, stored_dtype;

  const std::vector<std::string>& of(TrialLabel label) const {
    switch (label) {
      case TrialLabel::model:
        return model;
      case TrialLabel::strategy:
        return strategy;
      case TrialLabel::stored_dtype:
        return stored_dtype;
    }
    return model;
  }
};

RowLabels row_labels(const ResultsContent& content) {
  const JobConfig& job = *content.job;
  // (n_models, n_strategies) stored formats each pair perturbs.
  std::vector<std::vector<std::string>> stored_types(content.models.size());
  for (size_t m = 0; m < content.models.size(); ++m) {
    for (const StrategySpec& strategy : job.strategies) {
      stored_types[m].push_back(stored_types_in_scope(content.models[m].tensors, strategy.scope));
    }
  }
  RowLabels labels;
  for (const TrialRow& row : content.rows) {
    const auto model = static_cast<size_t>(row.model_idx);
    const auto strategy = static_cast<size_t>(row.strategy_idx);
    labels.model.push_back(job.models[model].name);
    labels.strategy.push_back(job.strategies[strategy].canonical());
    labels.stored_dtype.push_back(stored_types[model][strategy]);
  }
  return labels;
}

Column described_column(const JobTrialColumn& description, ColumnValues values) {
  Column column =
      make_column(description.name, std::move(values), description.meaning, description.unit);
  if (description.status_flags) {
    column.flag_values = {status_ok, status_nonfinite};
    column.flag_meanings = trial_status_meanings;
  }
  return column;
}

// Values of one numeric column read from `file` into `rows`.
template <typename T>
void read_into_rows(const Hdf5FileReader& file, const JobTrialColumn& description,
                    std::vector<TrialRow>& rows) {
  const std::string path = "/trials/" + description.name;
  const std::vector<T> values = file.column<T>(path, rows.size(), "/trials/trial");  // (n_rows)
  for (size_t i = 0; i < rows.size(); ++i) {
    with_trial_value(description, rows[i], [&](auto& value) {
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, T>) value = values[i];
    });
  }
}

}  // namespace

std::vector<JobTrialColumn> content_trial_columns(const ResultsContent& content) {
  const auto& models = content.job->models;
  const bool reference = std::any_of(models.begin(), models.end(), [](const ModelSpec& model) {
    return !model.reference.empty();
  });
  return job_trial_columns(reference, content.probe_kinds);
}

std::vector<Column> trial_column_values(const ResultsContent& content) {
  const RowLabels labels = row_labels(content);
  const size_t n_rows = content.rows.size();
  const std::vector<JobTrialColumn> descriptions = content_trial_columns(content);
  std::vector<Column> columns;
  columns.reserve(descriptions.size());
  for (const JobTrialColumn& description : descriptions) {
    if (const auto* label = std::get_if<TrialLabel>(&description.field)) {
      columns.push_back(described_column(description, labels.of(*label)));
      continue;
    }
    ColumnValues values = empty_values(description.type(), n_rows);
    std::visit(
        [&](auto& buffer) {
          for (size_t i = 0; i < n_rows; ++i) {
            with_trial_value(description, content.rows[i], [&](const auto& value) {
              using Buffer = std::decay_t<decltype(buffer)>;
              if constexpr (std::is_same_v<typename Buffer::value_type,
                                           std::decay_t<decltype(value)>>) {
                buffer[i] = value;
              }
            });
          }
        },
        values);
    columns.push_back(described_column(description, std::move(values)));
  }
  return columns;
}

void write_trial_column_table(const Hdf5FileWriter& writer, const Group& trials,
                              const std::vector<JobTrialColumn>& descriptions) {
  std::vector<std::string> names, types, units, long_names;  // (n_columns)
  for (const JobTrialColumn& description : descriptions) {
    names.emplace_back(description.name);
    types.emplace_back(column_type_name(description.type()));
    units.emplace_back(description.unit);
    long_names.emplace_back(description.meaning);
  }
  writer.write_text_array_attribute(trials, "column_names", names);
  writer.write_text_array_attribute(trials, "column_types", types);
  writer.write_text_array_attribute(trials, "column_units", units);
  writer.write_text_array_attribute(trials, "column_long_names", long_names);
}

std::vector<TrialRow> read_trial_rows(const Hdf5FileReader& file,
                                      const std::vector<std::string>& probe_kinds) {
  std::vector<TrialRow> rows(file.column<int64_t>("/trials/trial").size());
  const bool reference = file.has_object("/trials/" + std::string(reference_columns[0].name));
  for (const JobTrialColumn& description : job_trial_columns(reference, probe_kinds)) {
    switch (description.type()) {
      case ColumnType::int32:
        read_into_rows<int32_t>(file, description, rows);
        break;
      case ColumnType::int64:
        read_into_rows<int64_t>(file, description, rows);
        break;
      case ColumnType::float64:
        read_into_rows<double>(file, description, rows);
        break;
      case ColumnType::text:
        break;  // labels: derived from the grid
    }
  }
  return rows;
}

}  // namespace fracsweep
