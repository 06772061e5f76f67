#include "fracsweep/util/text.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <sstream>

namespace fracsweep {

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(separator, start), text.size());
    if (end > start) parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> words;
  std::istringstream stream{std::string(text)};
  std::string word;
  while (stream >> word) words.push_back(word);
  return words;
}

std::string shortest_number_text(double value) {
  char buffer[32];  // the longest shortest-round-trip double, "-2.2250738585072014e-308", is 24
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

std::string significant_digits(double value, int digits) {
  char buffer[48];  // "-d.<up to 17 digits>e-308"
  std::snprintf(buffer, sizeof buffer, "%.*g", std::clamp(digits, 1, 17), value);
  return buffer;
}

}  // namespace fracsweep
