#include "fracsweep/formats/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "fracsweep/model/stored_type.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

static_assert(std::endian::native == std::endian::little,
              "GGUF reading assumes a little-endian host");

constexpr int64_t max_dims = 4;       // GGML_MAX_DIMS
constexpr int max_array_nesting = 4;  // arrays of arrays of ... (the spec allows nesting)
// Array elements in all metadata together. Each costs ~100 bytes in memory against as little
// as 1 byte in the file, so this bounds memory at ~1.7 GB; real vocabularies (Llama 3: 128k
// tokens, 280k merges) use a few percent of it.
constexpr uint64_t max_metadata_elements = uint64_t{1} << 24;
// Metadata keys and tensors (real files: tens of keys, at most tens of thousands of tensors).
constexpr uint64_t max_entries = uint64_t{1} << 20;
constexpr int64_t default_alignment = 32;

// Bytes of one array element that is not a string or an array; 0 for those two.
int64_t scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean:
      return 1;
    case GgufValueType::u16:
    case GgufValueType::i16:
      return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32:
      return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64:
      return 8;
    case GgufValueType::string:
    case GgufValueType::array:
      return 0;
  }
  return 0;
}

// Smallest encoding of one element, so a declared count can be checked against the bytes left
// before anything is allocated: a string is at least its 8-byte length, an array its 12-byte
// type + count.
int64_t min_encoded_size(GgufValueType type) {
  if (type == GgufValueType::string) return 8;
  if (type == GgufValueType::array) return 12;
  return scalar_size(type);
}

bool known_value_type(uint32_t raw) {
  return raw <= 12;
}

int64_t element_size(GgmlType type) {
  return type == GgmlType::f32 ? 4 : 2;
}

// Sequential reader over the mapped bytes; every read is bounds-checked.
class Cursor {
 public:
  explicit Cursor(const MappedFile& file) : file_(file) {}
  int64_t position() const { return position_; }
  int64_t remaining() const { return file_.size() - position_; }

  void need(int64_t bytes, const std::string& what) const {
    check_input(
        bytes >= 0 && bytes <= remaining(),
        in_file(file_.path(), "truncated GGUF: " + what + " needs " + std::to_string(bytes) +
                                  " bytes at offset " + std::to_string(position_) + ", only " +
                                  std::to_string(remaining()) + " remain"));
  }
  template <typename T>
  T read(const std::string& what) {
    need(static_cast<int64_t>(sizeof(T)), what);
    T value;
    std::memcpy(&value, file_.data() + position_, sizeof(T));
    position_ += static_cast<int64_t>(sizeof(T));
    return value;
  }
  std::string read_string(const std::string& what) {
    const uint64_t length = read<uint64_t>(what + " length");
    check_input(length <= static_cast<uint64_t>(remaining()),
                in_file(file_.path(), "GGUF " + what + ": declared string length " +
                                          std::to_string(length) + " exceeds the " +
                                          std::to_string(remaining()) +
                                          " bytes left in the file (truncated file?)"));
    std::string text(reinterpret_cast<const char*>(file_.data() + position_),
                     static_cast<size_t>(length));
    position_ += static_cast<int64_t>(length);
    return text;
  }

 private:
  const MappedFile& file_;
  int64_t position_ = 0;
};

