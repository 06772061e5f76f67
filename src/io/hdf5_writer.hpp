#pragma once
// Private to the io layer: creates one HDF5 file and writes groups, 1-D columns, matrices,
// dimension scales, attributes and a PyTables-style table into it. Every HDF5 call is checked;
// a failure throws RunError naming the file, the object and the call.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "columns.hpp"
#include "hdf5.hpp"

namespace fracsweep {

// An open group or dataset and its path in the file (for messages).
struct Group {
  GroupHandle handle;
  std::string path;
};
struct Dataset {
  DatasetHandle handle;
  std::string path;
};

class Hdf5FileWriter {
 public:
  // Creates (truncates) `file_path`; links and attributes keep creation order.
  explicit Hdf5FileWriter(std::string file_path);

  Group root() const;
  Group create_group(const std::string& name) const;

  // A 1-D dataset holding `column`, with its attributes.
  Dataset write_column(const Group& group, const Column& column) const;
  // A 2-D int32 dataset: values (rows, cols) row-major.
  Dataset write_int32_matrix(const Group& group, const std::string& name,
                             const std::vector<int32_t>& values, size_t rows, size_t cols) const;

  // Makes `scale` a dimension scale named like its dataset (netCDF: a coordinate variable).
  void make_dimension_scale(const Dataset& scale, const std::string& name) const;
  void attach_dimension_scale(const Dataset& dataset, const Dataset& scale, unsigned axis) const;

  // A compound dataset with one field per column, laid out and tagged like a PyTables Table
  // (strings as fixed-length null-padded bytes), so pandas.read_hdf reads it.
  void write_pytables_table(const std::string& name, const std::vector<Column>& columns) const;

  // Scalar variable-length UTF-8 string attribute of a Group or Dataset.
  template <typename Object>
  void write_text_attribute(const Object& owner, const std::string& name,
                            const std::string& value) const {
    write_text_attribute(owner.handle.get(), owner.path + " attribute " + name, name, value);
  }
  // 1-D variable-length UTF-8 string array attribute of a Group or Dataset.
  template <typename Object>
  void write_text_array_attribute(const Object& owner, const std::string& name,
                                  const std::vector<std::string>& values) const;

  // Numeric attribute: a scalar, or a 1-D array when given a vector.
  template <typename Object, typename T>
  void write_numeric_attribute(const Object& owner, const std::string& name, const T& value) const;

  // Closes the file, checking that everything was flushed and nothing was left open.
  void close();

 private:
  [[noreturn]] void fail(const std::string& object, std::string_view call) const;
  hid_t check_id(hid_t id, const std::string& object, std::string_view call) const {
    if (id < 0) fail(object, call);
    return id;
  }
  void check_status(herr_t status, const std::string& object, std::string_view call) const {
    if (status < 0) fail(object, call);
  }

  PropertyListHandle property_list(hid_t list_class, const std::string& object) const;
  void track_creation_order(const PropertyListHandle& create, const std::string& object) const;
  PropertyListHandle dataset_create_list(const std::string& object) const;
  DatatypeHandle utf8_text_type(const std::string& object) const;
  // Fixed-length string type of `size` bytes (size >= 1).
  DatatypeHandle fixed_text_type(size_t size, H5T_str_t padding, H5T_cset_t charset,
                                 const std::string& object) const;
  void write_text_attribute(hid_t owner, const std::string& where, const std::string& name,
                            const std::string& value) const;
  void write_text_array_attribute(hid_t owner, const std::string& where, const std::string& name,
                                  const std::vector<std::string>& values) const;
  // Creates attribute `name` of `owner` over `space` and writes `data` to it.
  void write_attribute(hid_t owner, const std::string& where, const std::string& name,
                       hid_t file_type, hid_t memory_type, const DataspaceHandle& space,
                       const void* data) const;
  // Scalar fixed-length ASCII attribute, the way PyTables writes its own attributes.
  void write_ascii_attribute(const Dataset& owner, const std::string& name,
                             const std::string& value) const;
  // Compound type of one table record: packed fields at `field_offsets`, native types for
  // memory, little-endian ones for the file.
  DatatypeHandle record_type(const std::vector<Column>& columns,
                             const std::vector<size_t>& field_offsets, size_t record_size,
                             const std::string& object, bool for_file) const;
  Dataset create_dataset(const Group& group, const std::string& name, hid_t file_type,
                         const std::vector<hsize_t>& extent) const;
  // Writes the whole dataset from `data` (n_elements of `memory_type`); empty: nothing to do.
  void write_all(const Dataset& dataset, hid_t memory_type, const void* data,
                 size_t n_elements) const;

  std::string file_path_;
  FileHandle file_;
};

template <typename Object>
void Hdf5FileWriter::write_text_array_attribute(const Object& owner, const std::string& name,
                                                const std::vector<std::string>& values) const {
  write_text_array_attribute(owner.handle.get(), owner.path + " attribute " + name, name, values);
}

template <typename Object, typename T>
void Hdf5FileWriter::write_numeric_attribute(const Object& owner, const std::string& name,
                                             const T& value) const {
  const std::string where = owner.path + " attribute " + name;
  if constexpr (std::is_arithmetic_v<T>) {
    const DataspaceHandle scalar(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
    write_attribute(owner.handle.get(), where, name, NumericType<T>::file(),
                    NumericType<T>::memory(), scalar, &value);
  } else {
    using Value = typename T::value_type;
    const hsize_t length = to_hsize(value.size());
    const DataspaceHandle space(
        check_id(H5Screate_simple(1, &length, nullptr), where, "H5Screate_simple"));
    write_attribute(owner.handle.get(), where, name, NumericType<Value>::file(),
                    NumericType<Value>::memory(), space, value.data());
  }
}

// Writes `scale` as the dimension scale of a group and `columns` as 1-D datasets over it.
void write_dimension(const Hdf5FileWriter& writer, const Group& group, const Column& scale,
                     const std::vector<Column>& columns);

}  // namespace fracsweep
