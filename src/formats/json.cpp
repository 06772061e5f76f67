// Over 500 lines for one reason: nlohmann's SAX events carry no offsets, so keeping json.cpp's
// messages (byte, line, column, what was expected) needs the builder to follow the text and to
// name each lexical error itself.
#include "fracsweep/formats/json.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

const char* kind_name(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::null:
      return "null";
    case JsonValue::Kind::boolean:
      return "boolean";
    case JsonValue::Kind::number:
      return "number";
    case JsonValue::Kind::string:
      return "string";
    case JsonValue::Kind::array:
      return "array";
    case JsonValue::Kind::object:
      return "object";
  }
  return "unknown";
}

[[noreturn]] void throw_kind_mismatch(const std::string& where, const char* expected,
                                      JsonValue::Kind found) {
  throw InputError(where + ": expected " + expected + ", found " + kind_name(found));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex_digit(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_whitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_high_surrogate(uint32_t unit) {
  return unit >= 0xD800 && unit <= 0xDBFF;
}
bool is_low_surrogate(uint32_t unit) {
  return unit >= 0xDC00 && unit <= 0xDFFF;
}

std::string hex4(uint32_t unit) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", unit);
  return hex;
}

constexpr const char* any_value = "a value (object, array, string, number, true, false or null)";

size_t find_quote_or_backslash(std::string_view text, size_t from) {
  for (size_t offset = from; offset < text.size(); ++offset) {
    if (text[offset] == '"' || text[offset] == '\\') return offset;
  }
  return std::string_view::npos;
}

// The opening quote of the string `text` ends inside (after a complete character, not after a
// '\\'), if any. Only strings hold '"' and '\\' in valid JSON, so the quotes toggle in and out
// of strings up to the first error, wherever it is.
std::optional<size_t> unterminated_string_start(std::string_view text) {
  size_t offset = 0;
  while (true) {
    const size_t open = text.find('"', offset);
    if (open == std::string_view::npos) return std::nullopt;
    offset = open + 1;
    while (true) {
      offset = find_quote_or_backslash(text, offset);
      if (offset == std::string_view::npos) return open;
      if (text[offset] == '"') break;
      if (offset + 1 >= text.size()) return std::nullopt;  // ends after a '\\'
      offset += 2;
    }
    ++offset;
  }
}

// Printable ASCII without escapes: a string body in which nothing can fail.
bool is_plain_string_body(std::string_view body) {
  return std::all_of(body.begin(), body.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 && byte < 0x80 && c != '\\';
  });
}

// nlohmann's out_of_range.406: a number whose double is infinite ("number overflow").
constexpr int number_overflow_id = 406;

// What the grammar allowed next, and the offset where the offending token starts.
struct Expectation {
  size_t offset = 0;
  const char* what = any_value;
  enum class Slot { value, key, punctuation } slot = Slot::value;
};

// Builds the JsonValue tree from nlohmann's SAX events and enforces JsonLimits as each event
// arrives, before anything below it is built. SAX events carry no offsets, so the builder
// follows the text itself: between the tokens of two consecutive events there is only
// whitespace and at most one ',' or ':', so each event's token is found by skipping those from
// the end of the previous one. The offsets make every message say where, as json.cpp always did.
class TreeBuilder {
 public:
  TreeBuilder(std::string_view text, const std::string& source, const JsonLimits& limits)
      : text_(text), source_(source), limits_(limits) {}

