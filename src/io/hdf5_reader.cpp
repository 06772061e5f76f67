#include "hdf5_reader.hpp"

#include <cstdint>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

// What a stored type is, in the words of the messages ("int64", "float32", "a string", ...).
std::string type_description(hid_t type) {
  const size_t bytes = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * bytes);
    case H5T_FLOAT:
      return "float" + std::to_string(8 * bytes);
    case H5T_STRING:
      return H5Tis_variable_str(type) > 0
                 ? "variable-length strings"
                 : "fixed-length strings of " + std::to_string(bytes) + " bytes";
    case H5T_COMPOUND:
      return "a compound type";
    case H5T_OPAQUE:
      return "an opaque type";
    case H5T_ARRAY:
      return "an array type";
    case H5T_ENUM:
      return "an enumeration";
    case H5T_VLEN:
      return "variable-length sequences";
    case H5T_REFERENCE:
      return "references";
    case H5T_BITFIELD:
      return "a bitfield";
    case H5T_TIME:
      return "a time type";
    default:
      return "an unknown type";
  }
}

// The deflate filter, the only compressing one libhdf5 ships, expands data at most 1032-fold.
constexpr uint64_t max_expansion = 1032;

}  // namespace

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
  const AttributeHandle attribute = open_scalar_attribute(name, H5T_STRING, "string");
  const DatatypeHandle stored(check_id(H5Aget_type(attribute.get()), "attribute " + name));
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
  return read_strings(path, 0, "");
}

std::vector<std::string> Hdf5FileReader::strings(const std::string& path, size_t length,
                                                 const std::string& length_of) const {
  return read_strings(path, length, length_of);
}

std::vector<std::string> Hdf5FileReader::read_strings(const std::string& path, size_t length,
                                                      const std::string& length_of) const {
  const DatasetHandle dataset = open_dataset(path);
  const std::vector<hsize_t> shape =
      checked_extent(dataset, path, H5T_STRING, "variable-length strings", 1, length, length_of);
  const DatatypeHandle stored(check_id(H5Dget_type(dataset.get()), path));
  if (H5Tis_variable_str(stored.get()) <= 0) {
    fail(path, "expected variable-length strings, found " + type_description(stored.get()));
  }
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

AttributeHandle Hdf5FileReader::open_scalar_attribute(const std::string& name, H5T_class_t expected,
                                                      const char* what) const {
  AttributeHandle attribute = open_attribute(name);
  const std::string object = "root attribute " + name;
  const DatatypeHandle stored(check_id(H5Aget_type(attribute.get()), object));
  if (H5Tget_class(stored.get()) != expected) {
    fail(object, std::string("expected one ") + what + ", found " + type_description(stored.get()));
  }
  const DataspaceHandle space(check_id(H5Aget_space(attribute.get()), object));
  if (H5Sget_simple_extent_type(space.get()) != H5S_SCALAR) {
    fail(object, std::string("expected one ") + what + " (a scalar attribute), found " +
                     std::to_string(H5Sget_simple_extent_npoints(space.get())) + " values");
  }
  return attribute;
}

DatasetHandle Hdf5FileReader::open_dataset(const std::string& path) const {
  if (!has_object(path)) fail(path, "missing");
  const hid_t object = H5Oopen(file_.get(), path.c_str(), H5P_DEFAULT);
  if (object < 0) fail(path, "cannot be opened (a dangling link?)");
  if (H5Iget_type(object) != H5I_DATASET) {
    H5Oclose(object);
    fail(path, "expected a dataset, found a group or a named type");
  }
  return DatasetHandle(object);
}

std::vector<hsize_t> Hdf5FileReader::checked_extent(const DatasetHandle& dataset,
                                                    const std::string& path, H5T_class_t expected,
                                                    const char* what, int rank, size_t length,
                                                    const std::string& length_of) const {
  const DatatypeHandle stored(check_id(H5Dget_type(dataset.get()), path));
  if (H5Tget_class(stored.get()) != expected) {
    fail(path, std::string("expected ") + what + ", found " + type_description(stored.get()));
  }
  const DataspaceHandle space(check_id(H5Dget_space(dataset.get()), path));
  if (H5Sget_simple_extent_type(space.get()) != H5S_SIMPLE) {
    fail(path, "expected a " +
                   (rank == any_rank ? std::string("simple") : std::to_string(rank) + "-D") +
                   " dataset, found a scalar or empty (null) dataspace");
  }
  const int stored_rank = H5Sget_simple_extent_ndims(space.get());
  if (stored_rank < 0) fail(path, "cannot read its shape");
  if (rank != any_rank && stored_rank != rank) {
    fail(path, "expected a " + std::to_string(rank) + "-D dataset, found " +
                   std::to_string(stored_rank) + "-D");
  }
  std::vector<hsize_t> shape(static_cast<size_t>(stored_rank));  // (rank)
  check_status(H5Sget_simple_extent_dims(space.get(), shape.data(), nullptr), path);
  if (!length_of.empty() && shape[0] != length) {
    fail(path, "has " + std::to_string(shape[0]) + " values; expected " + std::to_string(length) +
                   " like " + length_of);
  }
  // Every element a fracsweep writer declares is stored: compare with the bytes the file holds
  // for the dataset before allocating anything.
  const uint64_t element_bytes = H5Tget_size(stored.get());
  uint64_t declared_bytes = element_bytes;
  for (const hsize_t axis : shape) {
    if (__builtin_mul_overflow(declared_bytes, uint64_t{axis}, &declared_bytes)) {
      fail(path, "declares more elements than memory can address");
    }
  }
  const PropertyListHandle create(check_id(H5Dget_create_plist(dataset.get()), path));
  const bool filtered = H5Pget_nfilters(create.get()) > 0;
  const uint64_t stored_bytes = H5Dget_storage_size(dataset.get());
  const uint64_t limit =
      filtered
          ? (stored_bytes > UINT64_MAX / max_expansion ? UINT64_MAX : stored_bytes * max_expansion)
          : stored_bytes;
  if (declared_bytes > limit) {
    std::string declared;
    for (const hsize_t axis : shape)
      declared += (declared.empty() ? "" : " x ") + std::to_string(axis);
    fail(path, "declares " + declared + " elements (" + std::to_string(declared_bytes) +
                   " bytes) but the file stores " + std::to_string(stored_bytes) +
                   " bytes for it; expected every element written (a truncated file, or not "
                   "written by fracsweep)");
  }
  return shape;
}

DatatypeHandle Hdf5FileReader::variable_text_type() const {
  DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), "string type"));
  check_status(H5Tset_size(text.get(), H5T_VARIABLE), "string type");
  check_status(H5Tset_cset(text.get(), H5T_CSET_UTF8), "string type");
  return text;
}

}  // namespace fracsweep
