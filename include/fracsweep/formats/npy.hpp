#pragma once
// NumPy .npy files (format versions 1.0, 2.0, 3.0), C order, little-endian or byte-sized
// dtypes: b1, i1, u1, i2, u2, i4, u4, i8, u8, f4, f8. Untrusted: magic, version, header length,
// header dict, shape product (overflow-checked) and data size are validated before use.
#include <cstdint>
#include <string>
#include <vector>

namespace fracsweep {

struct NpyArray {
  std::string path;
  std::string dtype;                // numpy descr as written, e.g. "<f4", "|u1"
  std::vector<int64_t> shape;       // C order
  std::vector<unsigned char> data;  // raw little-endian element bytes, product(shape) elements

  int64_t count() const;  // product of shape
  // Converted copies; throw InputError naming the file when the dtype cannot be converted
  // exactly (floats to integers, or integers beyond int64 / float precision are refused).
  // as_float rounds f8 values to the nearest float.
  std::vector<float> as_float() const;
  std::vector<int64_t> as_int64() const;
};

// Reads and validates a whole .npy file; InputError naming the file and the field otherwise.
NpyArray read_npy(const std::string& path);
// The same checks (the file size included) without reading the data: `data` stays empty.
NpyArray read_npy_header(const std::string& path);

}  // namespace fracsweep