  // SAX interface (nlohmann::json::sax_parse).
  bool null() { return add_literal(4, JsonValue::make_null()); }
  bool boolean(bool value) { return add_literal(value ? 4 : 5, JsonValue::make_bool(value)); }
  bool number_integer(int64_t) { return add_number(nullptr); }
  bool number_unsigned(uint64_t) { return add_number(nullptr); }
  bool number_float(double, const std::string& number_text) { return add_number(&number_text); }
  bool string(std::string& value) {
    const size_t start = begin_value();
    cursor_ = string_end(start);
    add(JsonValue::make_string(value));  // a copy: moving out would empty nlohmann's token buffer
    return true;
  }
  bool binary(nlohmann::json::binary_t&) {
    throw RunError("internal error: " + source_ + ": the JSON parser reported binary data");
  }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool key(std::string& key) {
    const size_t start = next_token_start();
    cursor_ = string_end(start);
    Frame& object = frames_.back();
    if (!object.keys.insert(key).second) fail_with(start, "duplicate key \"" + key + "\"");
    object.pending_key = key;  // a copy, as in string()
    object.step = Step::after_key;
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  [[noreturn]] bool parse_error(size_t chars_read, const std::string&,
                                const nlohmann::json::exception& error) {
    report_error(chars_read - 1, error.id);
  }

  // The finished document; nlohmann stops at a NUL byte as if the input ended there, so
  // anything left after the value is rejected here.
  JsonValue take_document() {
    const size_t rest = skip_whitespace(cursor_);
    if (rest != text_.size()) fail(rest, "end of input after the value");
    return std::move(document_);
  }

  // Reports the error of the token at the next expected position that failed at byte
  // `failed_at` (text size: at the end of input), in json.cpp's words. `error_id` is
  // nlohmann's exception id (0 when the error is found before nlohmann runs).
  [[noreturn]] void report_error(size_t failed_at, int error_id) const {
    const Expectation expected = expectation();
    const size_t start = expected.offset;
    if (start >= text_.size()) fail(start, expected.what);
    if (expected.slot == Expectation::Slot::punctuation) {
      if (is_digit(text_[start]) && start > 0 && text_[start - 1] == '0') {
        // Only a number that is exactly "0" or "-0" ends right before a digit.
        fail_with(start >= 2 && text_[start - 2] == '-' ? start - 2 : start - 1,
                  "leading zeros are not allowed");
      }
      fail(start, expected.what);
    }
    if (expected.slot == Expectation::Slot::value) check_value_count(start);
    const char first = text_[start];
    if (first == '"') report_string_error(start, failed_at);
    if (expected.slot == Expectation::Slot::value) {
      if (first == 't') fail(failed_at, "the literal 'true'");
      if (first == 'f') fail(failed_at, "the literal 'false'");
      if (first == 'n') fail(failed_at, "the literal 'null'");
      if (first == '-' || is_digit(first)) report_number_error(start, failed_at, error_id);
    }
    fail(start, expected.what);
  }

 private:
  enum class Step { opened, after_key, after_value };

  // One object or array being built.
  struct Frame {
    bool is_object = false;
    Step step = Step::opened;
    JsonValue::Array items;
    JsonValue::Object members;
    std::unordered_set<std::string> keys;  // of members, to reject duplicates
    std::string pending_key;               // the key whose value comes next
  };

  [[noreturn]] void fail(size_t offset, const std::string& expected) const {
    fail_with(offset, "expected " + expected + ", found " + describe_at(offset));
  }

  [[noreturn]] void fail_with(size_t offset, const std::string& problem) const {
    int64_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < offset && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    const auto column = static_cast<int64_t>(offset - line_start) + 1;
    throw InputError(source_ + ": JSON error at byte " + std::to_string(offset) + " (line " +
                     std::to_string(line) + ", column " + std::to_string(column) + "): " + problem);
  }

  std::string describe_at(size_t offset) const {
    if (offset >= text_.size()) return "end of input";
    const auto byte = static_cast<unsigned char>(text_[offset]);
    if (byte >= 0x21 && byte <= 0x7E) return std::string("'") + static_cast<char>(byte) + "'";
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", byte);
    return std::string("byte ") + hex;
  }

  size_t skip_whitespace(size_t offset) const {
    while (offset < text_.size() && is_whitespace(text_[offset])) ++offset;
    return offset;
  }

  // Start of the token of the current event (the input up to it is valid JSON).
  size_t next_token_start() const {
    size_t offset = skip_whitespace(cursor_);
    if (offset < text_.size() && (text_[offset] == ',' || text_[offset] == ':')) {
      offset = skip_whitespace(offset + 1);
    }
    return offset;
  }

  // One past the closing quote of the string token that opens at `open`, whose body nlohmann
  // accepted; a string closed only by the quote parse_json appended is unterminated.
  size_t string_end(size_t open) const {
    size_t offset = open + 1;
    while (true) {
      offset = find_quote_or_backslash(text_, offset);
      if (offset == std::string_view::npos) {
        fail_with(open, "unterminated string (no closing '\"' before the end of input)");
      }
      if (text_[offset] == '"') return offset + 1;
      offset += 2;  // an escape; \uXXXX continues with hex digits
    }
  }

  void check_value_count(size_t offset) const {
    if (value_count_ + 1 > limits_.max_values) {
      fail_with(offset, "more than the limit of " + std::to_string(limits_.max_values) + " values");
    }
  }

  size_t begin_value() {
    const size_t start = next_token_start();
    check_value_count(start);
    ++value_count_;
    return start;
  }

  bool add_literal(size_t length, JsonValue value) {
    cursor_ = begin_value() + length;
    add(std::move(value));
    return true;
  }

  // `float_text` is nlohmann's text of a number with a fraction or exponent (or beyond
  // 64 bits); integers are measured here: -? (0 | [1-9][0-9]*).
  bool add_number(const std::string* float_text) {
    const size_t start = begin_value();
    size_t end = start;
    if (float_text != nullptr) {
      end += float_text->size();
    } else {
      if (text_[end] == '-') ++end;
      if (text_[end] == '0') {
        ++end;
      } else {
        while (end < text_.size() && is_digit(text_[end])) ++end;
      }
    }
    cursor_ = end;
    const std::string_view number_text = text_.substr(start, end - start);
    double value = 0;
    const auto [parsed_end, error] =
        std::from_chars(number_text.data(), number_text.data() + number_text.size(), value);
    if (error == std::errc::result_out_of_range) {
      fail_with(start,
                "expected a number within the range of double, found " + std::string(number_text));
    }
    if (error != std::errc() || parsed_end != number_text.data() + number_text.size()) {
      fail_with(start, "cannot convert the number " + std::string(number_text));
    }
    add(JsonValue::make_number(value, std::string(number_text)));
    return true;
  }

  bool open(bool is_object) {
    const size_t start = begin_value();
    if (static_cast<int64_t>(frames_.size()) + 1 > limits_.max_depth) {
      fail_with(start, "nesting deeper than the limit of " + std::to_string(limits_.max_depth) +
                           " levels");
    }
    cursor_ = start + 1;
    frames_.emplace_back();
    frames_.back().is_object = is_object;
    return true;
  }

  bool close() {
    cursor_ = next_token_start() + 1;
    Frame frame = std::move(frames_.back());
    frames_.pop_back();
    add(frame.is_object ? JsonValue::make_object(std::move(frame.members))
                        : JsonValue::make_array(std::move(frame.items)));
    return true;
  }

  void add(JsonValue value) {
    if (frames_.empty()) {
      document_ = std::move(value);
      has_document_ = true;
      return;
    }
    Frame& frame = frames_.back();
    if (frame.is_object) {
      frame.members.emplace_back(std::move(frame.pending_key), std::move(value));
    } else {
      frame.items.push_back(std::move(value));
    }
    frame.step = Step::after_value;
  }

  // What json.cpp's grammar expected after the last event, and where the next token starts
  // (after a ',' or ':' when one was allowed and present).
  Expectation expectation() const {
    using Slot = Expectation::Slot;
    const size_t after_last = skip_whitespace(cursor_);
    if (frames_.empty()) {
      if (has_document_) return {after_last, "end of input after the value", Slot::punctuation};
      return {after_last, any_value, Slot::value};
    }
    const Frame& frame = frames_.back();
    const char separator = frame.step == Step::after_key     ? ':'
                           : frame.step == Step::after_value ? ','
                                                             : '\0';
    const bool separated =
        separator != '\0' && after_last < text_.size() && text_[after_last] == separator;
    const size_t next = separated ? skip_whitespace(after_last + 1) : after_last;
    const Expectation key{next, "a string key", Slot::key};
    const Expectation value{next, any_value, Slot::value};
    switch (frame.step) {
      case Step::opened:
        return frame.is_object ? key : value;
      case Step::after_key:
        return separated ? value : Expectation{next, "':' after the key", Slot::punctuation};
      case Step::after_value:
        if (separated) return frame.is_object ? key : value;
        return {next, frame.is_object ? "',' or '}'" : "',' or ']'", Slot::punctuation};
    }
    return value;
  }

  // nlohmann stopped inside the number token at `start`, on byte `failed_at`.
  [[noreturn]] void report_number_error(size_t start, size_t failed_at, int error_id) const {
    if (error_id == number_overflow_id) {
      fail_with(start, "expected a number within the range of double, found " +
                           std::string(text_.substr(start, failed_at + 1 - start)));
    }
    const char before = text_[failed_at - 1];
    if (before == '.') fail(failed_at, "a digit after the decimal point");
    if (failed_at - 1 == start) fail(failed_at, "a digit");  // after the leading '-'
    fail(failed_at, "a digit in the exponent");
  }

  // nlohmann stopped inside the string that opens at `open`, on byte `failed_at`. Everything
  // before that byte was accepted, so stepping over whole elements (bytes, escapes, UTF-8
  // sequences) finds the element that broke.
  [[noreturn]] void report_string_error(size_t open, size_t failed_at) const {
    size_t element = open + 1;
    while (element < failed_at) {
      const auto byte = static_cast<unsigned char>(text_[element]);
      size_t length = 1;
      if (byte == '\\') {
        length = escape_length(element, failed_at);
      } else if (byte >= 0x80) {
        length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
        if (failed_at < element + length) fail(element, "well-formed UTF-8 in a string");
      }
      element += length;
    }
    if (failed_at >= text_.size()) {
      fail_with(open, "unterminated string (no closing '\"' before the end of input)");
    }
    if (static_cast<unsigned char>(text_[failed_at]) < 0x20) {
      fail(failed_at, "a string character (control characters must be escaped)");
    }
    fail(failed_at, "well-formed UTF-8 in a string");  // a byte that starts no UTF-8 sequence
  }

  // The four hexadecimal digits at `first_digit` (nlohmann accepted them).
  uint32_t code_unit_at(size_t first_digit) const {
    uint32_t unit = 0;
    std::from_chars(text_.data() + first_digit, text_.data() + first_digit + 4, unit, 16);
    return unit;
  }

  // Length of the escape at `escape` (a surrogate pair counts as one); throws json.cpp's
  // message when it contains `failed_at`.
  size_t escape_length(size_t escape, size_t failed_at) const {
    if (failed_at == escape + 1) {
      if (failed_at >= text_.size()) fail(failed_at, "an escape character after '\\'");
      fail(failed_at, "an escape character (one of \" \\ / b f n r t u)");
    }
    if (text_[escape + 1] != 'u') return 2;
    const auto hex_failed = [&](size_t first_digit) {
      return failed_at >= first_digit && failed_at < first_digit + 4 &&
             (failed_at >= text_.size() || !is_hex_digit(text_[failed_at]));
    };
    if (hex_failed(escape + 2)) fail(failed_at, "a hexadecimal digit in a \\u escape");
    const uint32_t unit = code_unit_at(escape + 2);
    if (is_low_surrogate(unit) && failed_at < escape + 6) {
      fail_with(escape, "lone low surrogate \\u" + hex4(unit) + " in a string");
    }
    if (!is_high_surrogate(unit)) return 6;
    if (failed_at == escape + 6 || failed_at == escape + 7) {
      fail_with(escape, "high surrogate \\u" + hex4(unit) +
                            " not followed by a \\u escape of a low surrogate");
    }
    if (hex_failed(escape + 8)) fail(failed_at, "a hexadecimal digit in a \\u escape");
    if (failed_at < escape + 12) {
      const uint32_t low = code_unit_at(escape + 8);
      fail_with(escape, "high surrogate \\u" + hex4(unit) + " followed by \\u" + hex4(low) +
                            " instead of a low surrogate (DC00-DFFF)");
    }
    return 12;
  }

  std::string_view text_;
  const std::string& source_;
  const JsonLimits& limits_;
  size_t cursor_ = 0;          // byte offset just past the token of the last event
  int64_t value_count_ = 0;    // values started so far (keys are not values)
  std::vector<Frame> frames_;  // (depth) the open objects and arrays, outermost first
  JsonValue document_;         // the top-level value once complete
  bool has_document_ = false;
};

}  // namespace

