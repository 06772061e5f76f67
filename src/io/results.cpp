// The HDF5 results file (schema "fracsweep-results/1", documented in README.md).
//
// Layout decisions beyond the README:
// - Every group holding datasets is a self-contained netCDF-4 style group: each axis is a 1-D
//   dimension scale dataset named like its dimension, and every other dataset in the group is
//   attached to the scales of its axes, so `xarray.open_dataset(file, group=..., engine=
//   "h5netcdf")` opens /grid, /trials, /baseline, /tensors and /sites.
//   /grid holds four scales (model, strategy, fraction, seed); /baseline adds the scale
//   `greedy_position` for the second axis of greedy_ids.
// - /trials_table carries the attributes PyTables gives a Table (CLASS, VERSION, TITLE,
//   FIELD_<i>_NAME, NROWS) and is chunked with an unlimited extent like one, so
//   pandas.read_hdf opens it as a generic table.
// - Links and attributes keep creation order, so readers list columns in schema order.
#include "fracsweep/io/results.hpp"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

// ------------------------------------------------------------------ HDF5 handles and checks

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
// handler after); failures are reported by RunError carrying the innermost HDF5 message.
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    saved_ok_ = H5Eget_auto2(H5E_DEFAULT, &saved_handler_, &saved_data_) >= 0;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() {
    if (saved_ok_) H5Eset_auto2(H5E_DEFAULT, saved_handler_, saved_data_);
  }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  bool saved_ok_ = false;
  H5E_auto2_t saved_handler_ = nullptr;
  void* saved_data_ = nullptr;
};

// Description of the most specific error on HDF5's error stack (where it was detected).
std::string innermost_hdf5_error() {
  std::string description;
  const H5E_walk2_t keep_innermost = [](unsigned n, const H5E_error2_t* error,
                                        void* out) -> herr_t {
    if (n == 0 && error->desc != nullptr) *static_cast<std::string*>(out) = error->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &description);
  H5Eclear2(H5E_DEFAULT);
  return description;
}

