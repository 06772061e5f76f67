#include "fracsweep/formats/npy.hpp"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "fracsweep/model/model.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr int64_t max_header_bytes = int64_t{1} << 20;
constexpr int64_t max_dimension_value = int64_t{1} << 48;

struct DtypeInfo {
  char kind;     // 'b' bool, 'i' signed, 'u' unsigned, 'f' float
  int64_t size;  // bytes per element
};

// The dtypes read here; multi-byte ones must be little-endian ('<').
DtypeInfo parse_descr(const std::string& descr, const std::string& path) {
  static const std::map<std::string, DtypeInfo> known = {
      {"b1", {'b', 1}}, {"i1", {'i', 1}}, {"u1", {'u', 1}}, {"i2", {'i', 2}},
      {"u2", {'u', 2}}, {"i4", {'i', 4}}, {"u4", {'u', 4}}, {"i8", {'i', 8}},
      {"u8", {'u', 8}}, {"f4", {'f', 4}}, {"f8", {'f', 8}}};
  const std::string message =
      in_file(path,
              "header field 'descr': expected one of b1, i1, u1, i2, u2, i4, u4, "
              "i8, u8, f4, f8 (little-endian), found '" +
                  descr + "'");
  check_input(descr.size() == 3, message);
  const auto found = known.find(descr.substr(1));
  check_input(found != known.end(), message);
  const char order = descr[0];
  check_input(order == '<' || ((order == '|' || order == '=') && found->second.size == 1),
              order == '>' ? in_file(path, "header field 'descr': big-endian '" + descr +
                                               "' is not supported")
                           : message);
  return found->second;
}

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(std::string text, std::string path)
      : text_(std::move(text)), path_(std::move(path)) {}

  void parse(NpyArray& array) {
    bool fortran = false, seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = quoted();
      expect(':');
      if (key == "descr") {
        array.dtype = quoted();
        seen_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        seen_order = true;
      } else if (key == "shape") {
        array.shape = tuple();
        seen_shape = true;
      } else {
        fail("unknown key '" + key + "'");
      }
      skip_space();
      if (peek() != ',') break;
      ++pos_;
    }
    expect('}');
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the dict");
    if (!seen_descr || !seen_order || !seen_shape)
      fail("expected keys 'descr', 'fortran_order' and 'shape'");
    check_input(!fortran,
                in_file(path_, "header field 'fortran_order': Fortran order is not supported"));
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(
        in_file(path_, "malformed header dict at byte " + std::to_string(pos_) + ": " + what));
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string quoted() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string::npos) fail("unterminated string");
    std::string value = text_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const size_t length = std::strlen(word);
      if (text_.compare(pos_, length, word) == 0) {
        pos_ += length;
        return value;
      }
    }
    fail("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> values;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek())))
        fail("expected a non-negative integer in 'shape'");
      int64_t value = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        value = value * 10 + (text_[pos_++] - '0');
        if (value > max_dimension_value) fail("dimension in 'shape' is too large");
      }
      values.push_back(value);
      skip_space();
      if (peek() != ',') break;
      ++pos_;
    }
    expect(')');
    return values;
  }

  std::string text_, path_;
  size_t pos_ = 0;
};

int64_t shape_product(const std::vector<int64_t>& shape, int64_t item_size,
                      const std::string& path) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim == 0) return 0;
    check_input(count <= std::numeric_limits<int64_t>::max() / item_size / dim,
                in_file(path, "header field 'shape': element count overflows"));
    count *= dim;
  }
  return count;
}

// Reads and validates the header; leaves `file` at the first data byte.
NpyArray read_header(std::ifstream& file, const std::string& path) {
  std::error_code error;
  const auto file_size = static_cast<int64_t>(std::filesystem::file_size(path, error));
  check_input(!error && file, in_file(path, "cannot read the .npy file"));
  unsigned char prefix[12] = {};  // (12) magic, version, header length (2 bytes v1, 4 bytes v2/v3)
  file.read(reinterpret_cast<char*>(prefix), 8);
  check_input(file.gcount() == 8 && std::memcmp(prefix, npy_magic, 6) == 0,
              in_file(path, "not a .npy file (magic \\x93NUMPY missing)"));
  const int major = prefix[6];
  check_input(major >= 1 && major <= 3,
              in_file(path, "unsupported .npy format version " + std::to_string(major) + "." +
                                std::to_string(prefix[7]) + " (expected 1, 2 or 3)"));
  const int length_bytes = major == 1 ? 2 : 4;
  file.read(reinterpret_cast<char*>(prefix + 8), length_bytes);
  check_input(file.gcount() == length_bytes, in_file(path, "truncated .npy header length"));
  int64_t header_length = 0;
  for (int i = length_bytes - 1; i >= 0; --i) header_length = header_length * 256 + prefix[8 + i];
  const int64_t data_begin = 8 + length_bytes + header_length;
  check_input(
      header_length <= max_header_bytes && data_begin <= file_size,
      in_file(path, "header length " + std::to_string(header_length) + " exceeds the file (" +
                        std::to_string(file_size) + " bytes) or 1 MiB"));
  std::string header(static_cast<size_t>(header_length), '\0');
  file.read(header.data(), header_length);
  check_input(file.gcount() == header_length, in_file(path, "truncated .npy header"));

  NpyArray array;
  array.path = path;
  HeaderParser(header, path).parse(array);
  const DtypeInfo info = parse_descr(array.dtype, path);
  const int64_t count = shape_product(array.shape, info.size, path);
  const int64_t data_bytes = file_size - data_begin;
  check_input(data_bytes == count * info.size,
              in_file(path, "data holds " + std::to_string(data_bytes) +
                                " bytes, the header's shape " + shape_text(array.shape) + " of " +
                                array.dtype + " needs " + std::to_string(count * info.size)));
  return array;
}

