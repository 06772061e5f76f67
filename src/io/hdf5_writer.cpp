#include "hdf5_writer.hpp"

#include <hdf5_hl.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <variant>

#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {
constexpr unsigned creation_order_flags = H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED;
}  // namespace

Hdf5FileWriter::Hdf5FileWriter(std::string file_path) : file_path_(std::move(file_path)) {
  PropertyListHandle create = property_list(H5P_FILE_CREATE, "/");
  track_creation_order(create, "/");
  check_status(H5Pset_attr_creation_order(create.get(), creation_order_flags), "/",
               "H5Pset_attr_creation_order");
  PropertyListHandle access = property_list(H5P_FILE_ACCESS, "/");
  // Closing the file fails if an object is still open: a leak is an error, not a delay.
  check_status(H5Pset_fclose_degree(access.get(), H5F_CLOSE_SEMI), "/", "H5Pset_fclose_degree");
  file_ = FileHandle(check_id(
      H5Fcreate(file_path_.c_str(), H5F_ACC_TRUNC, create.get(), access.get()), "/", "H5Fcreate"));
}

Group Hdf5FileWriter::root() const {
  return {GroupHandle(check_id(H5Gopen2(file_.get(), "/", H5P_DEFAULT), "/", "H5Gopen2")), "/"};
}

Group Hdf5FileWriter::create_group(const std::string& name) const {
  const std::string path = "/" + name;
  PropertyListHandle create = property_list(H5P_GROUP_CREATE, path);
  track_creation_order(create, path);
  check_status(H5Pset_attr_creation_order(create.get(), creation_order_flags), path,
               "H5Pset_attr_creation_order");
  return {GroupHandle(check_id(
              H5Gcreate2(file_.get(), path.c_str(), H5P_DEFAULT, create.get(), H5P_DEFAULT), path,
              "H5Gcreate2")),
          path};
}

Dataset Hdf5FileWriter::write_column(const Group& group, const Column& column) const {
  const std::string path = group.path + "/" + column.name;
  const hsize_t length = to_hsize(column_length(column));
  Dataset dataset = std::visit(
      [&](const auto& values) {
        using Values = std::decay_t<decltype(values)>;
        if constexpr (std::is_same_v<Values, std::vector<std::string>>) {
          const DatatypeHandle text = utf8_text_type(path);
          Dataset created = create_dataset(group, column.name, text.get(), {length});
          std::vector<const char*> pointers;  // (length) views of `values`
          pointers.reserve(values.size());
          for (const std::string& value : values) pointers.push_back(value.c_str());
          write_all(created, text.get(), pointers.data(), pointers.size());
          return created;
        } else {
          using Value = typename Values::value_type;
          Dataset created =
              create_dataset(group, column.name, NumericType<Value>::file(), {length});
          write_all(created, NumericType<Value>::memory(), values.data(), values.size());
          return created;
        }
      },
      column.values);
  if (!column.long_name.empty()) write_text_attribute(dataset, "long_name", column.long_name);
  if (!column.units.empty()) write_text_attribute(dataset, "units", column.units);
  if (!column.flag_values.empty()) {
    write_numeric_attribute(dataset, "flag_values", column.flag_values);
    write_text_attribute(dataset, "flag_meanings", column.flag_meanings);
  }
  return dataset;
}

Dataset Hdf5FileWriter::write_int32_matrix(const Group& group, const std::string& name,
                                           const std::vector<int32_t>& values, size_t rows,
                                           size_t cols) const {
  check_invariant(values.size() == rows * cols,
                  group.path + "/" + name + ": matrix size does not match its shape");
  Dataset dataset =
      create_dataset(group, name, NumericType<int32_t>::file(), {to_hsize(rows), to_hsize(cols)});
  write_all(dataset, NumericType<int32_t>::memory(), values.data(), values.size());
  return dataset;
}

void Hdf5FileWriter::make_dimension_scale(const Dataset& scale, const std::string& name) const {
  check_status(H5DSset_scale(scale.handle.get(), name.c_str()), scale.path, "H5DSset_scale");
}

void Hdf5FileWriter::attach_dimension_scale(const Dataset& dataset, const Dataset& scale,
                                            unsigned axis) const {
  check_status(H5DSattach_scale(dataset.handle.get(), scale.handle.get(), axis), dataset.path,
               "H5DSattach_scale(" + scale.path + ")");
}

