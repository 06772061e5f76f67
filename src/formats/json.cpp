#include "fracsweep/formats/json.hpp"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

const char* kind_name(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "boolean";
    case JsonValue::Kind::number: return "number";
    case JsonValue::Kind::string: return "string";
    case JsonValue::Kind::array: return "array";
    case JsonValue::Kind::object: return "object";
  }
  return "unknown";
}

[[noreturn]] void throw_kind_mismatch(const std::string& where, const char* expected,
                                      JsonValue::Kind found) {
  throw InputError(where + ": expected " + expected + ", found " + kind_name(found));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence starting at text[pos] (Unicode 15, table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 when it is not well formed.
size_t utf8_sequence_length(std::string_view text, size_t pos) {
  const auto byte_at = [&](size_t i) -> unsigned {
    return i < text.size() ? static_cast<unsigned char>(text[i]) : 0x100u;
  };
  const auto in_range = [](unsigned byte, unsigned low, unsigned high) {
    return byte >= low && byte <= high;
  };
  const unsigned lead = byte_at(pos);
  if (lead < 0x80) return 1;
  if (in_range(lead, 0xC2, 0xDF)) return in_range(byte_at(pos + 1), 0x80, 0xBF) ? 2 : 0;
  if (in_range(lead, 0xE0, 0xEF)) {
    const unsigned low = lead == 0xE0 ? 0xA0 : 0x80;   // E0: no overlong forms
    const unsigned high = lead == 0xED ? 0x9F : 0xBF;  // ED: no surrogates
    return in_range(byte_at(pos + 1), low, high) && in_range(byte_at(pos + 2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in_range(lead, 0xF0, 0xF4)) {
    const unsigned low = lead == 0xF0 ? 0x90 : 0x80;   // F0: no overlong forms
    const unsigned high = lead == 0xF4 ? 0x8F : 0xBF;  // F4: nothing above U+10FFFF
    return in_range(byte_at(pos + 1), low, high) && in_range(byte_at(pos + 2), 0x80, 0xBF) &&
                   in_range(byte_at(pos + 3), 0x80, 0xBF)
               ? 4
               : 0;
  }
  return 0;
}

constexpr const char* any_value = "a value (object, array, string, number, true, false or null)";

// One parse over one text: the cursor, the limits and the source name for messages.
class Parser {
 public:
  Parser(std::string_view text, const std::string& source, const JsonLimits& limits)
      : text_(text), source_(source), limits_(limits) {}

  JsonValue parse_document() {
    skip_whitespace();
    JsonValue value = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail(pos_, "end of input after the value");
    return value;
  }

 private:
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

  void skip_whitespace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool at_end() const { return pos_ >= text_.size(); }

  JsonValue parse_value(int depth) {
    if (at_end()) fail(pos_, any_value);
    if (++value_count_ > limits_.max_values) {
      fail_with(pos_, "more than the limit of " + std::to_string(limits_.max_values) + " values");
    }
    switch (text_[pos_]) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return JsonValue::make_string(parse_string());
      case 't': expect_literal("true"); return JsonValue::make_bool(true);
      case 'f': expect_literal("false"); return JsonValue::make_bool(false);
      case 'n': expect_literal("null"); return JsonValue::make_null();
      default:
        if (text_[pos_] == '-' || is_digit(text_[pos_])) return parse_number();
        fail(pos_, any_value);
    }
  }

  void check_depth(int depth) const {
    if (depth > limits_.max_depth) {
      fail_with(pos_, "nesting deeper than the limit of " + std::to_string(limits_.max_depth) +
                          " levels");
    }
  }

  JsonValue parse_array(int depth) {
    check_depth(depth);
    ++pos_;  // '['
    JsonValue::Array items;
    skip_whitespace();
    if (!at_end() && text_[pos_] == ']') {
      ++pos_;
      return JsonValue::make_array(std::move(items));
    }
    while (true) {
      skip_whitespace();
      items.push_back(parse_value(depth));
      skip_whitespace();
      if (at_end()) fail(pos_, "',' or ']'");
      if (text_[pos_] == ']') {
        ++pos_;
        return JsonValue::make_array(std::move(items));
      }
      if (text_[pos_] != ',') fail(pos_, "',' or ']'");
      ++pos_;
    }
  }

  JsonValue parse_object(int depth) {
    check_depth(depth);
    ++pos_;  // '{'
    JsonValue::Object members;
    std::unordered_set<std::string> seen_keys;
    skip_whitespace();
    if (!at_end() && text_[pos_] == '}') {
      ++pos_;
      return JsonValue::make_object(std::move(members));
    }
    while (true) {
      skip_whitespace();
      if (at_end() || text_[pos_] != '"') fail(pos_, "a string key");
      const size_t key_offset = pos_;
      std::string key = parse_string();
      if (!seen_keys.insert(key).second) fail_with(key_offset, "duplicate key \"" + key + "\"");
      skip_whitespace();
      if (at_end() || text_[pos_] != ':') fail(pos_, "':' after the key");
      ++pos_;
      skip_whitespace();
      JsonValue value = parse_value(depth);
      members.emplace_back(std::move(key), std::move(value));
      skip_whitespace();
      if (at_end()) fail(pos_, "',' or '}'");
      if (text_[pos_] == '}') {
        ++pos_;
        return JsonValue::make_object(std::move(members));
      }
      if (text_[pos_] != ',') fail(pos_, "',' or '}'");
      ++pos_;
    }
  }

  void expect_literal(std::string_view literal) {
    for (size_t i = 0; i < literal.size(); ++i) {
      if (pos_ + i >= text_.size() || text_[pos_ + i] != literal[i]) {
        fail(pos_ + i, "the literal '" + std::string(literal) + "'");
      }
    }
    pos_ += literal.size();
  }

  // Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  JsonValue parse_number() {
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (at_end() || !is_digit(text_[pos_])) fail(pos_, "a digit");
    if (text_[pos_] == '0') {
      ++pos_;
      if (!at_end() && is_digit(text_[pos_])) fail_with(start, "leading zeros are not allowed");
    } else {
      skip_digits();
    }
    if (!at_end() && text_[pos_] == '.') {
      ++pos_;
      if (at_end() || !is_digit(text_[pos_])) fail(pos_, "a digit after the decimal point");
      skip_digits();
    }
    if (!at_end() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (!at_end() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (at_end() || !is_digit(text_[pos_])) fail(pos_, "a digit in the exponent");
      skip_digits();
    }
    const std::string_view number_text = text_.substr(start, pos_ - start);
    double value = 0;
    const auto [end, error] =
        std::from_chars(number_text.data(), number_text.data() + number_text.size(), value);
    if (error == std::errc::result_out_of_range) {
      fail_with(start, "expected a number within the range of double, found " +
                           std::string(number_text));
    }
    if (error != std::errc() || end != number_text.data() + number_text.size()) {
      fail_with(start, "cannot convert the number " + std::string(number_text));
    }
    return JsonValue::make_number(value, std::string(number_text));
  }

  void skip_digits() {
    while (!at_end() && is_digit(text_[pos_])) ++pos_;
  }

  uint32_t parse_hex4() {
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = at_end() ? -1 : hex_digit_value(text_[pos_]);
      if (digit < 0) fail(pos_, "a hexadecimal digit in a \\u escape");
      value = value * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return value;
  }

  // The cursor is on "\u"; returns one code point (a surrogate pair joined).
  uint32_t parse_unicode_escape() {
    const size_t escape_offset = pos_;
    pos_ += 2;  // "\u"
    const uint32_t unit = parse_hex4();
    if (unit >= 0xDC00 && unit <= 0xDFFF) {
      fail_with(escape_offset, "lone low surrogate \\u" + hex4(unit) + " in a string");
    }
    if (unit < 0xD800 || unit > 0xDBFF) return unit;
    if (pos_ + 1 >= text_.size() || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
      fail_with(escape_offset, "high surrogate \\u" + hex4(unit) +
                                   " not followed by a \\u escape of a low surrogate");
    }
    pos_ += 2;
    const uint32_t low = parse_hex4();
    if (low < 0xDC00 || low > 0xDFFF) {
      fail_with(escape_offset, "high surrogate \\u" + hex4(unit) + " followed by \\u" +
                                   hex4(low) + " instead of a low surrogate (DC00-DFFF)");
    }
    return 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
  }

  static std::string hex4(uint32_t unit) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04X", unit);
    return hex;
  }

  // The cursor is on the opening quote; returns the decoded UTF-8 string.
  std::string parse_string() {
    const size_t open_offset = pos_;
    ++pos_;
    std::string value;
    while (true) {
      // Copy the run of ordinary ASCII characters in one go.
      const size_t run_start = pos_;
      while (pos_ < text_.size()) {
        const auto byte = static_cast<unsigned char>(text_[pos_]);
        if (byte < 0x20 || byte >= 0x80 || byte == '"' || byte == '\\') break;
        ++pos_;
      }
      value.append(text_.substr(run_start, pos_ - run_start));
      if (at_end()) {
        fail_with(open_offset, "unterminated string (no closing '\"' before the end of input)");
      }
      const auto byte = static_cast<unsigned char>(text_[pos_]);
      if (byte == '"') {
        ++pos_;
        return value;
      }
      if (byte < 0x20) fail(pos_, "a string character (control characters must be escaped)");
      if (byte >= 0x80) {
        const size_t length = utf8_sequence_length(text_, pos_);
        if (length == 0) fail(pos_, "well-formed UTF-8 in a string");
        value.append(text_.substr(pos_, length));
        pos_ += length;
        continue;
      }
      // A backslash escape.
      if (pos_ + 1 >= text_.size()) fail(pos_ + 1, "an escape character after '\\'");
      const char escaped = text_[pos_ + 1];
      switch (escaped) {
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        case '/': value += '/'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'u': append_utf8(value, parse_unicode_escape()); continue;
        default: fail(pos_ + 1, "an escape character (one of \" \\ / b f n r t u)");
      }
      pos_ += 2;
    }
  }

  std::string_view text_;
  const std::string& source_;
  const JsonLimits& limits_;
  size_t pos_ = 0;  // byte offset of the next unread character
  int64_t value_count_ = 0;
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
    throw InputError(where + ": expected an integer within int64 (no fraction or exponent), found " +
                     text_);
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

JsonValue JsonValue::make_null() { return JsonValue(); }

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
  return Parser(text, source, limits).parse_document();
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