hsize_t to_hsize(size_t n) {
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

// ------------------------------------------------------------------ columns

// One 1-D dataset of the schema, with its optional CF attributes.
using ColumnValues =
    std::variant<std::vector<int8_t>, std::vector<int32_t>, std::vector<int64_t>,
                 std::vector<float>, std::vector<double>, std::vector<std::string>>;

struct Column {
  std::string name;
  ColumnValues values;
  std::string long_name;             // omitted when empty
  std::string units;                 // omitted when empty
  std::vector<int32_t> flag_values;  // CF flags (status columns); omitted when empty
  std::string flag_meanings;
};

Column make_column(std::string name, ColumnValues values, std::string long_name,
                   std::string units = "") {
  Column made;
  made.name = std::move(name);
  made.values = std::move(values);
  made.long_name = std::move(long_name);
  made.units = std::move(units);
  return made;
}

// The trial status column: int32 codes with CF flag_values / flag_meanings.
Column status_column(std::vector<int32_t> status) {
  Column made = make_column("status", std::move(status), "trial status");
  made.flag_values = {status_ok, status_nonfinite};
  made.flag_meanings = trial_status_meanings;
  return made;
}

size_t column_length(const Column& column) {
  return std::visit([](const auto& values) { return values.size(); }, column.values);
}

// Bytes of one value in the compound table (strings: the longest, at least 1).
size_t table_field_size(const Column& column) {
  return std::visit(
      [](const auto& values) -> size_t {
        using Values = std::decay_t<decltype(values)>;
        if constexpr (std::is_same_v<Values, std::vector<std::string>>) {
          size_t longest = 1;
          for (const std::string& value : values) longest = std::max(longest, value.size());
          return longest;
        } else {
          return sizeof(typename Values::value_type);
        }
      },
      column.values);
}

// ------------------------------------------------------------------ the file writer

// An open group or dataset and its path in the file (for messages).
struct Group {
  GroupHandle handle;
  std::string path;
};
struct Dataset {
  DatasetHandle handle;
  std::string path;
};

// Creates one HDF5 file and writes objects into it. Every HDF5 call is checked; a failure
// throws RunError naming the file, the object and the call.
class ResultsFileWriter {
 public:
  explicit ResultsFileWriter(std::string file_path) : file_path_(std::move(file_path)) {
    PropertyListHandle create = property_list(H5P_FILE_CREATE, "/");
    track_creation_order(create, "/");
    check_status(H5Pset_attr_creation_order(create.get(), creation_order_flags), "/",
                 "H5Pset_attr_creation_order");
    PropertyListHandle access = property_list(H5P_FILE_ACCESS, "/");
    // Closing the file fails if an object is still open: a leak is an error, not a delay.
    check_status(H5Pset_fclose_degree(access.get(), H5F_CLOSE_SEMI), "/", "H5Pset_fclose_degree");
    file_ = FileHandle(
        check_id(H5Fcreate(file_path_.c_str(), H5F_ACC_TRUNC, create.get(), access.get()), "/",
                 "H5Fcreate"));
  }

  Group root() const {
    return {GroupHandle(check_id(H5Gopen2(file_.get(), "/", H5P_DEFAULT), "/", "H5Gopen2")), "/"};
  }

  Group create_group(const std::string& name) const {
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

  // A 1-D dataset holding `column`, with its attributes.
  Dataset write_column(const Group& group, const Column& column) const {
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

  // A 2-D int32 dataset: values (rows, cols) row-major.
  Dataset write_int32_matrix(const Group& group, const std::string& name,
                             const std::vector<int32_t>& values, size_t rows, size_t cols) const {
    check_invariant(values.size() == rows * cols,
                    group.path + "/" + name + ": matrix size does not match its shape");
    Dataset dataset =
        create_dataset(group, name, NumericType<int32_t>::file(), {to_hsize(rows), to_hsize(cols)});
    write_all(dataset, NumericType<int32_t>::memory(), values.data(), values.size());
    return dataset;
  }

  // Makes `scale` a dimension scale named like its dataset (netCDF: a coordinate variable).
  void make_dimension_scale(const Dataset& scale, const std::string& name) const {
    check_status(H5DSset_scale(scale.handle.get(), name.c_str()), scale.path, "H5DSset_scale");
  }

  void attach_dimension_scale(const Dataset& dataset, const Dataset& scale, unsigned axis) const {
    check_status(H5DSattach_scale(dataset.handle.get(), scale.handle.get(), axis), dataset.path,
                 "H5DSattach_scale(" + scale.path + ")");
  }

  // A compound dataset with one field per column, laid out and tagged like a PyTables Table
  // (strings as fixed-length null-padded bytes), so pandas.read_hdf reads it.
  void write_pytables_table(const std::string& name, const std::vector<Column>& columns) const {
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

  // Scalar variable-length UTF-8 string attribute.
  template <typename Object>
  void write_text_attribute(const Object& owner, const std::string& name,
                            const std::string& value) const {
    const std::string where = owner.path + " attribute " + name;
    const DatatypeHandle text = utf8_text_type(where);
    const DataspaceHandle scalar(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
    const AttributeHandle attribute(
        check_id(H5Acreate2(owner.handle.get(), name.c_str(), text.get(), scalar.get(), H5P_DEFAULT,
                            H5P_DEFAULT),
                 where, "H5Acreate2"));
    const char* pointer = value.c_str();
    check_status(H5Awrite(attribute.get(), text.get(), &pointer), where, "H5Awrite");
  }

  // Numeric attribute: a scalar, or a 1-D array when given a vector.
  template <typename Object, typename T>
  void write_numeric_attribute(const Object& owner, const std::string& name, const T& value) const {
    const std::string where = owner.path + " attribute " + name;
    DataspaceHandle space;
    const void* data = nullptr;
    hid_t memory_type = H5I_INVALID_HID;
    hid_t file_type = H5I_INVALID_HID;
    if constexpr (std::is_arithmetic_v<T>) {
      space = DataspaceHandle(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
      data = &value;
      memory_type = NumericType<T>::memory();
      file_type = NumericType<T>::file();
    } else {
      const hsize_t length = to_hsize(value.size());
      space = DataspaceHandle(
          check_id(H5Screate_simple(1, &length, nullptr), where, "H5Screate_simple"));
      data = value.data();
      memory_type = NumericType<typename T::value_type>::memory();
      file_type = NumericType<typename T::value_type>::file();
    }
    const AttributeHandle attribute(check_id(H5Acreate2(owner.handle.get(), name.c_str(), file_type,
                                                        space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                             where, "H5Acreate2"));
    check_status(H5Awrite(attribute.get(), memory_type, data), where, "H5Awrite");
  }

  // Closes the file, checking that everything was flushed and nothing was left open.
  void close() { check_status(file_.close(), "/", "H5Fclose"); }

 private:
  static constexpr unsigned creation_order_flags = H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED;

  [[noreturn]] void fail(const std::string& object, std::string_view call) const {
    const std::string detail = innermost_hdf5_error();
    throw RunError("results file " + file_path_ + ": " + object + ": " + std::string(call) +
                   " failed" + (detail.empty() ? "" : " (" + detail + ")"));
  }
  hid_t check_id(hid_t id, const std::string& object, std::string_view call) const {
    if (id < 0) fail(object, call);
    return id;
  }
  void check_status(herr_t status, const std::string& object, std::string_view call) const {
    if (status < 0) fail(object, call);
  }

  PropertyListHandle property_list(hid_t list_class, const std::string& object) const {
    return PropertyListHandle(check_id(H5Pcreate(list_class), object, "H5Pcreate"));
  }
  void track_creation_order(const PropertyListHandle& create, const std::string& object) const {
    check_status(H5Pset_link_creation_order(create.get(), creation_order_flags), object,
                 "H5Pset_link_creation_order");
  }
  PropertyListHandle dataset_create_list(const std::string& object) const {
    PropertyListHandle create = property_list(H5P_DATASET_CREATE, object);
    check_status(H5Pset_attr_creation_order(create.get(), creation_order_flags), object,
                 "H5Pset_attr_creation_order");
    return create;
  }

  DatatypeHandle utf8_text_type(const std::string& object) const {
    DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), object, "H5Tcopy"));
    check_status(H5Tset_size(text.get(), H5T_VARIABLE), object, "H5Tset_size");
    check_status(H5Tset_cset(text.get(), H5T_CSET_UTF8), object, "H5Tset_cset");
    return text;
  }

  // Fixed-length string type of `size` bytes (size >= 1).
  DatatypeHandle fixed_text_type(size_t size, H5T_str_t padding, H5T_cset_t charset,
                                 const std::string& object) const {
    DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), object, "H5Tcopy"));
    check_status(H5Tset_size(text.get(), size), object, "H5Tset_size");
    check_status(H5Tset_strpad(text.get(), padding), object, "H5Tset_strpad");
    check_status(H5Tset_cset(text.get(), charset), object, "H5Tset_cset");
    return text;
  }

  // Scalar fixed-length ASCII attribute, the way PyTables writes its own attributes.
  void write_ascii_attribute(const Dataset& owner, const std::string& name,
                             const std::string& value) const {
    const std::string where = owner.path + " attribute " + name;
    const DatatypeHandle text =
        fixed_text_type(std::max<size_t>(value.size(), 1), H5T_STR_NULLTERM, H5T_CSET_ASCII, where);
    const DataspaceHandle scalar(check_id(H5Screate(H5S_SCALAR), where, "H5Screate"));
    const AttributeHandle attribute(
        check_id(H5Acreate2(owner.handle.get(), name.c_str(), text.get(), scalar.get(), H5P_DEFAULT,
                            H5P_DEFAULT),
                 where, "H5Acreate2"));
    // H5Awrite reads the type's size in bytes: at least the one NUL of an empty value.
    const std::string padded = value.empty() ? std::string(1, '\0') : value;
    check_status(H5Awrite(attribute.get(), text.get(), padded.data()), where, "H5Awrite");
  }

  // Compound type of one table record: packed fields at `field_offsets`, native types for
  // memory, little-endian ones for the file.
  DatatypeHandle record_type(const std::vector<Column>& columns,
                             const std::vector<size_t>& field_offsets, size_t record_size,
                             const std::string& object, bool for_file) const {
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
              const hid_t type =
                  for_file ? NumericType<Value>::file() : NumericType<Value>::memory();
              check_status(H5Tinsert(record.get(), field.c_str(), field_offsets[c], type), object,
                           "H5Tinsert(" + field + ")");
            }
          },
          columns[c].values);
    }
    return record;
  }

  Dataset create_dataset(const Group& group, const std::string& name, hid_t file_type,
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

  // Writes the whole dataset from `data` (n_elements of `memory_type`); empty: nothing to do.
  void write_all(const Dataset& dataset, hid_t memory_type, const void* data,
                 size_t n_elements) const {
    if (n_elements == 0) return;
    check_status(H5Dwrite(dataset.handle.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                 dataset.path, "H5Dwrite");
  }

  std::string file_path_;
  FileHandle file_;
};

// Writes `scale` as the dimension scale of a group and `columns` as 1-D datasets over it.
void write_dimension(const ResultsFileWriter& writer, const Group& group, const Column& scale,
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

// ------------------------------------------------------------------ schema content

// 0, 1, ..., n-1
std::vector<int64_t> iota_int64(size_t n) {
  std::vector<int64_t> values(n);
  for (size_t i = 0; i < n; ++i) values[i] = static_cast<int64_t>(i);
  return values;
}

std::string join_distinct_sorted(std::vector<std::string> values, const std::string& separator) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  std::string joined;
  for (const std::string& value : values) {
    if (!joined.empty()) joined += separator;
    joined += value;
  }
  return joined;
}

std::vector<std::string> strategy_labels(const JobConfig& job) {
  std::vector<std::string> labels;  // (n_strategies)
  for (const StrategySpec& strategy : job.strategies) labels.push_back(strategy.canonical());
  return labels;
}

// Broken inputs are bugs in the caller: RunError before anything is created.
void check_content(const ResultsContent& content) {
  check_invariant(content.job != nullptr && content.grid != nullptr,
                  "results content needs its job and grid");
  const JobConfig& job = *content.job;
  check_invariant(content.models.size() == job.models.size(),
                  "results content has one model summary per job model");
  for (size_t m = 0; m < job.models.size(); ++m) {
    check_invariant(content.models[m].name == job.models[m].name,
                    "model summary " + std::to_string(m) + " is '" + content.models[m].name +
                        "', expected job model '" + job.models[m].name + "'");
  }
  check_invariant(job.strategy_texts.size() == job.strategies.size(),
                  "job has one strategy text per strategy");
  const auto in_axis = [](int32_t index, size_t axis_size) {
    return index >= 0 && static_cast<size_t>(index) < axis_size;
  };
  const int64_t n_trials = content.grid->size();
  int64_t previous = -1;
  for (const TrialRow& row : content.rows) {
    check_invariant(row.trial > previous && row.trial < n_trials,
                    "result rows must have ascending trial ids below " + std::to_string(n_trials) +
                        "; found " + std::to_string(row.trial));
    check_invariant(in_axis(row.model_idx, job.models.size()) &&
                        in_axis(row.strategy_idx, job.strategies.size()) &&
                        in_axis(row.amount_idx, job.amounts.size()) &&
                        in_axis(row.seed_idx, job.seeds.size()),
                    "trial " + std::to_string(row.trial) + " has an axis index outside the grid");
    previous = row.trial;
  }
  previous = -1;
  for (const TrialSites& recorded : content.sites) {
    check_invariant(recorded.trial > previous && recorded.trial < n_trials,
                    "recorded sites must have ascending trial ids below " +
                        std::to_string(n_trials) + "; found " + std::to_string(recorded.trial));
    previous = recorded.trial;
  }
}

void write_root_attributes(const ResultsFileWriter& writer, const ResultsContent& content) {
  const JobConfig& job = *content.job;
  const Provenance& provenance = content.provenance;
  const Group root = writer.root();
  writer.write_text_attribute(root, "schema_version", results_schema_version);
  writer.write_text_attribute(root, "software_version", provenance.software_version);
  writer.write_text_attribute(root, "git_commit", provenance.git_commit);
  writer.write_text_attribute(root, "job_name", job.name);
  writer.write_text_attribute(root, "job_path", job.path);
  writer.write_text_attribute(root, "job_text", job.text);
  writer.write_text_attribute(root, "job_sha256", provenance.job_sha256);
  writer.write_numeric_attribute(root, "job_seed", job.seed);
  writer.write_text_attribute(root, "command_line", provenance.command_line);
  writer.write_text_attribute(root, "schedule", provenance.schedule);
  writer.write_numeric_attribute(root, "mpi_size", static_cast<int32_t>(provenance.mpi_size));
  writer.write_text_attribute(root, "hostnames", join_distinct_sorted(provenance.hostnames, ","));
  writer.write_text_attribute(root, "blis_version", provenance.blis_version);
  writer.write_text_attribute(root, "blis_kernels", provenance.blis_kernels);
  writer.write_text_attribute(root, "blis_kernels_selected_by",
                              provenance.blis_kernels_selected_by);
  writer.write_numeric_attribute(root, "blis_threads",
                                 static_cast<int32_t>(provenance.blis_threads));
  writer.write_text_attribute(root, "started_utc", provenance.started_utc);
  writer.write_text_attribute(root, "finished_utc", provenance.finished_utc);
  writer.write_numeric_attribute(root, "n_trials", content.grid->size());
  writer.write_numeric_attribute(root, "n_trials_done", static_cast<int64_t>(content.rows.size()));
  writer.write_numeric_attribute(root, "shard_index", provenance.shard_index);
  writer.write_numeric_attribute(root, "shard_count", provenance.shard_count);
  writer.write_numeric_attribute(root, "resume_count", provenance.resume_count);
  std::string sessions;
  for (const std::string& session : provenance.sessions) sessions += session + "\n";
  writer.write_text_attribute(root, "sessions", sessions);
}

// /grid: the four axes, each its own dimension scale.
void write_grid(const ResultsFileWriter& writer, const ResultsContent& content) {
  const JobConfig& job = *content.job;
  const Group group = writer.create_group("grid");

  std::vector<std::string> model_names, model_paths, model_formats;  // (n_models)
  std::vector<int64_t> model_parameters;                             // (n_models)
  for (size_t m = 0; m < job.models.size(); ++m) {
    model_names.push_back(job.models[m].name);
    model_paths.push_back(content.models[m].path);
    model_formats.push_back(content.models[m].format);
    model_parameters.push_back(content.models[m].n_parameters);
  }
  write_dimension(writer, group, make_column("model", model_names, "model label"),
                  {make_column("model_path", model_paths, "model file"),
                   make_column("model_format", model_formats, "model file format"),
                   make_column("model_n_parameters", model_parameters, "parameters in the model")});

  std::vector<std::string> names, scopes;  // (n_strategies)
  std::vector<int8_t> deterministic;       // (n_strategies)
  for (const StrategySpec& strategy : job.strategies) {
    names.push_back(strategy.name());
    scopes.push_back(strategy.scope.canonical());
    deterministic.push_back(strategy.deterministic() ? 1 : 0);
  }
  write_dimension(
      writer, group,
      make_column("strategy", strategy_labels(job),
                  "strategy canonical label (keys its value stream)"),
      {make_column("strategy_name", names, "strategy kind"),
       make_column("strategy_scope", scopes, "tensors the strategy may touch"),
       make_column("strategy_spec", job.strategy_texts, "strategy as written in the job file"),
       make_column("strategy_deterministic", deterministic,
                   "1: one trial per fraction whatever the seed axis")});

  std::vector<double> fractions;    // (n_amounts) NaN for count entries
  std::vector<int64_t> counts;      // (n_amounts) -1 for fraction entries
  std::vector<std::string> labels;  // (n_amounts)
  for (const Amount& amount : job.amounts) {
    fractions.push_back(amount.is_count ? not_a_number : amount.fraction);
    counts.push_back(amount.is_count ? amount.count : -1);
    labels.push_back(amount.label());
  }
  write_dimension(writer, group,
                  make_column("fraction", fractions,
                              "fraction of in-scope parameters (NaN for count entries)", "1"),
                  {make_column("count", counts, "sites perturbed (-1 for fraction entries)"),
                   make_column("amount_label", labels, "amount as labelled")});

  write_dimension(writer, group, make_column("seed", job.seeds, "trial seed"), {});
}

// The per-trial columns shared by /trials and /trials_table, in schema order.
// The stored number formats a trial perturbs: those of the model's in-scope tensors, e.g.
// "bf16" or "f32+bf16" (same text as Perturber::scope_stored_types).
std::string stored_types_in_scope(const ModelSummary& model, const Scope& scope) {
  bool present[3] = {false, false, false};  // by StoredType
  for (const TensorInfo& tensor : model.tensors) {
    if (scope.contains(tensor.name)) present[static_cast<int>(tensor.stored)] = true;
  }
  std::string text;
  for (StoredType type : {StoredType::f32, StoredType::f16, StoredType::bf16}) {
    if (present[static_cast<int>(type)]) text += (text.empty() ? "" : "+") + std::string(stored_type_name(type));
  }
  return text;
}

std::vector<Column> trial_columns(const ResultsContent& content) {
  const JobConfig& job = *content.job;
  const std::vector<std::string> strategies = strategy_labels(job);
  // (n_models, n_strategies) stored formats each pair perturbs.
  std::vector<std::vector<std::string>> stored_types(content.models.size());
  for (size_t m = 0; m < content.models.size(); ++m) {
    for (const StrategySpec& strategy : job.strategies) {
      stored_types[m].push_back(stored_types_in_scope(content.models[m], strategy.scope));
    }
  }
  const size_t n_rows = content.rows.size();
  // One buffer per column, each (n_rows).
  std::vector<int64_t> trial(n_rows), seed(n_rows), k(n_rows), n_scope(n_rows), positions(n_rows),
      nonfinite_positions(n_rows), greedy_match(n_rows), greedy_length(n_rows);
  std::vector<int32_t> model_idx(n_rows), strategy_idx(n_rows), fraction_idx(n_rows),
      seed_idx(n_rows), rank(n_rows), status(n_rows);
  std::vector<std::string> model(n_rows), strategy(n_rows), stored_dtype(n_rows);
  std::vector<double> fraction(n_rows), mean_nll(n_rows), perplexity(n_rows),
      mean_nll_finite(n_rows), accuracy(n_rows), sdc_rate(n_rows), top1_agreement(n_rows), mean_kl(n_rows),
      max_kl(n_rows), mean_kl_finite(n_rows), wall_s(n_rows);
  for (size_t i = 0; i < n_rows; ++i) {
    const TrialRow& row = content.rows[i];
    const TrialMetrics& metrics = row.metrics;
    trial[i] = row.trial;
    model_idx[i] = row.model_idx;
    strategy_idx[i] = row.strategy_idx;
    fraction_idx[i] = row.amount_idx;
    seed_idx[i] = row.seed_idx;
    model[i] = job.models[static_cast<size_t>(row.model_idx)].name;
    strategy[i] = strategies[static_cast<size_t>(row.strategy_idx)];
    stored_dtype[i] = stored_types[static_cast<size_t>(row.model_idx)][static_cast<size_t>(row.strategy_idx)];
    fraction[i] = row.fraction;
    seed[i] = row.seed;
    k[i] = row.k;
    n_scope[i] = row.n_scope;
    positions[i] = metrics.positions;
    nonfinite_positions[i] = metrics.nonfinite_positions;
    mean_nll[i] = metrics.mean_nll;
    perplexity[i] = metrics.perplexity;
    mean_nll_finite[i] = metrics.mean_nll_finite;
    accuracy[i] = metrics.accuracy;
    sdc_rate[i] = metrics.sdc_rate;
    top1_agreement[i] = metrics.top1_agreement;
    mean_kl[i] = metrics.mean_kl;
    max_kl[i] = metrics.max_kl;
    mean_kl_finite[i] = metrics.mean_kl_finite;
    greedy_match[i] = metrics.greedy_match;
    greedy_length[i] = metrics.greedy_length;
    wall_s[i] = row.wall_s;
    rank[i] = row.rank;
    status[i] = row.status;
  }
  return {
      make_column("trial", std::move(trial), "trial id"),
      make_column("model_idx", std::move(model_idx), "index into /grid/model"),
      make_column("strategy_idx", std::move(strategy_idx), "index into /grid/strategy"),
      make_column("fraction_idx", std::move(fraction_idx), "index into /grid/fraction"),
      make_column("seed_idx", std::move(seed_idx), "index into /grid/seed"),
      make_column("model", std::move(model), "model label"),
      make_column("strategy", std::move(strategy), "strategy label"),
      make_column("stored_dtype", std::move(stored_dtype),
                  "stored number formats of the in-scope tensors (f32, f16, bf16, joined by +)"),
      make_column("fraction", std::move(fraction),
                  "fraction of in-scope parameters (k / n_scope for count entries)", "1"),
      make_column("seed", std::move(seed), "trial seed"),
      make_column("k", std::move(k), "parameters perturbed"),
      make_column("n_scope", std::move(n_scope), "in-scope parameters"),
      make_column("positions", std::move(positions), "predicted positions evaluated"),
      make_column("nonfinite_positions", std::move(nonfinite_positions),
                  "positions whose logits contain NaN or Inf"),
      make_column("mean_nll", std::move(mean_nll), "mean negative log-likelihood of the next token",
                  "nats"),
      make_column("perplexity", std::move(perplexity), "exp(mean_nll)", "1"),
      make_column("mean_nll_finite", std::move(mean_nll_finite),
                  "mean negative log-likelihood over finite positions", "nats"),
      make_column("accuracy", std::move(accuracy),
                  "fraction of positions whose argmax is the next token", "1"),
      make_column("sdc_rate", std::move(sdc_rate),
                  "fraction of positions right before the perturbation and wrong after", "1"),
      make_column("top1_agreement", std::move(top1_agreement),
                  "fraction of positions whose argmax equals the unperturbed argmax", "1"),
      make_column("mean_kl", std::move(mean_kl), "mean KL(unperturbed || perturbed) over positions",
                  "nats"),
      make_column("max_kl", std::move(max_kl), "max KL(unperturbed || perturbed) over positions",
                  "nats"),
      make_column("mean_kl_finite", std::move(mean_kl_finite),
                  "mean KL(unperturbed || perturbed) over finite positions", "nats"),
      make_column("greedy_match", std::move(greedy_match),
                  "leading greedy tokens equal to the unperturbed continuation"),
      make_column("greedy_length", std::move(greedy_length),
                  "length of the unperturbed greedy continuation"),
      make_column("wall_s", std::move(wall_s), "wall time of perturb, forward, metrics and restore",
                  "s"),
      make_column("rank", std::move(rank), "MPI rank that ran the trial"),
      status_column(std::move(status)),
  };
}

// /trials: one dataset per column over the dimension scale `trial` (the first column).
void write_trials(const ResultsFileWriter& writer, const std::vector<Column>& columns) {
  const Group group = writer.create_group("trials");
  write_dimension(writer, group, columns.front(),
                  std::vector<Column>(columns.begin() + 1, columns.end()));
}

// /baseline: the unperturbed model per model over `model_index`; greedy_ids (M, G) padded
// with -1 over (model_index, greedy_position).
void write_baseline(const ResultsFileWriter& writer, const ResultsContent& content) {
  const size_t n_models = content.models.size();
  std::vector<int32_t> model_index(n_models);                                        // (n_models)
  std::vector<std::string> model(n_models), greedy_text(n_models);                   // (n_models)
  std::vector<double> mean_nll(n_models), perplexity(n_models), accuracy(n_models);  // (n_models)
  std::vector<int64_t> positions(n_models), nonfinite_positions(n_models),
      greedy_length(n_models);  // (n_models)
  size_t longest_greedy = 0;
  for (size_t m = 0; m < n_models; ++m) {
    const ModelSummary& summary = content.models[m];
    const TrialMetrics& metrics = summary.baseline.metrics;
    model_index[m] = static_cast<int32_t>(m);
    model[m] = content.job->models[m].name;
    mean_nll[m] = metrics.mean_nll;
    perplexity[m] = metrics.perplexity;
    accuracy[m] = metrics.accuracy;
    positions[m] = metrics.positions;
    nonfinite_positions[m] = metrics.nonfinite_positions;
    greedy_length[m] = static_cast<int64_t>(summary.baseline.greedy_ids.size());
    greedy_text[m] = summary.greedy_text;
    longest_greedy = std::max(longest_greedy, summary.baseline.greedy_ids.size());
  }
  std::vector<int32_t> greedy_ids(n_models * longest_greedy, -1);  // (n_models, longest_greedy)
  for (size_t m = 0; m < n_models; ++m) {
    const std::vector<int32_t>& ids = content.models[m].baseline.greedy_ids;
    std::copy(ids.begin(), ids.end(),
              greedy_ids.begin() + static_cast<ptrdiff_t>(m * longest_greedy));
  }

  const Group group = writer.create_group("baseline");
  const Column model_scale =
      make_column("model_index", std::move(model_index), "index into /grid/model");
  const Dataset model_scale_dataset = writer.write_column(group, model_scale);
  writer.make_dimension_scale(model_scale_dataset, model_scale.name);
  const std::vector<Column> columns = {
      make_column("model", std::move(model), "model label"),
      make_column("mean_nll", std::move(mean_nll), "mean negative log-likelihood of the next token",
                  "nats"),
      make_column("perplexity", std::move(perplexity), "exp(mean_nll)", "1"),
      make_column("accuracy", std::move(accuracy),
                  "fraction of positions whose argmax is the next token", "1"),
      make_column("positions", std::move(positions), "predicted positions evaluated"),
      make_column("nonfinite_positions", std::move(nonfinite_positions),
                  "positions whose logits contain NaN or Inf"),
      make_column("greedy_length", std::move(greedy_length), "length of the greedy continuation"),
      make_column("greedy_text", std::move(greedy_text), "decoded greedy continuation"),
  };
  for (const Column& column : columns) {
    const Dataset dataset = writer.write_column(group, column);
    writer.attach_dimension_scale(dataset, model_scale_dataset, 0);
  }

  const Column position_scale = make_column("greedy_position", iota_int64(longest_greedy),
                                            "position in the greedy continuation");
  const Dataset position_scale_dataset = writer.write_column(group, position_scale);
  writer.make_dimension_scale(position_scale_dataset, position_scale.name);
  const Dataset ids =
      writer.write_int32_matrix(group, "greedy_ids", greedy_ids, n_models, longest_greedy);
  writer.write_text_attribute(ids, "long_name", "greedy continuation token ids (-1: padding)");
  writer.attach_dimension_scale(ids, model_scale_dataset, 0);
  writer.attach_dimension_scale(ids, position_scale_dataset, 1);
}

// /tensors: every named tensor of every model, over `tensor`.
void write_tensors(const ResultsFileWriter& writer, const ResultsContent& content) {
  std::vector<int32_t> model_idx;          // (n_tensors)
  std::vector<std::string> names, shapes, dtypes;  // (n_tensors)
  std::vector<int64_t> offsets, counts;            // (n_tensors)
  for (size_t m = 0; m < content.models.size(); ++m) {
    for (const TensorInfo& tensor : content.models[m].tensors) {
      model_idx.push_back(static_cast<int32_t>(m));
      names.push_back(tensor.name);
      dtypes.push_back(stored_type_name(tensor.stored));
      offsets.push_back(tensor.offset);
      counts.push_back(tensor.count);
      shapes.push_back(shape_text(tensor.shape));
    }
  }
  // Built before the columns below move their buffers away.
  const Column tensor_scale = make_column("tensor", iota_int64(names.size()), "tensor index");
  const Group group = writer.create_group("tensors");
  write_dimension(writer, group, tensor_scale,
                  {make_column("model_idx", std::move(model_idx), "index into /grid/model"),
                   make_column("name", std::move(names), "tensor name"),
                   make_column("offset", std::move(offsets),
                               "first element in the model's flat parameter order"),
                   make_column("count", std::move(counts), "elements"),
                   make_column("shape", std::move(shapes), "row-major shape"),
                   make_column("dtype", std::move(dtypes),
                               "stored number format: f32, f16 or bf16")});
}

// The tensor of `tensors` (sorted by offset) holding flat parameter `offset`.
const TensorInfo& tensor_holding(const std::vector<TensorInfo>& tensors, int64_t offset,
                                 const std::string& model_name) {
  const auto after = std::upper_bound(
      tensors.begin(), tensors.end(), offset,
      [](int64_t value, const TensorInfo& tensor) { return value < tensor.offset; });
  check_invariant(
      after != tensors.begin() && offset < std::prev(after)->offset + std::prev(after)->count,
      "recorded site offset " + std::to_string(offset) + " is in no tensor of model " + model_name);
  return *std::prev(after);
}

// /sites: every recorded site over `site`, with the tensor it falls in.
void write_sites(const ResultsFileWriter& writer, const ResultsContent& content) {
  std::vector<int64_t> trial, site_rank, offset, index_in_tensor;  // (n_sites)
  std::vector<std::string> tensor;                                 // (n_sites)
  std::vector<float> old_value, new_value;                         // (n_sites)
  for (const TrialSites& recorded : content.sites) {
    const auto model_idx = static_cast<size_t>(content.grid->trial(recorded.trial).model_idx);
    const ModelSummary& model = content.models.at(model_idx);
    for (size_t rank = 0; rank < recorded.sites.size(); ++rank) {
      const SiteRecord& site = recorded.sites[rank];
      const TensorInfo& holder = tensor_holding(model.tensors, site.offset, model.name);
      trial.push_back(recorded.trial);
      site_rank.push_back(static_cast<int64_t>(rank));
      offset.push_back(site.offset);
      tensor.push_back(holder.name);
      index_in_tensor.push_back(site.offset - holder.offset);
      old_value.push_back(site.old_value);
      new_value.push_back(site.new_value);
    }
  }
  // Built before the columns below move their buffers away.
  const Column site_scale = make_column("site", iota_int64(trial.size()), "site index");
  const Group group = writer.create_group("sites");
  write_dimension(
      writer, group, site_scale,
      {make_column("trial", std::move(trial), "trial id"),
       make_column("site_rank", std::move(site_rank), "position in the trial's site order"),
       make_column("offset", std::move(offset), "index into the model's flat parameters"),
       make_column("tensor", std::move(tensor), "tensor holding the site"),
       make_column("index_in_tensor", std::move(index_in_tensor),
                   "flat row-major index within the tensor"),
       make_column("old_value", std::move(old_value), "value before"),
       make_column("new_value", std::move(new_value), "value written")});
}

// Removes a file this process created when destroyed, unless it was renamed into place.
class CreatedFile {
 public:
  explicit CreatedFile(std::string path) : path_(std::move(path)) {}
  CreatedFile(const CreatedFile&) = delete;
  CreatedFile& operator=(const CreatedFile&) = delete;
  ~CreatedFile() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  void rename_to(const std::string& destination) {
    std::error_code error;
    std::filesystem::rename(path_, destination, error);
    if (error) {
      throw RunError("results file " + destination + ": cannot rename " + path_ +
                     " into place: " + error.message());
    }
    path_.clear();
  }

 private:
  std::string path_;
};


// ------------------------------------------------------------------ reading a file back

// Reads datasets and root attributes of an existing results file. A missing or malformed
// object throws InputError naming the file and the object.
class ResultsFileReader {
 public:
  explicit ResultsFileReader(std::string file_path) : file_path_(std::move(file_path)) {
    file_ = FileHandle(H5Fopen(file_path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (file_.get() < 0) {
      const std::string detail = innermost_hdf5_error();
      throw InputError(in_file(file_path_, "cannot open as an HDF5 file" +
                                               (detail.empty() ? "" : " (" + detail + ")")));
    }
  }

  bool has_attribute(const std::string& name) const {
    return H5Aexists(file_.get(), name.c_str()) > 0;
  }

  std::string text_attribute(const std::string& name) const {
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

  template <typename T>
  T numeric_attribute(const std::string& name) const {
    const AttributeHandle attribute = open_attribute(name);
    T value{};
    check_status(H5Aread(attribute.get(), NumericType<T>::memory(), &value), "attribute " + name);
    return value;
  }

  bool has_object(const std::string& path) const {
    return H5Lexists(file_.get(), path.c_str(), H5P_DEFAULT) > 0;
  }

  // Every element of a numeric dataset, row-major; `extent` receives its shape.
  template <typename T>
  std::vector<T> numeric(const std::string& path, std::vector<hsize_t>* extent = nullptr) const {
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

  // Every element of a 1-D variable-length string dataset.
  std::vector<std::string> strings(const std::string& path) const {
    const DatasetHandle dataset = open_dataset(path);
    const std::vector<hsize_t> shape = dataset_extent(dataset, path);
    if (shape.size() != 1) fail(path, "expected a 1-D dataset");
    std::vector<char*> pointers(static_cast<size_t>(shape[0]), nullptr);  // (n) owned by HDF5
    std::vector<std::string> values;                                     // (n)
    if (pointers.empty()) return values;
    const DatatypeHandle memory = variable_text_type();
    check_status(H5Dread(dataset.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         pointers.data()),
                 path);
    for (char* pointer : pointers) values.emplace_back(pointer == nullptr ? "" : pointer);
    const DataspaceHandle space(check_id(H5Dget_space(dataset.get()), path));
    H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
    return values;
  }

 private:
  [[noreturn]] void fail(const std::string& object, const std::string& problem) const {
    const std::string detail = innermost_hdf5_error();
    throw InputError(in_file(file_path_, object + ": " + problem +
                                             (detail.empty() ? "" : " (" + detail + ")")));
  }
  hid_t check_id(hid_t id, const std::string& object) const {
    if (id < 0) fail(object, "cannot be read");
    return id;
  }
  void check_status(herr_t status, const std::string& object) const {
    if (status < 0) fail(object, "cannot be read");
  }
  AttributeHandle open_attribute(const std::string& name) const {
    if (!has_attribute(name)) fail("root attribute " + name, "missing");
    return AttributeHandle(check_id(H5Aopen(file_.get(), name.c_str(), H5P_DEFAULT),
                                    "attribute " + name));
  }
  DatasetHandle open_dataset(const std::string& path) const {
    if (!has_object(path)) fail(path, "missing");
    return DatasetHandle(check_id(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), path));
  }
  std::vector<hsize_t> dataset_extent(const DatasetHandle& dataset, const std::string& path) const {
    const DataspaceHandle space(check_id(H5Dget_space(dataset.get()), path));
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) fail(path, "cannot read its shape");
    std::vector<hsize_t> shape(static_cast<size_t>(rank));  // (rank)
    H5Sget_simple_extent_dims(space.get(), shape.data(), nullptr);
    return shape;
  }
  DatatypeHandle variable_text_type() const {
    DatatypeHandle text(check_id(H5Tcopy(H5T_C_S1), "string type"));
    check_status(H5Tset_size(text.get(), H5T_VARIABLE), "string type");
    check_status(H5Tset_cset(text.get(), H5T_CSET_UTF8), "string type");
    return text;
  }

  std::string file_path_;
  FileHandle file_;
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// "64x512" -> {64, 512}; "" -> {}.
std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  for (const std::string& part : split(text, 'x')) shape.push_back(std::stoll(part));
  return shape;
}

void read_provenance(const ResultsFileReader& file, StoredResults& stored) {
  Provenance& p = stored.provenance;
  p.software_version = file.text_attribute("software_version");
  p.git_commit = file.text_attribute("git_commit");
  p.command_line = file.text_attribute("command_line");
  p.job_sha256 = file.text_attribute("job_sha256");
  p.schedule = file.text_attribute("schedule");
  p.mpi_size = file.numeric_attribute<int32_t>("mpi_size");
  p.hostnames = split(file.text_attribute("hostnames"), ',');
  p.blis_version = file.text_attribute("blis_version");
  p.blis_kernels = file.text_attribute("blis_kernels");
  p.blis_kernels_selected_by = file.text_attribute("blis_kernels_selected_by");
  p.blis_threads = file.numeric_attribute<int32_t>("blis_threads");
  p.started_utc = file.text_attribute("started_utc");
  p.finished_utc = file.text_attribute("finished_utc");
  if (file.has_attribute("shard_index")) {  // files from before sharding: one whole run
    p.shard_index = file.numeric_attribute<int64_t>("shard_index");
    p.shard_count = file.numeric_attribute<int64_t>("shard_count");
    p.resume_count = file.numeric_attribute<int32_t>("resume_count");
    p.sessions = split(file.text_attribute("sessions"), '\n');
  }
  stored.job_name = file.text_attribute("job_name");
  stored.job_path = file.text_attribute("job_path");
  stored.job_text = file.text_attribute("job_text");
  stored.n_trials = file.numeric_attribute<int64_t>("n_trials");
}

void read_models(const ResultsFileReader& file, StoredResults& stored) {
  const std::vector<std::string> names = file.strings("/grid/model");
  const std::vector<std::string> paths = file.strings("/grid/model_path");
  const std::vector<std::string> formats = file.strings("/grid/model_format");
  const std::vector<int64_t> n_parameters = file.numeric<int64_t>("/grid/model_n_parameters");
  const std::vector<double> mean_nll = file.numeric<double>("/baseline/mean_nll");
  const std::vector<double> perplexity = file.numeric<double>("/baseline/perplexity");
  const std::vector<double> accuracy = file.numeric<double>("/baseline/accuracy");
  const std::vector<int64_t> positions = file.numeric<int64_t>("/baseline/positions");
  const std::vector<int64_t> nonfinite = file.numeric<int64_t>("/baseline/nonfinite_positions");
  const std::vector<int64_t> greedy_length = file.numeric<int64_t>("/baseline/greedy_length");
  const std::vector<std::string> greedy_text = file.strings("/baseline/greedy_text");
  std::vector<hsize_t> greedy_extent;  // (n_models, longest greedy continuation)
  const std::vector<int32_t> greedy_ids = file.numeric<int32_t>("/baseline/greedy_ids", &greedy_extent);
  const size_t n_models = names.size();
  const bool consistent =
      paths.size() == n_models && formats.size() == n_models && n_parameters.size() == n_models &&
      mean_nll.size() == n_models && greedy_text.size() == n_models &&
      greedy_length.size() == n_models && greedy_extent.size() == 2 && greedy_extent[0] == n_models;
  check_input(consistent, in_file(stored.source_path, "/grid and /baseline disagree on the models"));
  const auto longest = static_cast<size_t>(greedy_extent[1]);
  stored.models.resize(n_models);
  for (size_t m = 0; m < n_models; ++m) {
    ModelSummary& model = stored.models[m];
    model.name = names[m];
    model.path = paths[m];
    model.format = formats[m];
    model.n_parameters = n_parameters[m];
    model.baseline.metrics.mean_nll = mean_nll[m];
    model.baseline.metrics.perplexity = perplexity[m];
    model.baseline.metrics.accuracy = accuracy[m];
    model.baseline.metrics.positions = positions[m];
    model.baseline.metrics.nonfinite_positions = nonfinite[m];
    const auto first = greedy_ids.begin() + static_cast<ptrdiff_t>(m * longest);
    model.baseline.greedy_ids.assign(first, first + greedy_length[m]);
    model.greedy_text = greedy_text[m];
  }
  const std::vector<int32_t> tensor_model = file.numeric<int32_t>("/tensors/model_idx");
  const std::vector<std::string> tensor_names = file.strings("/tensors/name");
  const std::vector<int64_t> offsets = file.numeric<int64_t>("/tensors/offset");
  const std::vector<int64_t> counts = file.numeric<int64_t>("/tensors/count");
  const std::vector<std::string> shapes = file.strings("/tensors/shape");
  const std::vector<std::string> dtypes = file.strings("/tensors/dtype");
  for (size_t t = 0; t < tensor_names.size(); ++t) {
    check_input(tensor_model[t] >= 0 && static_cast<size_t>(tensor_model[t]) < n_models,
                in_file(stored.source_path, "/tensors/model_idx outside /grid/model"));
    TensorInfo tensor;
    tensor.name = tensor_names[t];
    tensor.shape = parse_shape(shapes[t]);
    tensor.offset = offsets[t];
    tensor.count = counts[t];
    const StoredType types[] = {StoredType::f32, StoredType::f16, StoredType::bf16};
    const auto type = std::find_if(std::begin(types), std::end(types),
                                   [&](StoredType candidate) { return dtypes[t] == stored_type_name(candidate); });
    check_input(type != std::end(types), in_file(stored.source_path, "/tensors/dtype '" + dtypes[t] +
                                                                         "' is not f32, f16 or bf16"));
    tensor.stored = *type;
    stored.models[static_cast<size_t>(tensor_model[t])].tensors.push_back(std::move(tensor));
  }
}

void read_rows(const ResultsFileReader& file, StoredResults& stored) {
  const auto i64 = [&](const char* name) { return file.numeric<int64_t>(std::string("/trials/") + name); };
  const auto i32 = [&](const char* name) { return file.numeric<int32_t>(std::string("/trials/") + name); };
  const auto f64 = [&](const char* name) { return file.numeric<double>(std::string("/trials/") + name); };
  const std::vector<int64_t> trial = i64("trial"), seed = i64("seed"), k = i64("k"),
                             n_scope = i64("n_scope"), positions = i64("positions"),
                             nonfinite = i64("nonfinite_positions"),
                             greedy_match = i64("greedy_match"), greedy_length = i64("greedy_length");
  const std::vector<int32_t> model_idx = i32("model_idx"), strategy_idx = i32("strategy_idx"),
                             fraction_idx = i32("fraction_idx"), seed_idx = i32("seed_idx"),
                             rank = i32("rank"), status = i32("status");
  const std::vector<double> fraction = f64("fraction"), mean_nll = f64("mean_nll"),
                            perplexity = f64("perplexity"), mean_nll_finite = f64("mean_nll_finite"),
                            accuracy = f64("accuracy"), sdc_rate = f64("sdc_rate"),
                            top1 = f64("top1_agreement"), mean_kl = f64("mean_kl"),
                            max_kl = f64("max_kl"), mean_kl_finite = f64("mean_kl_finite"),
                            wall_s = f64("wall_s");
  const size_t n = trial.size();
  for (const size_t length : {seed.size(), k.size(), status.size(), wall_s.size(), max_kl.size()}) {
    check_input(length == n, in_file(stored.source_path, "/trials columns differ in length"));
  }
  stored.rows.resize(n);
  for (size_t i = 0; i < n; ++i) {
    TrialRow& row = stored.rows[i];
    row.trial = trial[i];
    row.model_idx = model_idx[i];
    row.strategy_idx = strategy_idx[i];
    row.amount_idx = fraction_idx[i];
    row.seed_idx = seed_idx[i];
    row.fraction = fraction[i];
    row.seed = seed[i];
    row.k = k[i];
    row.n_scope = n_scope[i];
    TrialMetrics& metrics = row.metrics;
    metrics.positions = positions[i];
    metrics.nonfinite_positions = nonfinite[i];
    metrics.mean_nll = mean_nll[i];
    metrics.perplexity = perplexity[i];
    metrics.mean_nll_finite = mean_nll_finite[i];
    metrics.accuracy = accuracy[i];
    metrics.sdc_rate = sdc_rate[i];
    metrics.top1_agreement = top1[i];
    metrics.mean_kl = mean_kl[i];
    metrics.max_kl = max_kl[i];
    metrics.mean_kl_finite = mean_kl_finite[i];
    metrics.greedy_match = greedy_match[i];
    metrics.greedy_length = greedy_length[i];
    row.wall_s = wall_s[i];
    row.rank = rank[i];
    row.status = status[i];
  }
  if (!file.has_object("/sites")) return;
  const std::vector<int64_t> site_trial = file.numeric<int64_t>("/sites/trial");
  const std::vector<int64_t> site_offset = file.numeric<int64_t>("/sites/offset");
  const std::vector<float> old_value = file.numeric<float>("/sites/old_value");
  const std::vector<float> new_value = file.numeric<float>("/sites/new_value");
  for (size_t s = 0; s < site_trial.size(); ++s) {
    if (stored.sites.empty() || stored.sites.back().trial != site_trial[s]) {
      stored.sites.push_back({site_trial[s], {}});
    }
    stored.sites.back().sites.push_back({site_offset[s], old_value[s], new_value[s]});
  }
}

}  // namespace

void check_output_path(const std::string& path, bool force) {
  namespace fs = std::filesystem;
  check_input(!path.empty(), "results file: the output path is empty");
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  check_input(!fs::is_directory(status),
              in_file(path, "is a directory; expected the path of a results file"));
  check_input(!fs::exists(status) || force,
              in_file(path, "already exists; use --force to overwrite it"));
  const fs::path target(path);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  check_input(fs::is_directory(directory, error),
              in_file(path, "directory " + directory.string() + " does not exist"));
  check_input(::access(directory.c_str(), W_OK | X_OK) == 0,
              in_file(path, "directory " + directory.string() + " is not writable"));
}

void write_results(const std::string& path, const ResultsContent& content, bool force) {
  check_output_path(path, force);
  check_content(content);
  const std::string temporary_path = path + ".tmp-" + std::to_string(::getpid());
  const QuietHdf5Errors quiet;
  ResultsFileWriter writer(temporary_path);
  // From here on a failure removes the temporary file.
  CreatedFile temporary(temporary_path);
  write_root_attributes(writer, content);
  write_grid(writer, content);
  const std::vector<Column> columns = trial_columns(content);
  write_trials(writer, columns);
  writer.write_pytables_table("trials_table", columns);
  write_baseline(writer, content);
  write_tensors(writer, content);
  if (!content.sites.empty()) write_sites(writer, content);
  writer.close();
  temporary.rename_to(path);
}

StoredResults read_results(const std::string& path) {
  const QuietHdf5Errors quiet;
  const ResultsFileReader file(path);
  check_input(file.has_attribute("schema_version") &&
                  file.text_attribute("schema_version") == results_schema_version,
              in_file(path, std::string("not a fracsweep results file (schema_version is not ") +
                                results_schema_version + ")"));
  StoredResults stored;
  stored.source_path = path;
  read_provenance(file, stored);
  read_models(file, stored);
  read_rows(file, stored);
  return stored;
}

}  // namespace fracsweep
