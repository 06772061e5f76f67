#pragma once
// Private to the io layer: reads root attributes and whole datasets of an existing HDF5 file.
// A missing or malformed object throws InputError naming the file and the object.
#include <cstddef>
#include <string>
#include <vector>

#include "hdf5.hpp"

namespace fracsweep {

class Hdf5FileReader {
 public:
  // Opens `file_path` read-only; InputError when it is not a readable HDF5 file.
  explicit Hdf5FileReader(std::string file_path);

  const std::string& path() const { return file_path_; }

  bool has_attribute(const std::string& name) const;
  std::string text_attribute(const std::string& name) const;
  template <typename T>
  T numeric_attribute(const std::string& name) const;

  bool has_object(const std::string& path) const;
  // Every element of a numeric dataset, row-major; `extent` receives its shape.
  template <typename T>
  std::vector<T> numeric(const std::string& path, std::vector<hsize_t>* extent = nullptr) const;
  // Every element of a 1-D variable-length string dataset.
  std::vector<std::string> strings(const std::string& path) const;

 private:
  [[noreturn]] void fail(const std::string& object, const std::string& problem) const;
  hid_t check_id(hid_t id, const std::string& object) const {
    if (id < 0) fail(object, "cannot be read");
    return id;
  }
  void check_status(herr_t status, const std::string& object) const {
    if (status < 0) fail(object, "cannot be read");
  }
  AttributeHandle open_attribute(const std::string& name) const;
  DatasetHandle open_dataset(const std::string& path) const;
  std::vector<hsize_t> dataset_extent(const DatasetHandle& dataset, const std::string& path) const;
  DatatypeHandle variable_text_type() const;

  std::string file_path_;
  FileHandle file_;
};

template <typename T>
T Hdf5FileReader::numeric_attribute(const std::string& name) const {
  const AttributeHandle attribute = open_attribute(name);
  T value{};
  check_status(H5Aread(attribute.get(), NumericType<T>::memory(), &value), "attribute " + name);
  return value;
}

template <typename T>
std::vector<T> Hdf5FileReader::numeric(const std::string& path,
                                       std::vector<hsize_t>* extent) const {
  const DatasetHandle dataset = open_dataset(path);
  const std::vector<hsize_t> shape = dataset_extent(dataset, path);
  if (extent != nullptr) *extent = shape;
  size_t n = 1;
  for (const hsize_t length : shape) n *= static_cast<size_t>(length);
  std::vector<T> values(n);  // (product of shape)
  if (n > 0) {
    check_status(H5Dread(dataset.get(), NumericType<T>::memory(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         values.data()),
                 path);
  }
  return values;
}

}  // namespace fracsweep
