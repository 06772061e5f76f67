#define BOOST_TEST_MODULE safetensors
// safetensors files written here byte by byte (8-byte little-endian header length, JSON
// header, data buffer) and read back: values exact for F32/F16/BF16, and every malformed file
// rejected with an InputError naming the file, the tensor and the field. The 16-bit float
// conversions are checked over all 65536 patterns against a plain ldexp reference, and float ->
// 16-bit rounding at every midpoint between neighbouring 16-bit values and at hand-computed ties.
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

using fracsweep::DType;
using fracsweep::InputError;
using fracsweep::MappedFile;
using fracsweep::SafetensorsFile;

namespace {

using Bytes = std::vector<unsigned char>;

using fracsweep::test::TempDir;

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

Bytes length_prefix(uint64_t length) {
  Bytes prefix;  // (8) little-endian
  for (int i = 0; i < 8; ++i) prefix.push_back(static_cast<unsigned char>(length >> (8 * i)));
  return prefix;
}

// The tiny writer: length prefix, header text, data buffer.
void write_safetensors(const std::string& path, const std::string& header, const Bytes& data) {
  Bytes file = length_prefix(header.size());
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());
  write_bytes(path, file);
}

Bytes float_bytes(const std::vector<float>& values) {
  Bytes bytes(values.size() * 4);  // (4 * count) little-endian binary32
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

Bytes u16_bytes(const std::vector<uint16_t>& values) {
  Bytes bytes;  // (2 * count) little-endian
  for (uint16_t value : values) {
    bytes.push_back(static_cast<unsigned char>(value & 0xFF));
    bytes.push_back(static_cast<unsigned char>(value >> 8));
  }
  return bytes;
}

uint32_t float_bits(float value) {
  return std::bit_cast<uint32_t>(value);
}
float float_from_bits(uint32_t bits) {
  return std::bit_cast<float>(bits);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Opening `path` must throw InputError whose message names the file and holds every fragment.
void expect_rejected(const std::string& path, std::initializer_list<std::string> fragments) {
  try {
    const SafetensorsFile file(path);
    BOOST_ERROR("accepted " << path);
  } catch (const InputError& error) {
    const std::string message = error.what();
    BOOST_TEST(contains(message, path), message);
    for (const std::string& fragment : fragments) {
      BOOST_TEST(contains(message, fragment), "'" << fragment << "' not in: " << message);
    }
  }
}

// A file holding one header (with the 64-byte zero data buffer unless given) must be rejected.
void expect_header_rejected(const TempDir& dir, const std::string& header,
                            std::initializer_list<std::string> fragments,
                            const Bytes& data = Bytes(64, 0)) {
  BOOST_TEST_CONTEXT("header " << header) {
    const std::string path = dir.file("bad.safetensors");
    write_safetensors(path, header, data);
    expect_rejected(path, fragments);
  }
}

// Reference decoders: the definition of each format written with ldexp.
float reference_half(uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1F;
  const int fraction = bits & 0x3FF;
  const float sign = (bits & 0x8000) != 0 ? -1.0f : 1.0f;
  if (exponent == 0x1F) {
    return fraction == 0 ? sign * std::numeric_limits<float>::infinity()
                         : std::numeric_limits<float>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(fraction), -24);
  return sign * std::ldexp(static_cast<float>(1024 + fraction), exponent - 25);
}

float reference_bf16(uint16_t bits) {
  const int exponent = (bits >> 7) & 0xFF;
  const int fraction = bits & 0x7F;
  const float sign = (bits & 0x8000) != 0 ? -1.0f : 1.0f;
  if (exponent == 0xFF) {
    return fraction == 0 ? sign * std::numeric_limits<float>::infinity()
                         : std::numeric_limits<float>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(fraction), -133);
  return sign * std::ldexp(static_cast<float>(128 + fraction), exponent - 134);
}

constexpr uint32_t float_quiet_bit = 0x00400000u;

}  // namespace

BOOST_AUTO_TEST_CASE(reads_tensors_back_exactly) {
  const TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const std::vector<float> f32_values = {
      0.0f, 1.0f, -2.5f, 3.25e-3f, 1e-40f /* subnormal */, std::numeric_limits<float>::max()};
  // F16: 1, -2, 2^-24 (smallest subnormal), 65504 (largest finite), 0x3555 = 1365/4096,
  //      -0, +Inf.
  const std::vector<uint16_t> f16_bits = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x3555, 0x8000, 0x7C00};
  const std::vector<float> f16_expected = {1.0f,
                                           -2.0f,
                                           5.9604644775390625e-8f,
                                           65504.0f,
                                           0.333251953125f,
                                           -0.0f,
                                           std::numeric_limits<float>::infinity()};
  // BF16: 1, 3.140625, 0xC2F7 = -(1 + 119/128) * 2^6 = -123.5, 0x0001 = 2^-133.
  const std::vector<uint16_t> bf16_bits = {0x3F80, 0x4049, 0xC2F7, 0x0001};
  const std::vector<float> bf16_expected = {1.0f, 3.140625f, -123.5f,
                                            9.18354961579912115600575e-41f};

  Bytes data = float_bytes(f32_values);        // [0, 24)
  const Bytes f16_data = u16_bytes(f16_bits);  // [24, 38)
  data.insert(data.end(), f16_data.begin(), f16_data.end());
  data.insert(data.end(), {0xAA, 0xBB});         // a gap: [38, 40)
  const Bytes bf16_data = u16_bytes(bf16_bits);  // [40, 48)
  data.insert(data.end(), bf16_data.begin(), bf16_data.end());
  const Bytes i32_data = {1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF};  // [48, 56): 1, -1
  data.insert(data.end(), i32_data.begin(), i32_data.end());
  // Header entries out of offset order; a scalar, an empty tensor inside another's bytes, and
  // trailing spaces (the format pads headers with them).
  const std::string header =
      R"({"bf": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [40, 48]},)"
      R"( "__metadata__": {"format": "pt", "note": "caf\u00e9"},)"
      R"( "ints": {"shape": [2], "dtype": "I32", "data_offsets": [48, 56]},)"
      R"( "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},)"
      R"( "empty": {"dtype": "F32", "shape": [4, 0], "data_offsets": [8, 8]},)"
      R"( "h": {"dtype": "F16", "shape": [7], "data_offsets": [24, 38]}})"
      "      ";
  write_safetensors(path, header, data);

  const SafetensorsFile file(path);
  BOOST_TEST(file.path() == path);
  const int64_t data_start = 8 + static_cast<int64_t>(header.size());
  BOOST_TEST_REQUIRE(file.tensors().size() == 5u);
  const std::vector<std::string> by_offset = {"w", "empty", "h", "bf", "ints"};
  for (size_t i = 0; i < by_offset.size(); ++i) BOOST_TEST(file.tensors()[i].name == by_offset[i]);

  const auto& w = file.at("w");
  BOOST_TEST((w.dtype == DType::f32));
  BOOST_TEST(w.shape == (std::vector<int64_t>{2, 3}), boost::test_tools::per_element());
  BOOST_TEST(w.count == 6);
  BOOST_TEST(w.bytes == 24);
  BOOST_TEST(w.begin == data_start);
  const auto& empty = file.at("empty");
  BOOST_TEST(empty.count == 0);
  BOOST_TEST(empty.bytes == 0);
  BOOST_TEST(file.at("h").begin == data_start + 24);
  BOOST_TEST(file.at("bf").begin == data_start + 40);
  BOOST_TEST(file.at("bf").count == 4);
  BOOST_TEST(file.find("missing") == nullptr);
  BOOST_TEST(file.find("__metadata__") == nullptr);
  BOOST_TEST(file.metadata().size() == 2u);
  BOOST_TEST(file.metadata().at("format") == "pt");
  BOOST_TEST(file.metadata().at("note") == "caf\xC3\xA9");
  BOOST_TEST(std::memcmp(file.bytes(file.at("ints")), i32_data.data(), i32_data.size()) == 0);

  std::vector<float> values(6);  // (count) of w
  file.read_as_float(w, values.data());
  for (size_t i = 0; i < values.size(); ++i)
    BOOST_TEST(float_bits(values[i]) == float_bits(f32_values[i]));
  values.assign(7, 0.0f);  // (count) of h
  file.read_as_float(file.at("h"), values.data());
  for (size_t i = 0; i < values.size(); ++i)
    BOOST_TEST(float_bits(values[i]) == float_bits(f16_expected[i]));
  values.assign(4, 0.0f);  // (count) of bf
  file.read_as_float(file.at("bf"), values.data());
  for (size_t i = 0; i < values.size(); ++i)
    BOOST_TEST(float_bits(values[i]) == float_bits(bf16_expected[i]));

  try {
    file.read_as_float(file.at("ints"), values.data());
    BOOST_ERROR("read I32 as float");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what()) == path +
                                                ": tensor 'ints', field 'dtype': expected F32, F16 "
                                                "or BF16 to read as float, found I32");
  }
  try {
    file.at("missing");
    BOOST_ERROR("found a missing tensor");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what()) == path + ": no tensor named 'missing'");
  }
}

