#pragma once
// Private to the io layer: the per-trial column table (fracsweep/io/trial_columns.hpp) turned
// into the columns the writer stores, the schema attributes of /trials, and rows read back.
#include <string>
#include <vector>

#include "columns.hpp"
#include "fracsweep/io/results.hpp"
#include "hdf5_reader.hpp"
#include "hdf5_writer.hpp"

namespace fracsweep {

// One Column per entry of trial_columns, in schema order, over content.rows.
std::vector<Column> trial_column_values(const ResultsContent& content);

// The /trials group attributes listing every column: column_names, column_types, column_units,
// column_long_names (1-D string arrays in schema order).
void write_trial_column_table(const Hdf5FileWriter& writer, const Group& trials);

// Every /trials row of `file`, from the TrialRow and TrialMetrics columns of the table (labels
// are derived from the grid, not read). InputError when a column is missing or of another
// length than /trials/trial.
std::vector<TrialRow> read_trial_rows(const Hdf5FileReader& file);

}  // namespace fracsweep