void Hdf5FileWriter::write_pytables_table(const std::string& name,
                                          const std::vector<Column>& columns) const {
  const std::string path = "/" + name;
  const size_t n_rows = columns.empty() ? 0 : column_length(columns.front());
  std::vector<size_t> field_offsets;  // (n_columns) byte offset of each field in a record
  size_t record_size = 0;
  for (const Column& column : columns) {
    check_invariant(column_length(column) == n_rows,
                    path + ": column " + column.name + " has a different length");
    field_offsets.push_back(record_size);
    record_size += table_field_size(column);
  }
  check_invariant(record_size > 0, path + ": a table needs at least one column");

  std::vector<unsigned char> records(n_rows * record_size);  // (n_rows, record_size) packed
  for (size_t c = 0; c < columns.size(); ++c) {
    const size_t field_size = table_field_size(columns[c]);
    std::visit(
        [&](const auto& values) {
          for (size_t row = 0; row < n_rows; ++row) {
            unsigned char* field = records.data() + row * record_size + field_offsets[c];
            if constexpr (std::is_same_v<std::decay_t<decltype(values)>,
                                         std::vector<std::string>>) {
              std::memcpy(field, values[row].data(), values[row].size());  // rest stays 0
            } else {
              std::memcpy(field, &values[row], field_size);
            }
          }
        },
        columns[c].values);
  }

  const DatatypeHandle memory_type = record_type(columns, field_offsets, record_size, path,
                                                 /*for_file=*/false);
  const DatatypeHandle file_type = record_type(columns, field_offsets, record_size, path,
                                               /*for_file=*/true);
  const hsize_t extent = to_hsize(n_rows);
  const hsize_t unlimited = H5S_UNLIMITED;
  const DataspaceHandle space(
      check_id(H5Screate_simple(1, &extent, &unlimited), path, "H5Screate_simple"));
  PropertyListHandle create = dataset_create_list(path);
  const size_t chunk_target_bytes = 64 * 1024;
  const hsize_t chunk_rows = to_hsize(
      std::clamp<size_t>(chunk_target_bytes / record_size, 1, std::max<size_t>(n_rows, 1)));
  check_status(H5Pset_chunk(create.get(), 1, &chunk_rows), path, "H5Pset_chunk");
  const Dataset table{
      DatasetHandle(check_id(H5Dcreate2(file_.get(), path.c_str(), file_type.get(), space.get(),
                                        H5P_DEFAULT, create.get(), H5P_DEFAULT),
                             path, "H5Dcreate2")),
      path};
  write_all(table, memory_type.get(), records.data(), n_rows);

  write_ascii_attribute(table, "CLASS", "TABLE");
  write_ascii_attribute(table, "VERSION", "2.7");
  write_ascii_attribute(table, "TITLE", "");
  for (size_t c = 0; c < columns.size(); ++c) {
    write_ascii_attribute(table, "FIELD_" + std::to_string(c) + "_NAME", columns[c].name);
  }
  write_numeric_attribute(table, "NROWS", static_cast<int64_t>(n_rows));
}

void Hdf5FileWriter::write_text_attribute(hid_t owner, const std::string& where,
                                          const std::string& name, const std::string& value) const {
  const DatatypeHandle text = utf8_text_type(where);
  const DataspaceHandle scalar(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
  const char* pointer = value.c_str();
  write_attribute(owner, where, name, text.get(), text.get(), scalar, &pointer);
}

void Hdf5FileWriter::write_text_array_attribute(hid_t owner, const std::string& where,
                                                const std::string& name,
                                                const std::vector<std::string>& values) const {
  const DatatypeHandle text = utf8_text_type(where);
  const hsize_t length = to_hsize(values.size());
  const DataspaceHandle space(
      check_id(H5Screate_simple(1, &length, nullptr), where, "H5Screate_simple"));
  std::vector<const char*> pointers;  // (n_values) views of `values`
  pointers.reserve(values.size());
  for (const std::string& value : values) pointers.push_back(value.c_str());
  write_attribute(owner, where, name, text.get(), text.get(), space, pointers.data());
}

void Hdf5FileWriter::write_attribute(hid_t owner, const std::string& where, const std::string& name,
                                     hid_t file_type, hid_t memory_type,
                                     const DataspaceHandle& space, const void* data) const {
  const AttributeHandle attribute(
      check_id(H5Acreate2(owner, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
               where, "H5Acreate2"));
  check_status(H5Awrite(attribute.get(), memory_type, data), where, "H5Awrite");
}

void Hdf5FileWriter::close() {
  check_status(file_.close(), "/", "H5Fclose");
}

void Hdf5FileWriter::fail(const std::string& object, std::string_view call) const {
  const std::string detail = innermost_hdf5_error();
  throw RunError("results file " + file_path_ + ": " + object + ": " + std::string(call) +
                 " failed" + (detail.empty() ? "" : " (" + detail + ")"));
}

PropertyListHandle Hdf5FileWriter::property_list(hid_t list_class,
                                                 const std::string& object) const {
  return PropertyListHandle(check_id(H5Pcreate(list_class), object, "H5Pcreate"));
}

void Hdf5FileWriter::track_creation_order(const PropertyListHandle& create,
                                          const std::string& object) const {
  check_status(H5Pset_link_creation_order(create.get(), creation_order_flags), object,
               "H5Pset_link_creation_order");
}

PropertyListHandle Hdf5FileWriter::dataset_create_list(const std::string& object) const {
  PropertyListHandle create = property_list(H5P_DATASET_CREATE, object);
  check_status(H5Pset_attr_creation_order(create.get(), creation_order_flags), object,
               "H5Pset_attr_creation_order");
  return create;
}

DatatypeHandle Hdf5FileWriter::utf8_text_type(const std::string& object) const {
  DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), object, "H5Tcopy"));
  check_status(H5Tset_size(text.get(), H5T_VARIABLE), object, "H5Tset_size");
  check_status(H5Tset_cset(text.get(), H5T_CSET_UTF8), object, "H5Tset_cset");
  return text;
}

