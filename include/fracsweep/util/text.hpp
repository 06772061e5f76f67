#pragma once
// Small text helpers shared by the parsers, labels and messages: splitting, joining and the
// number text that ends up in strategy labels and echoed jobs.
#include <string>
#include <string_view>
#include <vector>

namespace fracsweep {

// The non-empty parts of `text` between `separator`s ("a,,b," -> {"a", "b"}).
std::vector<std::string> split(std::string_view text, char separator);
// The words of `text` between runs of whitespace (space, tab, newline, ...).
std::vector<std::string> split_whitespace(std::string_view text);

// items[0] + separator + items[1] + ... ("" for no items); any container of strings.
template <typename Strings>
std::string join(const Strings& items, std::string_view separator) {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += separator;
    out += item;
    first = false;
  }
  return out;
}

// Shortest text that reads back as the same double (std::to_chars): "0.1", "1e-05", "1e+05",
// "123456", "3".
std::string shortest_number_text(double value);

// `value` with `digits` significant digits (printf's %g), for messages: "3.85e-06".
std::string significant_digits(double value, int digits);

}  // namespace fracsweep
