#include "columns.hpp"

#include <algorithm>
#include <type_traits>
#include <utility>

namespace fracsweep {

Column make_column(std::string name, ColumnValues values, std::string long_name,
                   std::string units) {
  Column made;
  made.name = std::move(name);
  made.values = std::move(values);
  made.long_name = std::move(long_name);
  made.units = std::move(units);
  return made;
}

size_t column_length(const Column& column) {
  return std::visit([](const auto& values) { return values.size(); }, column.values);
}

size_t table_field_size(const Column& column) {
  return std::visit(
      [](const auto& values) -> size_t {
        using Values = std::decay_t<decltype(values)>;
        if constexpr (std::is_same_v<Values, std::vector<std::string>>) {
          size_t longest = 1;
          for (const std::string& value : values) longest = std::max(longest, value.size());
          return longest;
        } else {
          return sizeof(typename Values::value_type);
        }
      },
      column.values);
}

}  // namespace fracsweep