bool JsonValue::as_bool(const std::string& where) const {
  if (kind_ != Kind::boolean) throw_kind_mismatch(where, "boolean", kind_);
  return bool_;
}

double JsonValue::as_double(const std::string& where) const {
  if (kind_ != Kind::number) throw_kind_mismatch(where, "number", kind_);
  return number_;
}

int64_t JsonValue::as_int64(const std::string& where) const {
  if (kind_ != Kind::number) throw_kind_mismatch(where, "integer", kind_);
  int64_t value = 0;
  const char* end = text_.data() + text_.size();
  const auto [parsed_end, error] = std::from_chars(text_.data(), end, value);
  if (error != std::errc() || parsed_end != end) {
    throw InputError(
        where + ": expected an integer within int64 (no fraction or exponent), found " + text_);
  }
  return value;
}

const std::string& JsonValue::as_string(const std::string& where) const {
  if (kind_ != Kind::string) throw_kind_mismatch(where, "string", kind_);
  return text_;
}

const JsonValue::Array& JsonValue::as_array(const std::string& where) const {
  if (kind_ != Kind::array) throw_kind_mismatch(where, "array", kind_);
  return *array_;
}

const JsonValue::Object& JsonValue::as_object(const std::string& where) const {
  if (kind_ != Kind::object) throw_kind_mismatch(where, "object", kind_);
  return *object_;
}