// One value; `element_budget` is what is left of max_metadata_elements. (Long: one case per
// GGUF value type, each with its own bounds checks, read in the file's order.)
GgufValue read_value(Cursor& cursor, GgufValueType type, const std::string& what,
                     const std::string& path, int depth, uint64_t& element_budget) {
  GgufValue value;
  value.type = type;
  auto set_signed = [&](int64_t v) {
    value.is_negative = v < 0;
    value.integer = static_cast<uint64_t>(v);
  };
  switch (type) {
    case GgufValueType::u8:
      value.integer = cursor.read<uint8_t>(what);
      break;
    case GgufValueType::i8:
      set_signed(cursor.read<int8_t>(what));
      break;
    case GgufValueType::u16:
      value.integer = cursor.read<uint16_t>(what);
      break;
    case GgufValueType::i16:
      set_signed(cursor.read<int16_t>(what));
      break;
    case GgufValueType::u32:
      value.integer = cursor.read<uint32_t>(what);
      break;
    case GgufValueType::i32:
      set_signed(cursor.read<int32_t>(what));
      break;
    case GgufValueType::u64:
      value.integer = cursor.read<uint64_t>(what);
      break;
    case GgufValueType::i64:
      set_signed(cursor.read<int64_t>(what));
      break;
    case GgufValueType::f32:
      value.real = cursor.read<float>(what);
      break;
    case GgufValueType::f64:
      value.real = cursor.read<double>(what);
      break;
    case GgufValueType::boolean: {
      const uint8_t raw = cursor.read<uint8_t>(what);
      check_input(raw <= 1, in_file(path, "GGUF " + what + ": expected a bool (0 or 1), found " +
                                              std::to_string(raw)));
      value.integer = raw;
      break;
    }
    case GgufValueType::string:
      value.text = cursor.read_string(what);
      break;
    case GgufValueType::array: {
      check_input(depth < max_array_nesting,
                  in_file(path, "GGUF " + what + ": arrays nested deeper than " +
                                    std::to_string(max_array_nesting)));
      const uint32_t raw_type = cursor.read<uint32_t>(what + " element type");
      check_input(known_value_type(raw_type),
                  in_file(path, "GGUF " + what + ": unknown array element type " +
                                    std::to_string(raw_type) + " (expected 0..12)"));
      value.element_type = static_cast<GgufValueType>(raw_type);
      const uint64_t count = cursor.read<uint64_t>(what + " element count");
      const auto min_size = static_cast<uint64_t>(min_encoded_size(value.element_type));
      check_input(
          count <= static_cast<uint64_t>(cursor.remaining()) / min_size,
          in_file(path, "GGUF " + what + ": declared array of " + std::to_string(count) + " " +
                            gguf_value_type_name(value.element_type) +
                            " elements cannot fit in the " + std::to_string(cursor.remaining()) +
                            " bytes left in the file (truncated file?)"));
      check_input(
          count <= element_budget,
          in_file(path, "GGUF " + what + ": declared array of " + std::to_string(count) +
                            " elements exceeds what is left of the limit of " +
                            std::to_string(max_metadata_elements) + " metadata array elements"));
      element_budget -= count;
      value.items.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) {
        value.items.push_back(read_value(cursor, value.element_type,
                                         what + "[" + std::to_string(i) + "]", path, depth + 1,
                                         element_budget));
      }
      break;
    }
  }
  return value;
}

bool is_integer_type(GgufValueType type) {
  return type != GgufValueType::f32 && type != GgufValueType::f64 &&
         type != GgufValueType::string && type != GgufValueType::array &&
         type != GgufValueType::boolean;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = static_cast<uint32_t>(type);
  return index <= 12 ? names[index] : "unknown";
}