DatatypeHandle Hdf5FileWriter::fixed_text_type(size_t size, H5T_str_t padding, H5T_cset_t charset,
                                               const std::string& object) const {
  DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), object, "H5Tcopy"));
  check_status(H5Tset_size(text.get(), size), object, "H5Tset_size");
  check_status(H5Tset_strpad(text.get(), padding), object, "H5Tset_strpad");
  check_status(H5Tset_cset(text.get(), charset), object, "H5Tset_cset");
  return text;
}

void Hdf5FileWriter::write_ascii_attribute(const Dataset& owner, const std::string& name,
                                           const std::string& value) const {
  const std::string where = owner.path + " attribute " + name;
  const DatatypeHandle text =
      fixed_text_type(std::max<size_t>(value.size(), 1), H5T_STR_NULLTERM, H5T_CSET_ASCII, where);
  const DataspaceHandle scalar(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
  // H5Awrite reads the type's size in bytes: at least the one NUL of an empty value.
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attribute(owner.handle.get(), where, name, text.get(), text.get(), scalar, padded.data());
}

DatatypeHandle Hdf5FileWriter::record_type(const std::vector<Column>& columns,
                                           const std::vector<size_t>& field_offsets,
                                           size_t record_size, const std::string& object,
                                           bool for_file) const {
  DatatypeHandle record(check_id(H5Tcreate(H5T_COMPOUND, record_size), object, "H5Tcreate"));
  for (size_t c = 0; c < columns.size(); ++c) {
    const std::string& field = columns[c].name;
    std::visit(
        [&](const auto& values) {
          using Values = std::decay_t<decltype(values)>;
          if constexpr (std::is_same_v<Values, std::vector<std::string>>) {
            const DatatypeHandle text = fixed_text_type(table_field_size(columns[c]),
                                                        H5T_STR_NULLPAD, H5T_CSET_UTF8, object);
            check_status(H5Tinsert(record.get(), field.c_str(), field_offsets[c], text.get()),
                         object, "H5Tinsert(" + field + ")");
          } else {
            using Value = typename Values::value_type;
            const hid_t type = for_file ? NumericType<Value>::file() : NumericType<Value>::memory();
            check_status(H5Tinsert(record.get(), field.c_str(), field_offsets[c], type), object,
                         "H5Tinsert(" + field + ")");
          }
        },
        columns[c].values);
  }
  return record;
}

Dataset Hdf5FileWriter::create_dataset(const Group& group, const std::string& name, hid_t file_type,
                                       const std::vector<hsize_t>& extent) const {
  const std::string path = group.path + "/" + name;
  const DataspaceHandle space(
      check_id(H5Screate_simple(static_cast<int>(extent.size()), extent.data(), nullptr), path,
               "H5Screate_simple"));
  const PropertyListHandle create = dataset_create_list(path);
  return {DatasetHandle(check_id(H5Dcreate2(group.handle.get(), name.c_str(), file_type,
                                            space.get(), H5P_DEFAULT, create.get(), H5P_DEFAULT),
                                 path, "H5Dcreate2")),
          path};
}

void Hdf5FileWriter::write_all(const Dataset& dataset, hid_t memory_type, const void* data,
                               size_t n_elements) const {
  if (n_elements == 0) return;
  check_status(H5Dwrite(dataset.handle.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
               dataset.path, "H5Dwrite");
}

// Writes `scale` as the dimension scale of a group and `columns` as 1-D datasets over it.
void write_dimension(const Hdf5FileWriter& writer, const Group& group, const Column& scale,
                     const std::vector<Column>& columns) {
  const Dataset scale_dataset = writer.write_column(group, scale);
  writer.make_dimension_scale(scale_dataset, scale.name);
  for (const Column& column : columns) {
    check_invariant(
        column_length(column) == column_length(scale),
        group.path + "/" + column.name + ": length differs from its dimension " + scale.name);
    const Dataset dataset = writer.write_column(group, column);
    writer.attach_dimension_scale(dataset, scale_dataset, 0);
  }
}

}  // namespace fracsweep