const JsonValue* JsonValue::find(std::string_view key) const {
  if (kind_ != Kind::object) return nullptr;
  for (const auto& [member_key, member_value] : *object_) {
    if (member_key == key) return &member_value;
  }
  return nullptr;
}

const JsonValue& JsonValue::at(std::string_view key, const std::string& where) const {
  as_object(where);  // a non-object is a kind mismatch, not a missing key
  const JsonValue* member = find(key);
  if (member == nullptr) throw InputError(where + ": missing key '" + std::string(key) + "'");
  return *member;
}

JsonValue JsonValue::make_null() {
  return JsonValue();
}

JsonValue JsonValue::make_bool(bool value) {
  JsonValue result;
  result.kind_ = Kind::boolean;
  result.bool_ = value;
  return result;
}

JsonValue JsonValue::make_number(double value, std::string text) {
  JsonValue result;
  result.kind_ = Kind::number;
  result.number_ = value;
  result.text_ = std::move(text);
  return result;
}

JsonValue JsonValue::make_string(std::string value) {
  JsonValue result;
  result.kind_ = Kind::string;
  result.text_ = std::move(value);
  return result;
}

JsonValue JsonValue::make_array(Array items) {
  JsonValue result;
  result.kind_ = Kind::array;
  result.array_ = std::make_shared<Array>(std::move(items));
  return result;
}