std::string ggml_type_name(uint32_t type) {
  static const std::pair<uint32_t, const char*> names[] = {
      {0, "F32"},   {1, "F16"},   {2, "Q4_0"},  {3, "Q4_1"},  {6, "Q5_0"},
      {7, "Q5_1"},  {8, "Q8_0"},  {9, "Q8_1"},  {10, "Q2_K"}, {11, "Q3_K"},
      {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {24, "I8"},
      {25, "I16"},  {26, "I32"},  {27, "I64"},  {28, "F64"},  {30, "BF16"}};
  const char* name = "unknown";
  for (const auto& [id, known] : names) {
    if (id == type) name = known;
  }
  const bool readable = type == 0 || type == 1 || type == 30;
  return readable ? std::string(name) : "ggml type " + std::to_string(type) + " (" + name + ")";
}

// Long by design: the header, the metadata and the tensor table are validated in file order,
// each check next to the read it guards, so a reader can follow the format top to bottom.
GgufFile::GgufFile(const std::string& path) : file_(std::make_shared<MappedFile>(path)) {
  Cursor cursor(*file_);
  cursor.need(4, "the magic \"GGUF\"");
  check_input(std::memcmp(file_->data(), "GGUF", 4) == 0,
              in_file(path, "not a GGUF file: expected the magic \"GGUF\" in the first 4 bytes"));
  cursor.read<uint32_t>("magic");
  version_ = cursor.read<uint32_t>("the version");
  check_input(version_ == 2 || version_ == 3,
              in_file(path, "GGUF version: expected 2 or 3, found " + std::to_string(version_)));
  const uint64_t tensor_count = cursor.read<uint64_t>("the tensor count");
  const uint64_t kv_count = cursor.read<uint64_t>("the metadata count");
  // A key-value pair is at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  check_input(
      kv_count <= max_entries && tensor_count <= max_entries,
      in_file(path, "GGUF header: declared " + std::to_string(kv_count) + " metadata keys and " +
                        std::to_string(tensor_count) + " tensors; at most " +
                        std::to_string(max_entries) + " of each are accepted"));
  check_input(kv_count <= static_cast<uint64_t>(cursor.remaining()) / 13,
              in_file(path, "GGUF header: declared metadata count " + std::to_string(kv_count) +
                                " cannot fit in the " + std::to_string(cursor.remaining()) +
                                " bytes left in the file (truncated file?)"));
  check_input(tensor_count <= static_cast<uint64_t>(cursor.remaining()) / 24,
              in_file(path, "GGUF header: declared tensor count " + std::to_string(tensor_count) +
                                " cannot fit in the " + std::to_string(cursor.remaining()) +
                                " bytes left in the file (truncated file?)"));

  metadata_.reserve(static_cast<size_t>(kv_count));
  uint64_t element_budget = max_metadata_elements;
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = cursor.read_string("metadata key " + std::to_string(i));
    check_input(metadata_index_.emplace(key, metadata_.size()).second,
                in_file(path, "GGUF metadata key '" + key + "' appears twice"));
    const uint32_t raw_type = cursor.read<uint32_t>("type of metadata key '" + key + "'");
    check_input(known_value_type(raw_type),
                in_file(path, "GGUF metadata key '" + key + "': unknown value type " +
                                  std::to_string(raw_type) + " (expected 0..12)"));
    GgufValue value = read_value(cursor, static_cast<GgufValueType>(raw_type),
                                 "metadata key '" + key + "'", path, 0, element_budget);
    metadata_.emplace_back(std::move(key), std::move(value));
  }
  if (find("general.alignment") != nullptr) {
    const int64_t alignment = get_int("general.alignment");
    check_input(
        alignment > 0 && alignment <= (int64_t{1} << 30) &&
            std::has_single_bit(static_cast<uint64_t>(alignment)),
        in_file(path, "GGUF metadata key 'general.alignment': expected a power of two, found " +
                          std::to_string(alignment)));
    alignment_ = alignment;
  } else {
    alignment_ = default_alignment;
  }

  std::vector<uint64_t> relative_offsets;  // (tensor_count) offsets into the data section
  tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    t.name = cursor.read_string("name of tensor " + std::to_string(i));
    const std::string where = "GGUF tensor '" + t.name + "'";
    check_input(tensor_index_.emplace(t.name, tensors_.size()).second,
                in_file(path, where + " appears twice"));
    const uint32_t n_dims = cursor.read<uint32_t>(where + " n_dims");
    check_input(n_dims >= 1 && n_dims <= max_dims,
                in_file(path, where + ": n_dims must be 1.." + std::to_string(max_dims) +
                                  ", found " + std::to_string(n_dims)));
    std::vector<int64_t> dims;
    t.count = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = cursor.read<uint64_t>(where + " dimension " + std::to_string(d));
      check_input(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                      !__builtin_mul_overflow(t.count, static_cast<int64_t>(dim), &t.count),
                  in_file(path, where + ": shape product overflows a 64-bit element count"));
      dims.push_back(static_cast<int64_t>(dim));
    }
    t.shape.assign(dims.rbegin(), dims.rend());
    const uint32_t type = cursor.read<uint32_t>(where + " type");
    check_input(type == 0 || type == 1 || type == 30,
                in_file(path, where + ": unsupported tensor type " + ggml_type_name(type) +
                                  "; expected F32, F16 or BF16"));
    t.type = static_cast<GgmlType>(type);
    check_input(!__builtin_mul_overflow(t.count, element_size(t.type), &t.bytes),
                in_file(path, where + ": byte size overflows 64 bits"));
    relative_offsets.push_back(cursor.read<uint64_t>(where + " offset"));
    tensors_.push_back(std::move(t));
  }

  const int64_t infos_end = cursor.position();
  data_offset_ = (infos_end + alignment_ - 1) / alignment_ * alignment_;
  const int64_t data_bytes = file_->size() - std::min(data_offset_, file_->size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    const uint64_t offset = relative_offsets[i];
    const std::string where = "GGUF tensor '" + t.name + "'";
    check_input(
        offset % static_cast<uint64_t>(alignment_) == 0,
        in_file(path, where + ": data offset " + std::to_string(offset) +
                          " is not a multiple of the alignment " + std::to_string(alignment_)));
    check_input(
        offset <= static_cast<uint64_t>(data_bytes) &&
            static_cast<uint64_t>(t.bytes) <= static_cast<uint64_t>(data_bytes) - offset,
        in_file(path, where + ": data [" + std::to_string(offset) + ", " + std::to_string(offset) +
                          " + " + std::to_string(t.bytes) + ") extends past the end of the " +
                          std::to_string(data_bytes) + "-byte data section (truncated file?)"));
    t.begin = data_offset_ + static_cast<int64_t>(offset);
  }
  std::vector<const GgufTensor*> by_offset;
  for (const GgufTensor& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& previous = *by_offset[i - 1];
    check_input(previous.begin + previous.bytes <= by_offset[i]->begin,
                in_file(path, "GGUF tensors '" + previous.name + "' and '" + by_offset[i]->name +
                                  "' overlap: the first ends at byte " +
                                  std::to_string(previous.begin + previous.bytes) +
                                  ", the second starts at " + std::to_string(by_offset[i]->begin)));
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto found = metadata_index_.find(key);
  return found == metadata_index_.end() ? nullptr : &metadata_[found->second].second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  const auto found = tensor_index_.find(name);
  return found == tensor_index_.end() ? nullptr : &tensors_[found->second];
}

