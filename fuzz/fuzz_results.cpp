// Results files read back by `fracsweep merge` (src/io/results_reader.cpp, hdf5_reader.cpp).
// Raw bytes would mostly fuzz libhdf5's own parser (a Debian library, not ours); what we own is
// the reader's validation of a well-formed HDF5 file with hostile contents. So the input is a
// program of edits applied with the HDF5 API to a structurally valid results file that our own
// writer produced (write_results on a small hand-built sweep with sites, bfa paths, probe and
// reference columns): delete or replace datasets, groups and root attributes (wrong types,
// ranks, lengths, huge declared extents on chunked datasets that cost nothing on disk, null
// dataspaces), overwrite single values (negative indices, NaN, extremes, bad strings), soft
// links, extra objects. Then read_results runs on the edited file: it must return or throw
// InputError, without crash, UB, leak or out-of-memory.
//
// Input: up to 64 edits, each the bytes [object, dataset, attribute, operation, arguments...]:
// the first three pick (modulo the count) one of the template's groups and datasets, one of
// its datasets, one of its root attributes (in HDF5 name order); the operation (modulo 12) is
// run_edit's switch; reads past the end give zeros. Set FRACSWEEP_FUZZ_RESULTS_TEMPLATE=PATH to
// get the template file (to write a regression program by object name), and
// FRACSWEEP_FUZZ_VERBOSE=1 to see each input's InputError.
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/results.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fracsweep;

// ------------------------------------------------------------------ the template file

StrategySpec strategy_of(StrategyKind kind) {
  StrategySpec strategy;
  strategy.kind = kind;
  return strategy;
}

TrialRow row_of(const JobConfig& job, const Grid& grid, int64_t trial) {
  const TrialSpec& spec = grid.trial(trial);
  TrialRow row;
  row.trial = trial;
  row.model_idx = spec.model_idx;
  row.strategy_idx = spec.strategy_idx;
  row.amount_idx = spec.amount_idx;
  row.seed_idx = spec.seed_idx;
  row.seed = job.seeds[static_cast<size_t>(spec.seed_idx)];
  row.n_scope = 100;
  row.k = 3;
  row.fraction = 0.03;
  row.metrics.positions = 40;
  row.metrics.mean_nll = 2.5 + static_cast<double>(trial);
  row.metrics.perplexity = std::exp(row.metrics.mean_nll);
  row.metrics.probe_rate[0] = 0.5;
  row.metrics.probe_logprob[1] = -1.25;
  row.metrics.top1_agreement_ref = 0.75;
  return row;
}

