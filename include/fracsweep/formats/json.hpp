#pragma once
// A strict JSON reader for untrusted input (safetensors headers, model descriptions,
// config.json), built on nlohmann-json's SAX parser: RFC 8259 syntax, UTF-8 strings with \u
// escapes (surrogate pairs joined), numbers kept as double plus their exact text, bounded
// nesting depth, input size and value count, checked as the parser goes. Errors throw
// InputError naming the source, the byte offset (line:column) and what was expected.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fracsweep {

class JsonValue {
 public:
  enum class Kind { null, boolean, number, string, array, object };
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;  // in document order

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_object() const { return kind_ == Kind::object; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_number() const { return kind_ == Kind::number; }

  // Typed access; throw InputError("<where>: expected <type>, found <kind>") on mismatch.
  bool as_bool(const std::string& where) const;
  double as_double(const std::string& where) const;
  // Integers: the number's text must be an integer (no fraction/exponent) within int64.
  int64_t as_int64(const std::string& where) const;
  const std::string& as_string(const std::string& where) const;
  const Array& as_array(const std::string& where) const;
  const Object& as_object(const std::string& where) const;

  // Object member lookup: nullptr when absent (or when this is not an object).
  const JsonValue* find(std::string_view key) const;
  // Object member that must exist; throws InputError "<where>: missing key '<key>'".
  const JsonValue& at(std::string_view key, const std::string& where) const;

  static JsonValue make_null();
  static JsonValue make_bool(bool value);
  static JsonValue make_number(double value, std::string text);
  static JsonValue make_string(std::string value);
  static JsonValue make_array(Array items);
  static JsonValue make_object(Object members);  // duplicate keys are rejected by the parser

 private:
  Kind kind_ = Kind::null;
  bool bool_ = false;
  double number_ = 0;
  std::string text_;  // string value, or the number's source text
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
};

struct JsonLimits {
  int max_depth = 64;
  int64_t max_bytes = int64_t{256} << 20;  // 256 MiB
  // Values of any kind in the document. Each costs ~100-200 bytes in memory (80 per JsonValue
  // plus container growth), far more than its 2 bytes of text in "[0,0,...]", so this, not
  // max_bytes, bounds memory: ~0.8 GB at the default. A Llama 3 tokenizer.json holds ~1M.
  int64_t max_values = int64_t{1} << 22;
};

// Parses exactly one JSON value (surrounding whitespace allowed, nothing else). `source` names
// the file (and part) for messages. Duplicate object keys are an error.
JsonValue parse_json(std::string_view text, const std::string& source, JsonLimits limits = {});

// Reads a whole file (size checked against limits.max_bytes before reading) and parses it.
JsonValue parse_json_file(const std::string& path, JsonLimits limits = {});

}  // namespace fracsweep
