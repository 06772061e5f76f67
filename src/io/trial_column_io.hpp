#pragma once
// Private to the io layer: the per-trial column table (fracsweep/io/trial_columns.hpp) turned
// into the columns the writer stores, the schema attributes of /trials, and rows read back.
#include <string>
#include <vector>

#include "columns.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/io/trial_columns.hpp"
#include "hdf5_reader.hpp"
#include "hdf5_writer.hpp"

namespace fracsweep {

// The columns of the content's file: the fixed table, the reference columns when some model has
// reference=NAME, the probe columns of content.probe_kinds.
std::vector<JobTrialColumn> content_trial_columns(const ResultsContent& content);

// One Column per entry of content_trial_columns, in schema order, over content.rows.
std::vector<Column> trial_column_values(const ResultsContent& content);

// The /trials group attributes listing every column: column_names, column_types, column_units,
// column_long_names (1-D string arrays in schema order).
void write_trial_column_table(const Hdf5FileWriter& writer, const Group& trials,
                              const std::vector<JobTrialColumn>& descriptions);

// Every /trials row of `file`, from the TrialRow and TrialMetrics columns of the table (labels
// are derived from the grid, not read); the reference columns when the file has them and the
// columns of `probe_kinds`. InputError when a column is missing or of another length than
// /trials/trial.
std::vector<TrialRow> read_trial_rows(const Hdf5FileReader& file,
                                      const std::vector<std::string>& probe_kinds);

}  // namespace fracsweep