BOOST_AUTO_TEST_CASE(minimal_files) {
  const TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  write_safetensors(path, "{}", {});
  const SafetensorsFile no_tensors(path);
  BOOST_TEST(no_tensors.tensors().empty());
  BOOST_TEST(no_tensors.metadata().empty());
  // A header that fills the file exactly: zero-byte data buffer with zero-size tensors.
  write_safetensors(path, R"({"z": {"dtype": "BF16", "shape": [0, 5], "data_offsets": [0, 0]}})",
                    {});
  const SafetensorsFile only_empty(path);
  BOOST_TEST_REQUIRE(only_empty.tensors().size() == 1u);
  BOOST_TEST(only_empty.at("z").count == 0);
  // Every dtype's element size, from the bytes each tensor must span.
  const std::vector<std::pair<std::string, int64_t>> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  for (const auto& [name, size] : sizes) {
    BOOST_TEST_CONTEXT("dtype " << name) {
      write_safetensors(path,
                        R"({"t": {"dtype": ")" + name + R"(", "shape": [3], "data_offsets": [0, )" +
                            std::to_string(3 * size) + "]}}",
                        Bytes(static_cast<size_t>(3 * size), 0));
      const SafetensorsFile file(path);
      BOOST_TEST(file.at("t").bytes == 3 * size);
      BOOST_TEST(fracsweep::dtype_size(file.at("t").dtype) == size);
      BOOST_TEST(std::string(fracsweep::dtype_name(file.at("t").dtype)) == name);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_framing) {
  const TempDir dir;
  const std::string path = dir.file("framing.safetensors");
  write_bytes(path, {});
  expect_rejected(path, {"file is 0 bytes, shorter than the 8-byte header length prefix"});
  write_bytes(path, Bytes(7, 0));
  expect_rejected(path, {"file is 7 bytes, shorter than the 8-byte header length prefix"});
  write_bytes(path, length_prefix(0));
  expect_rejected(path, {"header length is 0"});
  Bytes file = length_prefix(3);
  file.insert(file.end(), {'{', '}'});
  write_bytes(path, file);
  expect_rejected(path, {"header length 3 exceeds the 2 bytes after the length prefix"});
  file = length_prefix(uint64_t{1} << 63);  // would be negative as int64
  file.insert(file.end(), {'{', '}'});
  write_bytes(path, file);
  expect_rejected(path, {"header length 9223372036854775808 exceeds the limit of 104857600 bytes"});
  file = length_prefix((uint64_t{100} << 20) + 1);
  write_bytes(path, file);
  expect_rejected(path, {"header length 104857601 exceeds the limit of 104857600 bytes"});
  expect_rejected(dir.file("absent.safetensors"), {"cannot open: No such file or directory"});
  expect_rejected(dir.file(""), {"not a regular file"});
}

BOOST_AUTO_TEST_CASE(bad_header_json) {
  const TempDir dir;
  expect_header_rejected(dir, "{",
                         {"(safetensors header): JSON error at byte 1", "expected a string key"});
  expect_header_rejected(dir, "[]", {": header: expected object, found array"});
  expect_header_rejected(dir, R"({"w": 1,})",
                         {"(safetensors header): JSON error", "expected a string key"});
  expect_header_rejected(dir, "{} \n{}", {"expected end of input after the value"});
  expect_header_rejected(dir,
                         R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                         R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                         {"(safetensors header)", "duplicate key \"w\""});
  expect_header_rejected(dir, std::string("{\"w\xFF\": {}}"), {"well-formed UTF-8"});
}

BOOST_AUTO_TEST_CASE(bad_tensor_entries) {
  const TempDir dir;
  expect_header_rejected(dir, R"({"w": [1]})", {"tensor 'w': expected object, found array"});
  expect_header_rejected(dir, R"({"w": "F32"})", {"tensor 'w': expected object, found string"});
  expect_header_rejected(dir, R"({"w": {"shape": [1], "data_offsets": [0, 4]}})",
                         {"tensor 'w': missing key 'dtype'"});
  expect_header_rejected(dir, R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})",
                         {"tensor 'w': missing key 'shape'"});
  expect_header_rejected(dir, R"({"w": {"dtype": "F32", "shape": [1]}})",
                         {"tensor 'w': missing key 'data_offsets'"});
  expect_header_rejected(
      dir, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "offset": 0}})",
      {"tensor 'w': unexpected field 'offset' (expected only dtype, shape and data_offsets)"});
  // A later tensor is named, not the first.
  expect_header_rejected(dir,
                         R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                         R"( "b.weight": {"dtype": "U8", "shape": [1]}})",
                         {"tensor 'b.weight': missing key 'data_offsets'"});
}