// A results file as `fracsweep run` writes it: 2 models (one with a reference), 2 strategies,
// 2 amounts, 2 seeds; 5 of 12 trials done, recorded sites, a bfa path, two probe kinds.
std::string make_template() {
  JobConfig job;
  job.name = "fuzz";
  job.path = "/jobs/fuzz.ini";
  job.text = "name = fuzz\n";
  job.models = {{"a", "/models/a.bin", "/models/tok.bin"}, {"b", "/models/b.bin", ""}};
  job.models[1].reference = "a";
  job.amounts = {Amount{.fraction = 0.01}, Amount{.is_count = true, .count = 3}};
  job.strategies = {strategy_of(StrategyKind::zero), strategy_of(StrategyKind::bfa)};
  job.strategy_texts = {"zero", "bfa"};
  job.seeds = {1, 2};
  const Grid grid = job_grid(job);
  ResultsContent content;
  content.job = &job;
  content.grid = &grid;
  for (size_t m = 0; m < job.models.size(); ++m) {
    ModelSummary model;
    model.name = job.models[m].name;
    model.path = job.models[m].path;
    model.format = "llama2c-v0";
    model.n_parameters = 48;
    model.tensors = {{"tok_embeddings", {8, 4}, 0, 32},
                     {"norm", {16}, 32, 16, m == 0 ? StoredType::bf16 : StoredType::f32}};
    model.baseline.metrics.positions = 40;
    model.baseline.metrics.mean_nll = 2.25;
    model.baseline.greedy_ids = m == 0 ? std::vector<int32_t>{5, 9, 2} : std::vector<int32_t>{7};
    model.greedy_text = m == 0 ? "Once upon" : "\u00e9";
    content.models.push_back(model);
  }
  for (const int64_t trial : {0, 3, 6, 9, 11}) content.rows.push_back(row_of(job, grid, trial));
  content.sites = {{0, {{40, 0.5f, -0.5f}, {3, 1.25f, 2.0f}}}, {9, {{47, 1.0f, 0.0f}}}};
  const PathStep flip{.offset = 33, .bit = 30, .old_value = 1.0f, .new_value = -1.0f};
  content.paths = {{3, {flip, flip}}, {11, {flip}}};
  content.probe_kinds = {"refusal", "control"};
  Provenance& provenance = content.provenance;
  provenance.software_version = "0.1.0";
  provenance.job_sha256 = std::string(64, 'a');
  provenance.hostnames = {"node1"};
  provenance.sessions = {"2026-11-26T04:03:13Z job=77_1 host=node1 trials_before=0"};
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.path() + "/template.h5";
  write_results(path, content, true);
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Template {
  std::string image;
  std::vector<std::string> objects;     // every group and dataset, e.g. "/trials/k"
  std::vector<std::string> datasets;    // the datasets among them
  std::vector<std::string> attributes;  // root attribute names
};

herr_t collect_object(hid_t, const char* name, const H5O_info_t* info, void* out) {
  auto& listed = *static_cast<Template*>(out);
  if (std::strcmp(name, ".") == 0) return 0;
  const std::string path = "/" + std::string(name);
  listed.objects.push_back(path);
  if (info->type == H5O_TYPE_DATASET) listed.datasets.push_back(path);
  return 0;
}

herr_t collect_attribute(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<Template*>(out)->attributes.emplace_back(name);
  return 0;
}

const Template& the_template() {
  static const Template listed = [] {
    Template made;
    made.image = make_template();
    const fuzz::ScratchDirectory scratch;
    const std::string path = scratch.write("template.h5", made.image);
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, collect_object, &made, H5O_INFO_BASIC);
    H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attribute, &made);
    H5Fclose(file);
    // For writing regression programs by object name: the file the edits apply to.
    if (const char* copy = std::getenv("FRACSWEEP_FUZZ_RESULTS_TEMPLATE")) {
      fuzz::write_bytes(copy, made.image);
    }
    return made;
  }();
  return listed;
}

// ------------------------------------------------------------------ the edit program