template <typename T>
T load(const unsigned char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));  // little-endian host (x86-64, aarch64)
  return value;
}

}  // namespace

int64_t NpyArray::count() const {
  int64_t product = 1;
  for (int64_t dim : shape) product *= dim;
  return product;
}

NpyArray read_npy_header(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  check_input(static_cast<bool>(file), in_file(path, "cannot open the .npy file"));
  return read_header(file, path);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  check_input(static_cast<bool>(file), in_file(path, "cannot open the .npy file"));
  NpyArray array = read_header(file, path);
  array.data.resize(static_cast<size_t>(array.count() * parse_descr(array.dtype, path).size));
  file.read(reinterpret_cast<char*>(array.data.data()),
            static_cast<std::streamsize>(array.data.size()));
  check_input(file.gcount() == static_cast<std::streamsize>(array.data.size()),
              in_file(path, "cannot read the data"));
  return array;
}

std::vector<float> NpyArray::as_float() const {
  const DtypeInfo info = parse_descr(dtype, path);
  const int64_t n = count();
  std::vector<float> out(static_cast<size_t>(n));    // (count)
  constexpr int64_t exact_limit = int64_t{1} << 24;  // integers float represents exactly
  auto integer = [&](int64_t value, int64_t i) {
    check_input(value >= -exact_limit && value <= exact_limit,
                in_file(path, "element " + std::to_string(i) + " (" + std::to_string(value) +
                                  ") is an integer beyond float precision (|v| <= 2^24)"));
    return static_cast<float>(value);
  };
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* p = data.data() + i * info.size;
    float& v = out[static_cast<size_t>(i)];
    switch (info.kind) {
      case 'b':
        v = p[0] != 0 ? 1.0f : 0.0f;
        break;
      case 'f':
        v = info.size == 4 ? load<float>(p) : static_cast<float>(load<double>(p));
        break;
      case 'i':
        v = integer(info.size == 1   ? load<int8_t>(p)
                    : info.size == 2 ? load<int16_t>(p)
                    : info.size == 4 ? load<int32_t>(p)
                                     : load<int64_t>(p),
                    i);
        break;
      default: {
        const uint64_t value = info.size == 1   ? load<uint8_t>(p)
                               : info.size == 2 ? load<uint16_t>(p)
                               : info.size == 4 ? load<uint32_t>(p)
                                                : load<uint64_t>(p);
        check_input(value <= static_cast<uint64_t>(exact_limit),
                    in_file(path, "element " + std::to_string(i) +
                                      " is an integer beyond float precision"));
        v = static_cast<float>(value);
      }
    }
  }
  return out;
}

std::vector<int64_t> NpyArray::as_int64() const {
  const DtypeInfo info = parse_descr(dtype, path);
  check_input(info.kind != 'f',
              in_file(path, "dtype " + dtype + ": expected integers, found floats"));
  const int64_t n = count();
  std::vector<int64_t> out(static_cast<size_t>(n));  // (count)
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* p = data.data() + i * info.size;
    int64_t& v = out[static_cast<size_t>(i)];
    if (info.kind == 'b') {
      v = p[0] != 0;
    } else if (info.kind == 'i') {
      v = info.size == 1   ? load<int8_t>(p)
          : info.size == 2 ? load<int16_t>(p)
          : info.size == 4 ? load<int32_t>(p)
                           : load<int64_t>(p);
    } else {
      const uint64_t value = info.size == 1   ? load<uint8_t>(p)
                             : info.size == 2 ? load<uint16_t>(p)
                             : info.size == 4 ? load<uint32_t>(p)
                                              : load<uint64_t>(p);
      check_input(value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                  in_file(path, "element " + std::to_string(i) + " exceeds int64"));
      v = static_cast<int64_t>(value);
    }
  }
  return out;
}

}  // namespace fracsweep