BOOST_AUTO_TEST_CASE(bad_dtype) {
  const TempDir dir;
  expect_header_rejected(
      dir, R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})",
      {"tensor 'w', field 'dtype': unknown dtype 'F8_E4M3' (expected one of F32, F16, BF16, F64, "
       "I64, I32, I16, I8, U8, BOOL)"});
  expect_header_rejected(dir, R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})",
                         {"tensor 'w', field 'dtype': unknown dtype 'f32'"});
  expect_header_rejected(dir, R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})",
                         {"tensor 'w', field 'dtype': expected string, found number"});
}

BOOST_AUTO_TEST_CASE(bad_shape) {
  const TempDir dir;
  expect_header_rejected(dir,
                         R"({"w": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 4]}})",
                         {"tensor 'w', field 'shape'[1]: expected a non-negative size, found -3"});
  expect_header_rejected(
      dir, R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})",
      {"tensor 'w', field 'shape'[0]: expected an integer within int64", "found 1.5"});
  expect_header_rejected(dir, R"({"w": {"dtype": "F32", "shape": [1e1], "data_offsets": [0, 40]}})",
                         {"tensor 'w', field 'shape'[0]: expected an integer", "found 1e1"});
  expect_header_rejected(dir, R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})",
                         {"tensor 'w', field 'shape'[0]: expected integer, found string"});
  expect_header_rejected(dir, R"({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})",
                         {"tensor 'w', field 'shape': expected array, found number"});
  // 2^32 * 2^32 = 2^64 elements: the product overflows int64 at the second axis.
  expect_header_rejected(
      dir, R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
      {"tensor 'w', field 'shape': the element count overflows int64 at axis 1"});
  expect_header_rejected(
      dir, R"({"w": {"dtype": "U8", "shape": [1, 9223372036854775808], "data_offsets": [0, 4]}})",
      {"tensor 'w', field 'shape'[1]: expected an integer within int64"});
  // 2^62 elements fit int64, their 2^64 bytes of F32 do not.
  expect_header_rejected(
      dir, R"({"w": {"dtype": "F32", "shape": [2147483648, 2147483648], "data_offsets": [0, 16]}})",
      {"tensor 'w', field 'shape': 4611686018427387904 elements of F32 overflow int64 bytes"});
}