JsonValue JsonValue::make_object(Object members) {
  JsonValue result;
  result.kind_ = Kind::object;
  result.object_ = std::make_shared<Object>(std::move(members));
  return result;
}

JsonValue parse_json(std::string_view text, const std::string& source, JsonLimits limits) {
  if (static_cast<uint64_t>(text.size()) > static_cast<uint64_t>(limits.max_bytes)) {
    throw InputError(source + ": JSON text is " + std::to_string(text.size()) +
                     " bytes, more than the limit of " + std::to_string(limits.max_bytes) +
                     " bytes");
  }
  TreeBuilder builder(text, source, limits);
  // nlohmann skips a UTF-8 byte order mark; json.cpp never accepted one (0xEF starts no value).
  if (!text.empty() && static_cast<unsigned char>(text.front()) == 0xEF) {
    builder.report_error(0, 0);
  }
  // nlohmann's error for an unterminated string copies the whole token several times (seconds
  // for 100 MB). When the text ends inside a string, parse a copy with a closing quote added:
  // the builder reports the string as unterminated when `text` has no closing quote. A body in
  // which nothing can fail is left out of the copy; any other body is still checked.
  if (const std::optional<size_t> open = unterminated_string_start(text)) {
    const std::string_view body = text.substr(*open + 1);
    const std::string_view checked = is_plain_string_body(body) ? text.substr(0, *open + 1) : text;
    std::string closed_text;  // (checked.size() + 1) the checked text and a closing quote
    closed_text.reserve(checked.size() + 1);
    closed_text.append(checked).push_back('"');
    nlohmann::json::sax_parse(closed_text.cbegin(), closed_text.cend(), &builder);
  } else {
    nlohmann::json::sax_parse(text.begin(), text.end(), &builder);
  }
  return builder.take_document();
}

JsonValue parse_json_file(const std::string& path, JsonLimits limits) {
  std::error_code status_error;
  const auto status = std::filesystem::status(path, status_error);
  if (status_error) throw InputError(path + ": cannot open: " + status_error.message());
  if (!std::filesystem::is_regular_file(status)) throw InputError(path + ": not a regular file");
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path, status_error));
  if (status_error) throw InputError(path + ": cannot read the size: " + status_error.message());
  if (size > limits.max_bytes) {
    throw InputError(path + ": JSON file is " + std::to_string(size) +
                     " bytes, more than the limit of " + std::to_string(limits.max_bytes) +
                     " bytes");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(path + ": cannot open for reading");
  std::string text(static_cast<size_t>(size), '\0');  // (size) the whole file
  file.read(text.data(), size);
  if (file.gcount() != size) {
    throw InputError(path + ": read " + std::to_string(file.gcount()) + " of " +
                     std::to_string(size) + " bytes");
  }
  return parse_json(text, path, limits);
}

}  // namespace fracsweep
