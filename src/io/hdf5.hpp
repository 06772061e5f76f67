#pragma once
// Private to the io layer: RAII owners of HDF5 identifiers, error-stack helpers and the HDF5
// types of the numeric element types the results file stores. The HDF5 headers stay out of
// the public include/fracsweep/io headers, so layers above io never see them.
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace fracsweep {

// Owns one HDF5 identifier and closes it with `Close` (H5Fclose, H5Dclose, ...).
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      close();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { close(); }

  hid_t get() const { return id_; }
  // Closes now; returns HDF5's status (the destructor has to ignore it).
  herr_t close() { return id_ < 0 ? 0 : Close(std::exchange(id_, H5I_INVALID_HID)); }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using FileHandle = Handle<H5Fclose>;
using GroupHandle = Handle<H5Gclose>;
using DatasetHandle = Handle<H5Dclose>;
using DataspaceHandle = Handle<H5Sclose>;
using DatatypeHandle = Handle<H5Tclose>;
using AttributeHandle = Handle<H5Aclose>;
using PropertyListHandle = Handle<H5Pclose>;

// Turns off HDF5's automatic printing of its error stack while alive (restoring the previous
// handler after); failures are reported by exceptions carrying the innermost HDF5 message.
class QuietHdf5Errors {
 public:
  QuietHdf5Errors();
  ~QuietHdf5Errors();
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  bool saved_ok_ = false;
  H5E_auto2_t saved_handler_ = nullptr;
  void* saved_data_ = nullptr;
};

// Description of the most specific error on HDF5's error stack (where it was detected); clears
// the stack.
std::string innermost_hdf5_error();

inline hsize_t to_hsize(size_t n) {
  return static_cast<hsize_t>(n);
}

// Native (memory) and little-endian (file) HDF5 types of the numeric element types we store.
template <typename T>
struct NumericType;
template <>
struct NumericType<int8_t> {
  static hid_t memory() { return H5T_NATIVE_INT8; }
  static hid_t file() { return H5T_STD_I8LE; }
};
template <>
struct NumericType<int32_t> {
  static hid_t memory() { return H5T_NATIVE_INT32; }
  static hid_t file() { return H5T_STD_I32LE; }
};
template <>
struct NumericType<int64_t> {
  static hid_t memory() { return H5T_NATIVE_INT64; }
  static hid_t file() { return H5T_STD_I64LE; }
};
template <>
struct NumericType<uint64_t> {
  static hid_t memory() { return H5T_NATIVE_UINT64; }
  static hid_t file() { return H5T_STD_U64LE; }
};
template <>
struct NumericType<float> {
  static hid_t memory() { return H5T_NATIVE_FLOAT; }
  static hid_t file() { return H5T_IEEE_F32LE; }
};
template <>
struct NumericType<double> {
  static hid_t memory() { return H5T_NATIVE_DOUBLE; }
  static hid_t file() { return H5T_IEEE_F64LE; }
};

}  // namespace fracsweep