namespace {

const GgufValue& require(const GgufFile& file, const std::string& key) {
  const GgufValue* value = file.find(key);
  check_input(value != nullptr, in_file(file.path(), "GGUF metadata key '" + key + "' is missing"));
  return *value;
}

[[noreturn]] void wrong_type(const GgufFile& file, const std::string& key, const char* expected,
                             const GgufValue& value) {
  std::string found = gguf_value_type_name(value.type);
  if (value.type == GgufValueType::array)
    found += std::string(" of ") + gguf_value_type_name(value.element_type);
  throw InputError(in_file(
      file.path(), "GGUF metadata key '" + key + "': expected " + expected + ", found " + found));
}

}  // namespace

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& value = require(*this, key);
  if (!is_integer_type(value.type)) wrong_type(*this, key, "an integer", value);
  check_input(value.is_negative ||
                  value.integer <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              in_file(path(), "GGUF metadata key '" + key + "': value " +
                                  std::to_string(value.integer) + " does not fit in int64"));
  return static_cast<int64_t>(value.integer);
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& value = require(*this, key);
  if (value.type != GgufValueType::f32 && value.type != GgufValueType::f64) {
    wrong_type(*this, key, "f32 or f64", value);
  }
  return value.real;
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& value = require(*this, key);
  if (value.type != GgufValueType::string) wrong_type(*this, key, "a string", value);
  return value.text;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& value = require(*this, key);
  if (value.type != GgufValueType::array || value.element_type != GgufValueType::string) {
    wrong_type(*this, key, "an array of string", value);
  }
  std::vector<std::string> out;
  out.reserve(value.items.size());
  for (const GgufValue& item : value.items) out.push_back(item.text);
  return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue& value = require(*this, key);
  if (value.type != GgufValueType::array || value.element_type != GgufValueType::f32) {
    wrong_type(*this, key, "an array of f32", value);
  }
  std::vector<float> out;
  out.reserve(value.items.size());
  for (const GgufValue& item : value.items) out.push_back(static_cast<float>(item.real));
  return out;
}

void GgufFile::read_as_float(const GgufTensor& tensor, float* out) const {
  const unsigned char* source = file_->data() + tensor.begin;
  if (tensor.type == GgmlType::f32) {
    // An empty tensor's buffer may be null, and memcpy's arguments never may.
    if (tensor.bytes > 0) copy_bytes(source, static_cast<size_t>(tensor.bytes), out);
    return;
  }
  widen_16bit(source, tensor.count, out, stored16_widener(tensor.type == GgmlType::f16));
}

}  // namespace fracsweep
