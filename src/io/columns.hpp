#pragma once
// Private to the io layer: one 1-D dataset of the results file as values plus its CF
// attributes, the unit the writer stores both as a dataset and as a field of /trials_table.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace fracsweep {

using ColumnValues =
    std::variant<std::vector<int8_t>, std::vector<int32_t>, std::vector<int64_t>,
                 std::vector<float>, std::vector<double>, std::vector<std::string>>;

struct Column {
  std::string name;
  ColumnValues values;
  std::string long_name;             // omitted when empty
  std::string units;                 // omitted when empty
  std::vector<int32_t> flag_values;  // CF flags (status columns); omitted when empty
  std::string flag_meanings;
};

Column make_column(std::string name, ColumnValues values, std::string long_name,
                   std::string units = "");

size_t column_length(const Column& column);

// Bytes of one value in a compound table (strings: the longest, at least 1).
size_t table_field_size(const Column& column);

}  // namespace fracsweep
