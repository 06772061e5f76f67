#include "fracsweep/formats/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

#include "fracsweep/formats/json.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is read in place");

namespace {

constexpr int64_t length_prefix_bytes = 8;
constexpr int64_t max_header_bytes = int64_t{100} << 20;  // 100 MiB, as the format's reference

struct DTypeInfo {
  DType dtype;
  const char* name;
  int64_t size;
};

constexpr std::array<DTypeInfo, 10> dtype_table = {{
    {DType::f32, "F32", 4},
    {DType::f16, "F16", 2},
    {DType::bf16, "BF16", 2},
    {DType::f64, "F64", 8},
    {DType::i64, "I64", 8},
    {DType::i32, "I32", 4},
    {DType::i16, "I16", 2},
    {DType::i8, "I8", 1},
    {DType::u8, "U8", 1},
    {DType::boolean, "BOOL", 1},
}};

const DTypeInfo& dtype_info(DType dtype) {
  for (const DTypeInfo& info : dtype_table) {
    if (info.dtype == dtype) return info;
  }
  throw RunError("internal error: DType without a table entry");
}

std::string known_dtype_names() {
  std::vector<std::string> names;
  for (const DTypeInfo& info : dtype_table) names.emplace_back(info.name);
  return join(names, ", ");
}

std::string system_message(int error_number) {
  return std::generic_category().message(error_number);
}

// Closes a descriptor at scope exit; a mapping made from it stays valid.
class DescriptorCloser {
 public:
  explicit DescriptorCloser(int descriptor) : descriptor_(descriptor) {}
  ~DescriptorCloser() { ::close(descriptor_); }
  DescriptorCloser(const DescriptorCloser&) = delete;
  DescriptorCloser& operator=(const DescriptorCloser&) = delete;

 private:
  int descriptor_;
};

uint64_t read_u64_le(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = value << 8 | bytes[i];
  return value;
}

// The parts of one header entry, checked field by field. `where` is "<file>: tensor '<name>'".
class TensorEntryReader {
 public:
  TensorEntryReader(std::string where, const JsonValue& entry)
      : where_(std::move(where)), entry_(entry) {
    for (const auto& [key, value] : entry_.as_object(where_)) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        throw InputError(where_ + ": unexpected field '" + key +
                         "' (expected only dtype, shape and data_offsets)");
      }
    }
  }

  DType dtype() const {
    const std::string& name = field("dtype").as_string(field_where("dtype"));
    for (const DTypeInfo& info : dtype_table) {
      if (name == info.name) return info.dtype;
    }
    throw InputError(field_where("dtype") + ": unknown dtype '" + name + "' (expected one of " +
                     known_dtype_names() + ")");
  }

  // Non-negative dimensions.
  std::vector<int64_t> shape() const {
    const JsonValue::Array& dims = field("shape").as_array(field_where("shape"));
    std::vector<int64_t> shape;  // (rank)
    for (size_t axis = 0; axis < dims.size(); ++axis) {
      const std::string dim_where = field_where("shape") + "[" + std::to_string(axis) + "]";
      const int64_t dim = dims[axis].as_int64(dim_where);
      if (dim < 0) {
        throw InputError(dim_where + ": expected a non-negative size, found " +
                         std::to_string(dim));
      }
      shape.push_back(dim);
    }
    return shape;
  }

  // The product of the dimensions, which must fit int64.
  int64_t element_count(const std::vector<int64_t>& shape) const {
    int64_t count = 1;
    for (size_t axis = 0; axis < shape.size(); ++axis) {
      if (__builtin_mul_overflow(count, shape[axis], &count)) {
        throw InputError(field_where("shape") + ": the element count overflows int64 at axis " +
                         std::to_string(axis));
      }
    }
    return count;
  }

  // [begin, end] relative to the data buffer, both non-negative, begin <= end.
  std::pair<int64_t, int64_t> data_offsets() const {
    const std::string offsets_where = field_where("data_offsets");
    const JsonValue::Array& offsets = field("data_offsets").as_array(offsets_where);
    if (offsets.size() != 2) {
      throw InputError(offsets_where + ": expected 2 integers [begin, end], found " +
                       std::to_string(offsets.size()) + " elements");
    }
    const int64_t begin = offsets[0].as_int64(offsets_where + "[0]");
    const int64_t end = offsets[1].as_int64(offsets_where + "[1]");
    if (begin < 0 || end < 0) {
      throw InputError(offsets_where + ": expected non-negative offsets, found [" +
                       std::to_string(begin) + ", " + std::to_string(end) + "]");
    }
    if (begin > end) {
      throw InputError(offsets_where + ": expected begin <= end, found [" + std::to_string(begin) +
                       ", " + std::to_string(end) + "]");
    }
    return {begin, end};
  }

  std::string field_where(const char* field_name) const {
    return where_ + ", field '" + field_name + "'";
  }

 private:
  const JsonValue& field(const char* field_name) const { return entry_.at(field_name, where_); }

  std::string where_;
  const JsonValue& entry_;  // the tensor's object in the parsed header
};

}  // namespace