BOOST_AUTO_TEST_CASE(hostile_sizes_fail_without_allocating) {
  const TempDir dir;
  // 2^60 elements (2^30 x 2^30) of F32 = 2^62 bytes: nothing is sized from the claim, so both
  // versions fail at once, on the offsets.
  expect_header_rejected(
      dir,
      R"({"w": {"dtype": "F32", "shape": [1073741824, 1073741824], "data_offsets": [0, 4611686018427387904]}})",
      {"tensor 'w', field 'data_offsets': end 4611686018427387904 is beyond the data buffer of 64 "
       "bytes"});
  expect_header_rejected(
      dir, R"({"w": {"dtype": "F32", "shape": [1073741824, 1073741824], "data_offsets": [0, 4]}})",
      {"tensor 'w', field 'data_offsets': expected 4611686018427387904 bytes (1152921504606846976 "
       "elements of F32), found [0, 4] = 4 bytes"});
}

BOOST_AUTO_TEST_CASE(huge_header_is_bounded_by_the_json_value_limit) {
  // 6 million dimensions in a 12 MB header: the JSON reader stops at its value limit, so the
  // header never becomes gigabytes of parsed values.
  const TempDir dir;
  std::string header = R"({"w": {"dtype": "U8", "data_offsets": [0, 1], "shape": [1)";
  for (int i = 0; i < 6'000'000; ++i) header += ",1";
  header += "]}}";
  expect_header_rejected(
      dir, header,
      {"(safetensors header): JSON error at byte", "more than the limit of 4194304 values"});
}

