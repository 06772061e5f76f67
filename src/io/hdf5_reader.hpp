#pragma once
// Private to the io layer: reads root attributes and whole datasets of an existing HDF5 file.
// A missing or malformed object throws InputError naming the file, the object and what was
// expected. Nothing is allocated for a dataset before its shape and type are checked and the
// file is seen to hold its elements: a small file declaring a huge extent (a chunked dataset
// with no chunk written costs nothing on disk) is refused, not read.
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "hdf5.hpp"

namespace fracsweep {

// The word messages use for T ("int32", "float64", ...).
template <typename T>
constexpr const char* number_word() {
  if constexpr (std::is_floating_point_v<T>) return sizeof(T) == 4 ? "float32" : "float64";
  if constexpr (std::is_unsigned_v<T>) return sizeof(T) == 8 ? "uint64" : "unsigned integer";
  if constexpr (sizeof(T) == 1) return "int8";
  if constexpr (sizeof(T) == 4) return "int32";
  return "int64";
}

class Hdf5FileReader {
 public:
  // Opens `file_path` read-only; InputError when it is not a readable HDF5 file.
  explicit Hdf5FileReader(std::string file_path);

  const std::string& path() const { return file_path_; }

  bool has_attribute(const std::string& name) const;
  // A scalar string root attribute (fixed or variable length).
  std::string text_attribute(const std::string& name) const;
  // A scalar root attribute of T's kind (integer or floating point).
  template <typename T>
  T numeric_attribute(const std::string& name) const;

  bool has_object(const std::string& path) const;
  // Every element of a numeric dataset of T's kind, row-major; `extent` receives its shape.
  template <typename T>
  std::vector<T> numeric(const std::string& path, std::vector<hsize_t>* extent = nullptr) const;
  // A 1-D numeric dataset of T's kind; with `length_of`, it must hold exactly `length` values
  // like the dataset `length_of` names (checked before anything is read).
  template <typename T>
  std::vector<T> column(const std::string& path) const;
  template <typename T>
  std::vector<T> column(const std::string& path, size_t length, const std::string& length_of) const;
  // Every element of a 1-D variable-length string dataset; the same length rule as column.
  std::vector<std::string> strings(const std::string& path) const;
  std::vector<std::string> strings(const std::string& path, size_t length,
                                   const std::string& length_of) const;

  [[noreturn]] void fail(const std::string& object, const std::string& problem) const;

 private:
  static constexpr int any_rank = -1;
  hid_t check_id(hid_t id, const std::string& object) const {
    if (id < 0) fail(object, "cannot be read");
    return id;
  }
  void check_status(herr_t status, const std::string& object) const {
    if (status < 0) fail(object, "cannot be read");
  }
  AttributeHandle open_attribute(const std::string& name) const;
  // The one element of a scalar root attribute of class `expected` (`what` for the message).
  AttributeHandle open_scalar_attribute(const std::string& name, H5T_class_t expected,
                                        const char* what) const;
  DatasetHandle open_dataset(const std::string& path) const;
  // Checks the dataset's type class, its rank (unless any_rank) and, when `length_of` is not
  // empty, its length; then that the file stores its elements. Returns its shape.
  std::vector<hsize_t> checked_extent(const DatasetHandle& dataset, const std::string& path,
                                      H5T_class_t expected, const char* what, int rank,
                                      size_t length, const std::string& length_of) const;
  template <typename T>
  std::vector<T> read_numeric(const std::string& path, int rank, size_t length,
                              const std::string& length_of, std::vector<hsize_t>* extent) const;
  std::vector<std::string> read_strings(const std::string& path, size_t length,
                                        const std::string& length_of) const;
  DatatypeHandle variable_text_type() const;

  std::string file_path_;
  FileHandle file_;
};

template <typename T>
T Hdf5FileReader::numeric_attribute(const std::string& name) const {
  const AttributeHandle attribute = open_scalar_attribute(
      name, std::is_integral_v<T> ? H5T_INTEGER : H5T_FLOAT, number_word<T>());
  T value{};
  check_status(H5Aread(attribute.get(), NumericType<T>::memory(), &value), "attribute " + name);
  return value;
}

template <typename T>
std::vector<T> Hdf5FileReader::read_numeric(const std::string& path, int rank, size_t length,
                                            const std::string& length_of,
                                            std::vector<hsize_t>* extent) const {
  const DatasetHandle dataset = open_dataset(path);
  const std::vector<hsize_t> shape =
      checked_extent(dataset, path, std::is_integral_v<T> ? H5T_INTEGER : H5T_FLOAT,
                     number_word<T>(), rank, length, length_of);
  if (extent != nullptr) *extent = shape;
  size_t n = 1;
  for (const hsize_t axis : shape) n *= static_cast<size_t>(axis);  // checked: no overflow
  std::vector<T> values(n);                                         // (product of shape)
  if (n > 0) {
    check_status(H5Dread(dataset.get(), NumericType<T>::memory(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         values.data()),
                 path);
  }
  return values;
}

template <typename T>
std::vector<T> Hdf5FileReader::numeric(const std::string& path,
                                       std::vector<hsize_t>* extent) const {
  return read_numeric<T>(path, any_rank, 0, "", extent);
}

template <typename T>
std::vector<T> Hdf5FileReader::column(const std::string& path) const {
  return read_numeric<T>(path, 1, 0, "", nullptr);
}

template <typename T>
std::vector<T> Hdf5FileReader::column(const std::string& path, size_t length,
                                      const std::string& length_of) const {
  return read_numeric<T>(path, 1, length, length_of, nullptr);
}

}  // namespace fracsweep