int64_t dtype_size(DType dtype) {
  return dtype_info(dtype).size;
}

const char* dtype_name(DType dtype) {
  return dtype_info(dtype).name;
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) {
    const int error_number = errno;  // before anything else can change it
    throw InputError(path + ": cannot open: " + system_message(error_number));
  }
  const DescriptorCloser closer(descriptor);
  struct stat info {};
  if (::fstat(descriptor, &info) != 0) {
    const int error_number = errno;
    throw InputError(path + ": cannot stat: " + system_message(error_number));
  }
  if (!S_ISREG(info.st_mode)) throw InputError(path + ": not a regular file");
  size_ = static_cast<int64_t>(info.st_size);
  if (size_ > 0) {
    void* mapping =
        ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, descriptor, 0);
    if (mapping == MAP_FAILED) {
      const int error_number = errno;
      throw InputError(path + ": cannot map " + std::to_string(size_) +
                       " bytes: " + system_message(error_number));
    }
    data_ = static_cast<const unsigned char*>(mapping);
  }
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), static_cast<size_t>(size_));
}

namespace {

// The tensor `name` of the header, its data [begin, end) checked against its dtype and shape and
// against the data buffer (data_size bytes from data_start).
SafetensorsTensor read_tensor_entry(const std::string& name, const JsonValue& entry,
                                    const std::string& path, int64_t data_start,
                                    int64_t data_size) {
  const std::string where = path + ": tensor '" + name + "'";
  const TensorEntryReader reader(where, entry);
  SafetensorsTensor tensor;
  tensor.name = name;
  tensor.dtype = reader.dtype();
  tensor.shape = reader.shape();
  tensor.count = reader.element_count(tensor.shape);
  const auto [begin, end] = reader.data_offsets();
  if (end > data_size) {
    throw InputError(reader.field_where("data_offsets") + ": end " + std::to_string(end) +
                     " is beyond the data buffer of " + std::to_string(data_size) + " bytes");
  }
  if (__builtin_mul_overflow(tensor.count, dtype_size(tensor.dtype), &tensor.bytes)) {
    throw InputError(reader.field_where("shape") + ": " + std::to_string(tensor.count) +
                     " elements of " + dtype_name(tensor.dtype) + " overflow int64 bytes");
  }
  if (end - begin != tensor.bytes) {
    throw InputError(reader.field_where("data_offsets") + ": expected " +
                     std::to_string(tensor.bytes) + " bytes (" + std::to_string(tensor.count) +
                     " elements of " + dtype_name(tensor.dtype) + "), found [" +
                     std::to_string(begin) + ", " + std::to_string(end) +
                     "] = " + std::to_string(end - begin) + " bytes");
  }
  tensor.begin = data_start + begin;
  return tensor;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<MappedFile>(path)) {
  const int64_t file_size = file_->size();
  if (file_size < length_prefix_bytes) {
    throw InputError(path + ": file is " + std::to_string(file_size) +
                     " bytes, shorter than the 8-byte header length prefix");
  }
  const uint64_t header_length = read_u64_le(file_->data());
  const auto bytes_after_prefix = static_cast<uint64_t>(file_size - length_prefix_bytes);
  if (header_length == 0) throw InputError(path + ": header length is 0 (expected a JSON object)");
  if (header_length > static_cast<uint64_t>(max_header_bytes)) {
    throw InputError(path + ": header length " + std::to_string(header_length) +
                     " exceeds the limit of " + std::to_string(max_header_bytes) + " bytes");
  }
  if (header_length > bytes_after_prefix) {
    throw InputError(path + ": header length " + std::to_string(header_length) + " exceeds the " +
                     std::to_string(bytes_after_prefix) + " bytes after the length prefix");
  }
  const auto data_start = length_prefix_bytes + static_cast<int64_t>(header_length);
  const int64_t data_size = file_size - data_start;

  const std::string_view header_text(
      reinterpret_cast<const char*>(file_->data()) + length_prefix_bytes,
      static_cast<size_t>(header_length));
  JsonLimits limits;
  limits.max_bytes = max_header_bytes;
  const JsonValue header = parse_json(header_text, path + " (safetensors header)", limits);
  const JsonValue::Object& entries = header.as_object(path + ": header");

  for (const auto& [name, entry] : entries) {
    if (name == "__metadata__") {
      const std::string metadata_where = path + ": '__metadata__'";
      for (const auto& [key, value] : entry.as_object(metadata_where)) {
        metadata_.emplace(key, value.as_string(metadata_where + " key '" + key + "'"));
      }
      continue;
    }
    tensors_.push_back(read_tensor_entry(name, entry, path, data_start, data_size));
  }

  std::sort(tensors_.begin(), tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
            });
  // Sorted by begin, with no overlap so far the previous non-empty tensor ends furthest, so a
  // non-empty tensor overlaps an earlier one exactly when it starts before that one's end. Empty
  // tensors occupy no bytes and overlap nothing. Gaps are allowed by the format.
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : tensors_) {
    if (tensor.bytes == 0) continue;
    if (previous != nullptr && tensor.begin < previous->begin + previous->bytes) {
      throw InputError(path + ": tensor '" + tensor.name + "', field 'data_offsets': bytes [" +
                       std::to_string(tensor.begin - data_start) + ", " +
                       std::to_string(tensor.begin - data_start + tensor.bytes) +
                       ") overlap tensor '" + previous->name + "' at [" +
                       std::to_string(previous->begin - data_start) + ", " +
                       std::to_string(previous->begin - data_start + previous->bytes) + ")");
    }
    previous = &tensor;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  const auto found = tensor_index_.find(name);
  return found == tensor_index_.end() ? nullptr : &tensors_[found->second];
}

