#pragma once
// safetensors files: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [...], "data_offsets": [begin, end]},
//  "__metadata__": {string: string}}, then the data buffer (offsets relative to its start).
// Every size, offset and count is checked before use; the file is mapped read-only.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fracsweep/model/model.hpp"

namespace fracsweep {

enum class DType { f32, f16, bf16, f64, i64, i32, i16, i8, u8, boolean };

// Bytes per element; the safetensors name ("F32", "BF16", ...); parse throws InputError.
int64_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

// A read-only memory map of a whole file (RAII over mmap/munmap and the descriptor).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws InputError naming the file
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  int64_t size_ = 0;
};

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  int64_t count = 0;  // product of shape (checked for overflow)
  int64_t begin = 0;  // byte offset in the file (header and length prefix included)
  int64_t bytes = 0;  // count * dtype_size
};

class SafetensorsFile {
 public:
  // Maps and validates: header length within the file and <= 100 MiB; JSON well formed; each
  // tensor's dtype known, shape non-negative with a product that fits int64, data_offsets
  // [begin, end] with begin <= end, end within the data buffer, end - begin == count *
  // dtype_size; tensors do not overlap. Messages name the file, the tensor and the field.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // by offset
  const SafetensorsTensor* find(const std::string& name) const;
  // The tensor that must exist; InputError naming the file and the tensor otherwise.
  const SafetensorsTensor& at(const std::string& name) const;
  const unsigned char* bytes(const SafetensorsTensor& tensor) const {
    return file_->data() + tensor.begin;
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Converts one tensor to float32 (F32, F16, BF16; others throw InputError). out: (count).
  void read_as_float(const SafetensorsTensor& tensor, float* out) const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// The stored number format a float tensor is perturbed in; InputError naming `tensor` in
// `path` for dtypes other than F32, F16 and BF16.
StoredType stored_type_of(DType dtype, const std::string& path, const std::string& tensor);

}  // namespace fracsweep
