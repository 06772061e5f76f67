// The JSON reader, through its interface only (include/fracsweep/formats/json.hpp): parse, then
// visit every value with the typed accessors.
#include "fracsweep/formats/json.hpp"
#include "fuzz_support.hpp"

namespace {

void visit(const fracsweep::JsonValue& value, int depth) {
  using Kind = fracsweep::JsonValue::Kind;
  if (depth > 1000) throw fracsweep::RunError("parse_json returned a value deeper than its limits");
  switch (value.kind()) {
    case Kind::null:
      break;
    case Kind::boolean:
      value.as_bool("fuzz");
      break;
    case Kind::number:
      value.as_double("fuzz");
      fracsweep::fuzz::expect_only_input_errors([&] { value.as_int64("fuzz"); });
      break;
    case Kind::string:
      value.as_string("fuzz");
      break;
    case Kind::array:
      for (const fracsweep::JsonValue& item : value.as_array("fuzz")) visit(item, depth + 1);
      break;
    case Kind::object:
      for (const auto& [key, member] : value.as_object("fuzz")) {
        if (value.find(key) == nullptr)
          throw fracsweep::RunError("find misses a member of the object");
        visit(member, depth + 1);
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  fuzz::expect_only_input_errors(
      [&] { visit(parse_json(fuzz::as_text(data, size), "fuzz.json"), 0); });
  return 0;
}
