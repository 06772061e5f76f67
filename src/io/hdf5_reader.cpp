#include "hdf5_reader.hpp"

#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

Hdf5FileReader::Hdf5FileReader(std::string file_path) : file_path_(std::move(file_path)) {
  file_ = FileHandle(H5Fopen(file_path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (file_.get() < 0) {
    const std::string detail = innermost_hdf5_error();
    throw InputError(in_file(
        file_path_, "cannot open as an HDF5 file" + (detail.empty() ? "" : " (" + detail + ")")));
  }
}

bool Hdf5FileReader::has_attribute(const std::string& name) const {
  return H5Aexists(file_.get(), name.c_str()) > 0;
}

std::string Hdf5FileReader::text_attribute(const std::string& name) const {
  const AttributeHandle attribute = open_attribute(name);
  const DatatypeHandle stored(check_id(H5Aget_type(attribute.get()), "attribute " + name));
  if (H5Tget_class(stored.get()) != H5T_STRING) fail("attribute " + name, "expected a string");
  if (H5Tis_variable_str(stored.get()) > 0) {
    const DatatypeHandle memory = variable_text_type();
    char* value = nullptr;
    check_status(H5Aread(attribute.get(), memory.get(), &value), "attribute " + name);
    std::string text = value == nullptr ? "" : value;
    H5free_memory(value);
    return text;
  }
  std::string text(H5Tget_size(stored.get()), '\0');
  check_status(H5Aread(attribute.get(), stored.get(), text.data()), "attribute " + name);
  return text.substr(0, text.find('\0'));
}

bool Hdf5FileReader::has_object(const std::string& path) const {
  return H5Lexists(file_.get(), path.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> Hdf5FileReader::strings(const std::string& path) const {
  const DatasetHandle dataset = open_dataset(path);
  const std::vector<hsize_t> shape = dataset_extent(dataset, path);
  if (shape.size() != 1) fail(path, "expected a 1-D dataset");
  std::vector<char*> pointers(static_cast<size_t>(shape[0]), nullptr);  // (n) owned by HDF5
  std::vector<std::string> values;                                      // (n)
  if (pointers.empty()) return values;
  const DatatypeHandle memory = variable_text_type();
  check_status(H5Dread(dataset.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()),
               path);
  for (char* pointer : pointers) values.emplace_back(pointer == nullptr ? "" : pointer);
  const DataspaceHandle space(check_id(H5Dget_space(dataset.get()), path));
  H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
  return values;
}

void Hdf5FileReader::fail(const std::string& object, const std::string& problem) const {
  const std::string detail = innermost_hdf5_error();
  throw InputError(
      in_file(file_path_, object + ": " + problem + (detail.empty() ? "" : " (" + detail + ")")));
}

AttributeHandle Hdf5FileReader::open_attribute(const std::string& name) const {
  if (!has_attribute(name)) fail("root attribute " + name, "missing");
  return AttributeHandle(
      check_id(H5Aopen(file_.get(), name.c_str(), H5P_DEFAULT), "attribute " + name));
}

DatasetHandle Hdf5FileReader::open_dataset(const std::string& path) const {
  if (!has_object(path)) fail(path, "missing");
  return DatasetHandle(check_id(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), path));
}

std::vector<hsize_t> Hdf5FileReader::dataset_extent(const DatasetHandle& dataset,
                                                    const std::string& path) const {
  const DataspaceHandle space(check_id(H5Dget_space(dataset.get()), path));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(path, "cannot read its shape");
  std::vector<hsize_t> shape(static_cast<size_t>(rank));  // (rank)
  H5Sget_simple_extent_dims(space.get(), shape.data(), nullptr);
  return shape;
}

DatatypeHandle Hdf5FileReader::variable_text_type() const {
  DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), "string type"));
  check_status(H5Tset_size(text.get(), H5T_VARIABLE), "string type");
  check_status(H5Tset_cset(text.get(), H5T_CSET_UTF8), "string type");
  return text;
}

}  // namespace fracsweep