BOOST_AUTO_TEST_CASE(bad_data_offsets) {
  const TempDir dir;
  const auto with_offsets = [](const std::string& offsets) {
    return R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": )" + offsets + "}}";
  };
  expect_header_rejected(dir, with_offsets("8"),
                         {"tensor 'w', field 'data_offsets': expected array, found number"});
  expect_header_rejected(
      dir, with_offsets("[8]"),
      {"tensor 'w', field 'data_offsets': expected 2 integers [begin, end], found 1 elements"});
  expect_header_rejected(
      dir, with_offsets("[0, 8, 16]"),
      {"tensor 'w', field 'data_offsets': expected 2 integers [begin, end], found 3 elements"});
  expect_header_rejected(
      dir, with_offsets("[-8, 0]"),
      {"tensor 'w', field 'data_offsets': expected non-negative offsets, found [-8, 0]"});
  expect_header_rejected(
      dir, with_offsets("[0.5, 8.5]"),
      {"tensor 'w', field 'data_offsets'[0]: expected an integer within int64", "found 0.5"});
  expect_header_rejected(dir, with_offsets("[0, \"8\"]"),
                         {"tensor 'w', field 'data_offsets'[1]: expected integer, found string"});
  expect_header_rejected(
      dir, with_offsets("[0, 1e30]"),
      {"tensor 'w', field 'data_offsets'[1]: expected an integer within int64", "found 1e30"});
  expect_header_rejected(dir, with_offsets("[0, 18446744073709551615]"),
                         {"tensor 'w', field 'data_offsets'[1]: expected an integer within int64"});
  expect_header_rejected(
      dir, with_offsets("[16, 8]"),
      {"tensor 'w', field 'data_offsets': expected begin <= end, found [16, 8]"});
  expect_header_rejected(
      dir, with_offsets("[60, 68]"),
      {"tensor 'w', field 'data_offsets': end 68 is beyond the data buffer of 64 bytes"});
  expect_header_rejected(
      dir, with_offsets("[57, 65]"),
      {"tensor 'w', field 'data_offsets': end 65 is beyond the data buffer of 64 bytes"});
  expect_header_rejected(dir, with_offsets("[0, 12]"),
                         {"tensor 'w', field 'data_offsets': expected 8 bytes (2 elements of F32), "
                          "found [0, 12] = 12 bytes"});
  expect_header_rejected(dir, with_offsets("[4, 8]"),
                         {"tensor 'w', field 'data_offsets': expected 8 bytes (2 elements of F32), "
                          "found [4, 8] = 4 bytes"});
  // Exactly at the end of the buffer is fine.
  const std::string path = dir.file("edge.safetensors");
  write_safetensors(path, with_offsets("[56, 64]"), Bytes(64, 0));
  BOOST_TEST(SafetensorsFile(path).at("w").bytes == 8);
}