const SafetensorsTensor& SafetensorsFile::at(const std::string& name) const {
  const SafetensorsTensor* tensor = find(name);
  if (tensor == nullptr) throw InputError(path() + ": no tensor named '" + name + "'");
  return *tensor;
}

void SafetensorsFile::read_as_float(const SafetensorsTensor& tensor, float* out) const {
  const unsigned char* source = bytes(tensor);
  switch (tensor.dtype) {
    case DType::f32:
      copy_bytes(source, static_cast<size_t>(tensor.bytes), out);
      return;
    case DType::f16:
      widen_16bit(source, tensor.count, out, half_to_float);
      return;
    case DType::bf16:
      widen_16bit(source, tensor.count, out, bf16_to_float);
      return;
    default:
      throw InputError(path() + ": tensor '" + tensor.name +
                       "', field 'dtype': expected F32, F16 " + "or BF16 to read as float, found " +
                       dtype_name(tensor.dtype));
  }
}

StoredType stored_type_of(DType dtype, const std::string& path, const std::string& tensor) {
  switch (dtype) {
    case DType::f32:
      return StoredType::f32;
    case DType::f16:
      return StoredType::f16;
    case DType::bf16:
      return StoredType::bf16;
    default:
      throw InputError(in_file(path, "tensor '" + tensor +
                                         "', field 'dtype': expected F32, F16 or "
                                         "BF16, found " +
                                         dtype_name(dtype)));
  }
}

}  // namespace fracsweep