// Reads the program's bytes; past the end every read gives zeros.
class Program {
 public:
  Program(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return position_ >= size_; }
  uint8_t byte() { return position_ < size_ ? data_[position_++] : 0; }
  uint64_t word() {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value |= uint64_t{byte()} << (8 * i);
    return value;
  }
  template <typename T>
  const T& pick(const std::vector<T>& choices) {
    return choices[byte() % choices.size()];
  }
  std::string text() {
    const size_t length = std::min<size_t>(byte() % 24, size_ - std::min(position_, size_));
    std::string value(reinterpret_cast<const char*>(data_ + position_), length);
    position_ += length;
    return value;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
};

const std::vector<int64_t> special_integers = {0,
                                               1,
                                               -1,
                                               2,
                                               3,
                                               7,
                                               9,
                                               15,
                                               16,
                                               31,
                                               32,
                                               33,
                                               48,
                                               1000,
                                               std::numeric_limits<int32_t>::max(),
                                               std::numeric_limits<int32_t>::min(),
                                               std::numeric_limits<int64_t>::max(),
                                               std::numeric_limits<int64_t>::min(),
                                               int64_t{1} << 40,
                                               1'000'000'000'000};
const std::vector<double> special_reals = {0.0,
                                           -0.0,
                                           1.0,
                                           -1.0,
                                           0.5,
                                           2.25,
                                           1e300,
                                           -1e300,
                                           std::numeric_limits<double>::quiet_NaN(),
                                           std::numeric_limits<double>::infinity(),
                                           -std::numeric_limits<double>::infinity(),
                                           9.3e18};
const std::vector<std::string> special_texts = {"",
                                                "x",
                                                "4x",
                                                "x4",
                                                "8x4",
                                                "-3",
                                                "0",
                                                "99999999999999999999",
                                                "1x2x3x4x5",
                                                "f32",
                                                "bf16",
                                                "f64",
                                                "a",
                                                "refusal",
                                                "fracsweep-results/1",
                                                "fracsweep-results/2",
                                                "\xff\xfe"};
// Declared lengths that cost nothing on a chunked dataset with no chunk written.
const std::vector<hsize_t> huge_lengths = {hsize_t{1} << 31, 1'000'000'000'000, hsize_t{1} << 40,
                                           hsize_t{1} << 60};

int64_t some_integer(Program& program) {
  return program.byte() % 4 == 0 ? static_cast<int64_t>(program.word())
                                 : program.pick(special_integers);
}
double some_real(Program& program) {
  if (program.byte() % 4 != 0) return program.pick(special_reals);
  const uint64_t bits = program.word();
  double value = 0;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
std::string some_text(Program& program) {
  return program.byte() % 2 == 0 ? program.pick(special_texts) : program.text();
}

// Owns an HDF5 id (any kind); closes it with the matching call.
class Id {
 public:
  explicit Id(hid_t id = H5I_INVALID_HID) : id_(id) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id& operator=(Id&& other) noexcept {
    std::swap(id_, other.id_);
    return *this;
  }
  ~Id() {
    if (id_ < 0) return;
    switch (H5Iget_type(id_)) {
      case H5I_DATASET:
        H5Dclose(id_);
        break;
      case H5I_DATASPACE:
        H5Sclose(id_);
        break;
      case H5I_DATATYPE:
        H5Tclose(id_);
        break;
      case H5I_ATTR:
        H5Aclose(id_);
        break;
      case H5I_GROUP:
        H5Gclose(id_);
        break;
      case H5I_GENPROP_LST:
        H5Pclose(id_);
        break;
      default:
        break;
    }
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
};

// A variable-length UTF-8 string type, as the writer stores text.
hid_t new_text_type() {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  return type;
}

// A stored type: the writer's ones, their neighbours, and kinds the reader never expects.
hid_t new_stored_type(Program& program) {
  switch (program.byte() % 12) {
    case 0:
      return H5Tcopy(H5T_STD_I8LE);
    case 1:
      return H5Tcopy(H5T_STD_I32LE);
    case 2:
      return H5Tcopy(H5T_STD_I64LE);
    case 3:
      return H5Tcopy(H5T_STD_U64LE);
    case 4:
      return H5Tcopy(H5T_IEEE_F32LE);
    case 5:
      return H5Tcopy(H5T_IEEE_F64LE);
    case 6:
      return H5Tcopy(H5T_STD_I64BE);
    case 7: {
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, 1 + program.byte() % 16);
      return type;
    }
    case 8: {
      const hid_t type = H5Tcreate(H5T_COMPOUND, 16);
      H5Tinsert(type, "a", 0, H5T_STD_I64LE);
      H5Tinsert(type, "b", 8, H5T_IEEE_F64LE);
      return type;
    }
    case 9:
      return H5Tcreate(H5T_OPAQUE, 4);
    default:
      return new_text_type();
  }
}

// Writes `n` values into `target` (a dataset or attribute) of class `kind`.
void fill(Program& program, hid_t target, hid_t stored, size_t n, bool attribute) {
  if (n == 0 || n > 4096) return;
  const H5T_class_t kind = H5Tget_class(stored);
  const auto write = [&](hid_t memory, const void* buffer) {
    if (attribute) {
      H5Awrite(target, memory, buffer);
    } else {
      H5Dwrite(target, memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer);
    }
  };
  if (kind == H5T_INTEGER) {
    std::vector<int64_t> values(n);
    for (int64_t& value : values) value = some_integer(program);
    write(H5T_NATIVE_INT64, values.data());
  } else if (kind == H5T_FLOAT) {
    std::vector<double> values(n);
    for (double& value : values) value = some_real(program);
    write(H5T_NATIVE_DOUBLE, values.data());
  } else if (kind == H5T_STRING && H5Tis_variable_str(stored) > 0) {
    std::vector<std::string> values(n);
    std::vector<const char*> pointers(n);
    for (size_t i = 0; i < n; ++i) {
      values[i] = some_text(program);
      pointers[i] = values[i].c_str();
    }
    write(stored, pointers.data());
  } else {
    std::string bytes(n * H5Tget_size(stored), '\0');
    for (char& c : bytes) c = static_cast<char>(program.byte());
    write(stored, bytes.data());
  }
}

// A dataspace: scalar, null, or 1-3 small dimensions.
hid_t new_space(Program& program, size_t& n) {
  const unsigned shape = program.byte() % 8;
  if (shape == 0) {
    n = 1;
    return H5Screate(H5S_SCALAR);
  }
  if (shape == 1) {
    n = 0;
    return H5Screate(H5S_NULL);
  }
  const int rank = shape < 6 ? 1 : shape - 4;
  hsize_t dims[3] = {0, 0, 0};
  n = 1;
  for (int d = 0; d < rank; ++d) {
    dims[d] = program.byte() % 7;
    n *= dims[d];
  }
  return H5Screate_simple(rank, dims, nullptr);
}

// Replaces the object at `path` with a small dataset of any type and shape.
void replace_with_small_dataset(Program& program, hid_t file, const std::string& path) {
  H5Ldelete(file, path.c_str(), H5P_DEFAULT);
  size_t n = 0;
  const Id space(new_space(program, n));
  const Id stored(new_stored_type(program));
  const Id dataset(H5Dcreate2(file, path.c_str(), stored.get(), space.get(), H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT));
  if (dataset.ok()) fill(program, dataset.get(), stored.get(), n, false);
}

// Replaces the object at `path` with a chunked dataset declaring a huge extent, no chunk
// written: a few hundred bytes on disk.
void replace_with_huge_dataset(Program& program, hid_t file, const std::string& path) {
  H5Ldelete(file, path.c_str(), H5P_DEFAULT);
  const int rank = 1 + program.byte() % 2;
  const hsize_t dims[2] = {program.pick(huge_lengths), 1 + hsize_t{program.byte()} % 4};
  const hsize_t maxdims[2] = {H5S_UNLIMITED, H5S_UNLIMITED};
  const hsize_t chunk[2] = {1 + hsize_t{program.byte()} % 64, 1};
  const Id space(H5Screate_simple(rank, dims, maxdims));
  const Id create(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(create.get(), rank, chunk);
  const Id stored(new_stored_type(program));
  const Id dataset(H5Dcreate2(file, path.c_str(), stored.get(), space.get(), H5P_DEFAULT,
                              create.get(), H5P_DEFAULT));
}

// The existing dataset at `path` rewritten with `delta` more (or fewer) elements along its
// first axis, same type: columns of mismatched lengths with plausible values.
void resize_dataset(Program& program, hid_t file, const std::string& path) {
  Id stored, memory;
  bool text = false;
  std::vector<uint64_t> cells;  // int64, double or char* per element
  {
    const Id dataset(H5Dopen2(file, path.c_str(), H5P_DEFAULT));
    if (!dataset.ok()) return;
    const Id space(H5Dget_space(dataset.get()));
    if (H5Sget_simple_extent_ndims(space.get()) != 1) return;
    hsize_t length = 0;
    H5Sget_simple_extent_dims(space.get(), &length, nullptr);
    if (length > 4096) return;
    stored = Id(H5Dget_type(dataset.get()));
    const H5T_class_t kind = H5Tget_class(stored.get());
    text = kind == H5T_STRING && H5Tis_variable_str(stored.get()) > 0;
    if (kind != H5T_INTEGER && kind != H5T_FLOAT && !text) return;
    memory = Id(text                  ? new_text_type()
                : kind == H5T_INTEGER ? H5Tcopy(H5T_NATIVE_INT64)
                                      : H5Tcopy(H5T_NATIVE_DOUBLE));
    cells.resize(length);
    if (length > 0 &&
        H5Dread(dataset.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, cells.data()) < 0)
      return;
  }
  std::vector<std::string> strings;  // copies of the read strings
  if (text) {
    for (uint64_t& cell : cells) {
      char* pointer = reinterpret_cast<char*>(cell);
      strings.emplace_back(pointer == nullptr ? "" : pointer);
      H5free_memory(pointer);
    }
  }
  const int delta = program.byte() % 7 - 3;
  const hsize_t new_length =
      delta < 0 && hsize_t(-delta) > cells.size() ? 0 : cells.size() + static_cast<hsize_t>(delta);
  strings.resize(new_length);
  std::vector<const char*> pointers;
  for (const std::string& value : strings) pointers.push_back(value.c_str());
  cells.resize(new_length, text || cells.empty() ? 0 : cells.back());
  H5Ldelete(file, path.c_str(), H5P_DEFAULT);
  const Id resized_space(H5Screate_simple(1, &new_length, nullptr));
  const Id rewritten(H5Dcreate2(file, path.c_str(), stored.get(), resized_space.get(), H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT));
  if (!rewritten.ok() || new_length == 0) return;
  H5Dwrite(rewritten.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
           text ? static_cast<const void*>(pointers.data()) : cells.data());
}

// Overwrites one element of the dataset at `path` with a hostile value of its own kind.
void set_element(Program& program, hid_t file, const std::string& path) {
  const Id dataset(H5Dopen2(file, path.c_str(), H5P_DEFAULT));
  if (!dataset.ok()) return;
  const Id stored(H5Dget_type(dataset.get()));
  const Id space(H5Dget_space(dataset.get()));
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (count <= 0 || rank < 1 || rank > 3) return;
  hsize_t dims[3] = {1, 1, 1}, point[3] = {0, 0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  uint64_t index = program.byte() % static_cast<uint64_t>(count);
  for (int d = rank - 1; d >= 0; --d) {
    point[d] = index % dims[d];
    index /= dims[d];
  }
  H5Sselect_elements(space.get(), H5S_SELECT_SET, 1, point);
  const Id one(H5Screate(H5S_SCALAR));
  const H5T_class_t kind = H5Tget_class(stored.get());
  if (kind == H5T_INTEGER) {
    const int64_t value = some_integer(program);
    H5Dwrite(dataset.get(), H5T_NATIVE_INT64, one.get(), space.get(), H5P_DEFAULT, &value);
  } else if (kind == H5T_FLOAT) {
    const double value = some_real(program);
    H5Dwrite(dataset.get(), H5T_NATIVE_DOUBLE, one.get(), space.get(), H5P_DEFAULT, &value);
  } else if (kind == H5T_STRING && H5Tis_variable_str(stored.get()) > 0) {
    const std::string value = some_text(program);
    const char* pointer = value.c_str();
    const Id memory(new_text_type());
    H5Dwrite(dataset.get(), memory.get(), one.get(), space.get(), H5P_DEFAULT, &pointer);
  }
}

// Replaces root attribute `name` with one of any type and shape.
void replace_attribute(Program& program, hid_t file, const std::string& name) {
  H5Adelete(file, name.c_str());
  size_t n = 0;
  const Id space(new_space(program, n));
  const Id stored(program.byte() % 2 == 0 ? new_text_type() : new_stored_type(program));
  const Id attribute(
      H5Acreate2(file, name.c_str(), stored.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (attribute.ok()) fill(program, attribute.get(), stored.get(), n, true);
}

void run_edit(Program& program, hid_t file, const Template& base) {
  const std::string& object = program.pick(base.objects);
  const std::string& dataset = program.pick(base.datasets);
  const std::string& attribute = program.pick(base.attributes);
  switch (program.byte() % 12) {
    case 0:
      H5Ldelete(file, object.c_str(), H5P_DEFAULT);
      break;
    case 1:
    case 2:
      replace_with_small_dataset(program, file, dataset);
      break;
    case 3:
      replace_with_huge_dataset(program, file, dataset);
      break;
    case 4:
      resize_dataset(program, file, dataset);
      break;
    case 5:
    case 6:
      set_element(program, file, dataset);
      break;
    case 7:
      H5Adelete(file, attribute.c_str());
      break;
    case 8:
      replace_attribute(program, file, attribute);
      break;
    case 9: {  // a soft link in place of the object: to another one, or to nothing
      const std::string target = program.byte() % 2 ? program.pick(base.objects) : "/nowhere";
      H5Ldelete(file, object.c_str(), H5P_DEFAULT);
      H5Lcreate_soft(target.c_str(), file, object.c_str(), H5P_DEFAULT, H5P_DEFAULT);
      break;
    }
    case 10: {  // a group in place of a dataset (or the reverse: replace_with_small_dataset)
      H5Ldelete(file, dataset.c_str(), H5P_DEFAULT);
      const Id group(H5Gcreate2(file, dataset.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      break;
    }
    default: {  // an extra object or attribute the reader does not know
      const std::string name = "/" + program.text();
      if (program.byte() % 2 == 0) {
        replace_with_small_dataset(program, file, name);
      } else {
        replace_attribute(program, file, name.substr(1));
      }
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // edits may fail; that is part of the game
  const Template& base = the_template();
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("results.h5", base.image);
  {
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) throw RunError("fuzz harness: cannot reopen the template");
    Program program(data, size);
    for (int edits = 0; !program.done() && edits < 64; ++edits) run_edit(program, file, base);
    H5Fclose(file);
  }
  static const bool verbose = std::getenv("FRACSWEEP_FUZZ_VERBOSE") != nullptr;
  try {
    read_results(path);
  } catch (const InputError& error) {  // the right answer; anything else escapes (a finding)
    if (verbose) std::fprintf(stderr, "InputError: %s\n", error.what());
  }
  return 0;
}