BOOST_AUTO_TEST_CASE(overlapping_tensors) {
  const TempDir dir;
  const auto entry = [](const std::string& name, int begin, int end) {
    return "\"" + name + R"(": {"dtype": "U8", "shape": [)" + std::to_string(end - begin) +
           R"(], "data_offsets": [)" + std::to_string(begin) + ", " + std::to_string(end) + "]}";
  };
  expect_header_rejected(
      dir, "{" + entry("a", 0, 16) + ", " + entry("b", 8, 24) + "}",
      {"tensor 'b', field 'data_offsets': bytes [8, 24) overlap tensor 'a' at [0, 16)"});
  expect_header_rejected(
      dir, "{" + entry("b", 8, 24) + ", " + entry("a", 0, 16) + "}",
      {"tensor 'b', field 'data_offsets': bytes [8, 24) overlap tensor 'a' at [0, 16)"});
  expect_header_rejected(
      dir, "{" + entry("same1", 0, 8) + ", " + entry("same2", 0, 8) + "}",
      {"tensor 'same2', field 'data_offsets': bytes [0, 8) overlap tensor 'same1' at [0, 8)"});
  // Contained in an earlier, longer tensor.
  expect_header_rejected(
      dir,
      "{" + entry("big", 0, 32) + ", " + entry("small", 4, 8) + ", " + entry("late", 16, 40) + "}",
      {"tensor 'small', field 'data_offsets': bytes [4, 8) overlap tensor 'big' at [0, 32)"});
  // Overlap with an earlier tensor that is not the immediate predecessor by offset (an empty
  // tensor sits between them).
  expect_header_rejected(
      dir,
      "{" + entry("big", 0, 32) + ", " + entry("between", 4, 4) + ", " + entry("late", 16, 40) +
          "}",
      {"tensor 'late', field 'data_offsets': bytes [16, 40) overlap tensor 'big' at [0, 32)"});
  // Touching tensors, gaps, and empty tensors inside another's bytes are fine.
  const std::string path = dir.file("ok.safetensors");
  write_safetensors(path,
                    "{" + entry("a", 0, 16) + ", " + entry("b", 16, 24) + ", " +
                        entry("c", 40, 48) + ", " + entry("empty", 4, 4) + "}",
                    Bytes(64, 0));
  BOOST_TEST(SafetensorsFile(path).tensors().size() == 4u);
}

BOOST_AUTO_TEST_CASE(bad_metadata) {
  const TempDir dir;
  expect_header_rejected(dir, R"({"__metadata__": ["pt"]})",
                         {": '__metadata__': expected object, found array"});
  expect_header_rejected(dir, R"({"__metadata__": "pt"})",
                         {": '__metadata__': expected object, found string"});
  expect_header_rejected(dir, R"({"__metadata__": {"format": "pt", "epoch": 3}})",
                         {": '__metadata__' key 'epoch': expected string, found number"});
  expect_header_rejected(dir, R"({"__metadata__": {"nested": {}}})",
                         {": '__metadata__' key 'nested': expected string, found object"});
}

BOOST_AUTO_TEST_CASE(mapped_file) {
  const TempDir dir;
  const std::string path = dir.file("bytes.bin");
  write_bytes(path, {1, 2, 3, 250});
  {
    const MappedFile mapped(path);
    BOOST_TEST(mapped.path() == path);
    BOOST_TEST_REQUIRE(mapped.size() == 4);
    BOOST_TEST(mapped.data()[0] == 1);
    BOOST_TEST(mapped.data()[3] == 250);
  }
  write_bytes(path, {});
  const MappedFile empty(path);
  BOOST_TEST(empty.size() == 0);
  BOOST_TEST(empty.data() == nullptr);
  const auto message_of = [](const std::string& file) -> std::string {
    try {
      const MappedFile mapped(file);
    } catch (const InputError& error) {
      return error.what();
    }
    return "";
  };
  BOOST_TEST(message_of(dir.file("absent")) ==
             dir.file("absent") + ": cannot open: No such file or directory");
  BOOST_TEST(message_of(dir.file("")) == dir.file("") + ": not a regular file");
}

// --- 16-bit floats

BOOST_AUTO_TEST_CASE(half_to_float_matches_reference_for_all_patterns) {
  for (uint32_t pattern = 0; pattern <= 0xFFFF; ++pattern) {
    const auto bits = static_cast<uint16_t>(pattern);
    const float value = fracsweep::half_to_float(bits);
    const float expected = reference_half(bits);
    BOOST_TEST_CONTEXT("half 0x" << std::hex << pattern) {
      if (std::isnan(expected)) {
        BOOST_TEST_REQUIRE(std::isnan(value));
        BOOST_TEST((float_bits(value) & float_quiet_bit) != 0u);                     // quiet
        BOOST_TEST((float_bits(value) >> 31) == static_cast<uint32_t>(bits >> 15));  // sign kept
        const uint16_t back = fracsweep::float_to_half(value);
        BOOST_TEST(((back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0));  // still NaN
        BOOST_TEST((back & 0x8000) == (bits & 0x8000));
        BOOST_TEST((back & 0x1FF) == (bits & 0x1FF));  // payload kept
      } else {
        BOOST_TEST_REQUIRE(float_bits(value) == float_bits(expected));  // -0 included
        BOOST_TEST_REQUIRE(fracsweep::float_to_half(value) == bits);    // identity
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(bf16_to_float_matches_reference_for_all_patterns) {
  for (uint32_t pattern = 0; pattern <= 0xFFFF; ++pattern) {
    const auto bits = static_cast<uint16_t>(pattern);
    const float value = fracsweep::bf16_to_float(bits);
    const float expected = reference_bf16(bits);
    BOOST_TEST_CONTEXT("bf16 0x" << std::hex << pattern) {
      if (std::isnan(expected)) {
        BOOST_TEST_REQUIRE(std::isnan(value));
        BOOST_TEST((float_bits(value) & float_quiet_bit) != 0u);
        BOOST_TEST((float_bits(value) >> 31) == static_cast<uint32_t>(bits >> 15));
        const uint16_t back = fracsweep::float_to_bf16(value);
        BOOST_TEST(((back & 0x7F80) == 0x7F80 && (back & 0x7F) != 0));
        BOOST_TEST((back & 0x803F) == (bits & 0x803F));  // sign and payload below the quiet bit
      } else {
        BOOST_TEST_REQUIRE(float_bits(value) == float_bits(expected));
        BOOST_TEST_REQUIRE(fracsweep::float_to_bf16(value) == bits);
      }
    }
  }
}

// For each pair of neighbouring non-negative finite 16-bit values (the last pair's upper value
// being the first power of two beyond the largest finite one, i.e. Inf after rounding), the
// exact midpoint goes to the one with an even pattern, and the floats just either side of it go
// to the nearer one; negative values mirror positive ones.
template <typename Decode, typename Encode>
void check_rounding_at_midpoints(uint16_t largest_finite, double beyond_largest, Decode decode,
                                 Encode encode) {
  for (uint32_t lower = 0; lower <= largest_finite; ++lower) {
    const auto upper = static_cast<uint16_t>(lower + 1);
    const double upper_value = lower == largest_finite ? beyond_largest : double{decode(upper)};
    const auto midpoint =
        static_cast<float>((double{decode(static_cast<uint16_t>(lower))} + upper_value) / 2);
    const uint16_t even = (lower & 1) == 0 ? static_cast<uint16_t>(lower) : upper;
    const float below = std::nextafter(midpoint, 0.0f);
    const float above = std::nextafter(midpoint, std::numeric_limits<float>::infinity());
    BOOST_TEST_CONTEXT("between 0x" << std::hex << lower << " and 0x" << upper) {
      BOOST_TEST_REQUIRE(encode(midpoint) == even);
      BOOST_TEST_REQUIRE(encode(below) == lower);
      BOOST_TEST_REQUIRE(encode(above) == upper);
      BOOST_TEST_REQUIRE(encode(-midpoint) == (even | 0x8000));
      BOOST_TEST_REQUIRE(encode(-below) == (lower | 0x8000));
      BOOST_TEST_REQUIRE(encode(-above) == (upper | 0x8000));
    }
  }
}

BOOST_AUTO_TEST_CASE(float_to_half_rounds_to_nearest_even_at_every_midpoint) {
  check_rounding_at_midpoints(0x7BFF, 65536.0, reference_half, fracsweep::float_to_half);
}

BOOST_AUTO_TEST_CASE(float_to_bf16_rounds_to_nearest_even_at_every_midpoint) {
  check_rounding_at_midpoints(0x7F7F, std::ldexp(1.0, 128), reference_bf16,
                              fracsweep::float_to_bf16);
}

BOOST_AUTO_TEST_CASE(float_to_half_hand_computed_cases) {
  using fracsweep::float_to_half;
  BOOST_TEST(float_to_half(1.0f) == 0x3C00);
  BOOST_TEST(float_to_half(1.0f + 0x1p-11f) == 0x3C00);             // tie 1 | 1+2^-10: even is 1
  BOOST_TEST(float_to_half(1.0f + 0x3p-11f) == 0x3C02);             // tie 1+2^-10 | 1+2^-9: even up
  BOOST_TEST(float_to_half(1.0f + 0x1p-11f + 0x1p-23f) == 0x3C01);  // just above the tie
  BOOST_TEST(float_to_half(-2.0f - 0x1p-10f) == 0xC000);            // tie -2 | -(2+2^-9)
  BOOST_TEST(float_to_half(65504.0f) == 0x7BFF);
  BOOST_TEST(float_to_half(65519.0f) == 0x7BFF);  // below the tie with 2^16
  BOOST_TEST(float_to_half(65520.0f) == 0x7C00);  // tie 65504 | 65536: Inf
  BOOST_TEST(float_to_half(1e10f) == 0x7C00);
  BOOST_TEST(float_to_half(-1e10f) == 0xFC00);
  BOOST_TEST(float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
  BOOST_TEST(float_to_half(-std::numeric_limits<float>::infinity()) == 0xFC00);
  BOOST_TEST(float_to_half(0x1p-14f) == 0x0400);  // smallest normal
  BOOST_TEST(float_to_half(0x1p-24f) == 0x0001);  // smallest subnormal
  BOOST_TEST(float_to_half(0x1p-25f) == 0x0000);  // tie 0 | 2^-24: even is 0
  BOOST_TEST(float_to_half(0x1p-25f + 0x1p-40f) == 0x0001);
  BOOST_TEST(float_to_half(0x3p-25f) == 0x0002);    // tie 2^-24 | 2^-23: even up
  BOOST_TEST(float_to_half(0x7FFp-25f) == 0x0400);  // tie 1023 | 1024 (x 2^-24)
  BOOST_TEST(float_to_half(0x7FDp-25f) == 0x03FE);  // tie 1022 | 1023: even down
  BOOST_TEST(float_to_half(-0x1p-25f) == 0x8000);   // rounds to -0
  BOOST_TEST(float_to_half(1e-10f) == 0x0000);
  BOOST_TEST(float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
  BOOST_TEST(float_to_half(-0.0f) == 0x8000);
  BOOST_TEST(float_to_half(0.1f) == 0x2E66);  // 0.0999755859375
  // NaNs stay NaN: a signalling float NaN whose payload lies entirely in the dropped bits must
  // not become Inf.
  for (uint32_t nan_bits : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0xFFC00000u}) {
    const uint16_t half = float_to_half(float_from_bits(nan_bits));
    BOOST_TEST_CONTEXT("float NaN 0x" << std::hex << nan_bits) {
      BOOST_TEST((half & 0x7C00) == 0x7C00);
      BOOST_TEST((half & 0x0200) != 0);  // quiet
      BOOST_TEST(static_cast<uint32_t>(half >> 15) == (nan_bits >> 31));
    }
  }
}

BOOST_AUTO_TEST_CASE(float_to_bf16_hand_computed_cases) {
  using fracsweep::float_to_bf16;
  BOOST_TEST(float_to_bf16(1.0f) == 0x3F80);
  BOOST_TEST(float_to_bf16(float_from_bits(0x3F808000u)) == 0x3F80);  // tie 1 | 1+2^-7: even 1
  BOOST_TEST(float_to_bf16(float_from_bits(0x3F818000u)) == 0x3F82);  // tie, even up
  BOOST_TEST(float_to_bf16(float_from_bits(0x3F808001u)) == 0x3F81);
  BOOST_TEST(float_to_bf16(float_from_bits(0x3F807FFFu)) == 0x3F80);
  BOOST_TEST(float_to_bf16(3.14159265f) == 0x4049);  // 3.140625
  BOOST_TEST(float_to_bf16(-123.5f) == 0xC2F7);
  BOOST_TEST(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to Inf
  BOOST_TEST(float_to_bf16(float_from_bits(0x7F7F7FFFu)) == 0x7F7F);
  BOOST_TEST(float_to_bf16(float_from_bits(0x7F7F8000u)) == 0x7F80);  // tie: even is Inf
  BOOST_TEST(float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  BOOST_TEST(float_to_bf16(float_from_bits(0x00008000u)) == 0x0000);  // subnormal tie: even 0
  BOOST_TEST(float_to_bf16(float_from_bits(0x00018000u)) == 0x0002);  // subnormal tie: even up
  BOOST_TEST(float_to_bf16(float_from_bits(0x80008001u)) == 0x8001);
  BOOST_TEST(float_to_bf16(-0.0f) == 0x8000);
  for (uint32_t nan_bits : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu}) {
    const uint16_t bf16 = float_to_bf16(float_from_bits(nan_bits));
    BOOST_TEST_CONTEXT("float NaN 0x" << std::hex << nan_bits) {
      BOOST_TEST((bf16 & 0x7F80) == 0x7F80);
      BOOST_TEST((bf16 & 0x0040) != 0);  // quiet, so not Inf
      BOOST_TEST(static_cast<uint32_t>(bf16 >> 15) == (nan_bits >> 31));
    }
  }
}
