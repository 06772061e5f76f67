// The HDF5 results writer: a file written from hand-built content is read back with the HDF5
// C API and compared value by value, then opened with h5py, xarray and pandas by
// check_results_readers.py; plus the overwrite, temporary-file and output-path rules.
#define BOOST_TEST_MODULE results
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/util/error.hpp"

namespace fs = std::filesystem;
using namespace fracsweep;

namespace {

// ------------------------------------------------------------------ the content

StrategySpec zero_strategy() {
  StrategySpec strategy;
  strategy.kind = StrategyKind::zero;
  return strategy;
}

StrategySpec gaussian_strategy() {
  StrategySpec strategy;
  strategy.kind = StrategyKind::gaussian;
  strategy.sigma = 0.1;
  strategy.relative_to = SigmaRelativeTo::std;
  strategy.scope.include = {"layers.*"};
  return strategy;
}

StrategySpec magnitude_strategy() {
  StrategySpec strategy;
  strategy.kind = StrategyKind::magnitude;
  strategy.action = TargetAction::signflip;
  return strategy;
}

// 2 models x 3 strategies (one deterministic) x 3 amounts x 2 seeds.
JobConfig make_job() {
  JobConfig job;
  job.path = "/jobs/demo.ini";
  job.text = "name = demo\nseed = 18446744073709551600\n[strategy]\n\"quoted\" \\ line\n";
  job.name = "demo";
  job.seed = 18446744073709551600ULL;  // above INT64_MAX: must survive as uint64
  job.models = {{"tiny-a", "/models/a.bin", "/models/tok.bin"},
                {"tiny-b", "/models/b.bin", "/models/tok.bin"}};
  job.amounts = {Amount{.fraction = 0.001}, Amount{.fraction = 0.25},
                 Amount{.is_count = true, .count = 8}};
  job.strategies = {zero_strategy(), gaussian_strategy(), magnitude_strategy()};
  job.strategy_texts = {"zero", "gaussian sigma=0.1 relative=std include=layers.*",
                        "magnitude then=signflip"};
  job.seeds = {11, 22};
  return job;
}

// Three tensors covering `n_parameters`: tok_embeddings (vocab x 4), layers.0.wq (4 x 4, stored
// as bf16), norm_final (the rest, marked a buffer so the role column is exercised).
std::vector<TensorInfo> make_tensors(int64_t vocab, int64_t n_parameters) {
  const int64_t embeddings = vocab * 4;
  return {{"tok_embeddings", {vocab, 4}, 0, embeddings},
          {"layers.0.wq", {4, 4}, embeddings, 16, StoredType::bf16},
          {"norm_final",
           {n_parameters - embeddings - 16},
           embeddings + 16,
           n_parameters - embeddings - 16,
           StoredType::f32,
           fracsweep::TensorRole::buffer}};
}

ModelSummary make_model_summary(const ModelSpec& spec, int64_t vocab, int64_t n_parameters,
                                double mean_nll, std::vector<int32_t> greedy_ids,
                                std::string greedy_text) {
  ModelSummary summary;
  summary.name = spec.name;
  summary.path = spec.path;
  summary.format = "llama2c-v0";
  summary.n_parameters = n_parameters;
  summary.tensors = make_tensors(vocab, n_parameters);
  summary.baseline.metrics.positions = 40;
  summary.baseline.metrics.mean_nll = mean_nll;
  summary.baseline.metrics.perplexity = std::exp(mean_nll);
  summary.baseline.metrics.accuracy = 0.375;
  summary.baseline.greedy_ids = std::move(greedy_ids);
  summary.greedy_text = std::move(greedy_text);
  return summary;
}

const std::vector<int64_t> done_trials = {0, 1, 4, 13, 15, 20, 29};  // of 30; the rest missing
const size_t nonfinite_row = 2;                                      // trial 4

TrialRow make_row(const JobConfig& job, const Grid& grid, int64_t trial, size_t i) {
  const TrialSpec& spec = grid.trial(trial);
  const Amount& amount = job.amounts[static_cast<size_t>(spec.amount_idx)];
  const auto step = static_cast<double>(i);
  TrialRow row;
  row.trial = trial;
  row.model_idx = spec.model_idx;
  row.strategy_idx = spec.strategy_idx;
  row.amount_idx = spec.amount_idx;
  row.seed_idx = spec.seed_idx;
  row.n_scope = spec.model_idx == 0 ? 100 : 60;
  row.k = amount.sites(row.n_scope);
  row.fraction = amount.is_count ? static_cast<double>(row.k) / static_cast<double>(row.n_scope)
                                 : amount.fraction;
  row.seed = job.seeds[static_cast<size_t>(spec.seed_idx)];
  TrialMetrics& metrics = row.metrics;
  metrics.positions = 40;
  metrics.mean_nll = 2.5 + 0.125 * step;
  metrics.perplexity = std::exp(metrics.mean_nll);
  metrics.mean_nll_finite = metrics.mean_nll;
  metrics.accuracy = 0.375 - 0.03125 * step;
  metrics.sdc_rate = 0.015625 * step;
  metrics.top1_agreement = 1.0 - 0.0625 * step;
  metrics.mean_kl = 0.01 * step;
  metrics.max_kl = 0.05 * step;
  metrics.mean_kl_finite = metrics.mean_kl;
  metrics.greedy_match = 5 - static_cast<int64_t>(i % 3);
  metrics.greedy_length = spec.model_idx == 0 ? 3 : 5;
  row.wall_s = 0.001 * (step + 1.0);
  row.rank = static_cast<int32_t>(i % 3);
  if (i == nonfinite_row) {
    metrics.nonfinite_positions = 3;
    metrics.mean_nll = not_a_number;
    metrics.perplexity = not_a_number;
    metrics.mean_kl = not_a_number;
    metrics.max_kl = not_a_number;
    metrics.mean_nll_finite = 4.0;
    metrics.mean_kl_finite = 0.5;
    row.status = status_nonfinite;
  }
  return row;
}

// A job, its grid and hand-built results content over them.
struct Sweep {
  JobConfig job = make_job();
  Grid grid = job_grid(job);
  ResultsContent content;  // points at job and grid: not copyable

  Sweep(const Sweep&) = delete;
  Sweep& operator=(const Sweep&) = delete;
  Sweep() {
    content.job = &job;
    content.grid = &grid;
    content.models = {make_model_summary(job.models[0], 8, 100, 2.25, {5, 9, 2},
                                         "Once upon a time \u2014 \u00e9"),
                      make_model_summary(job.models[1], 5, 60, 3.5, {7, 7, 1, 3, 4}, "Lily")};
    for (size_t i = 0; i < done_trials.size(); ++i) {
      content.rows.push_back(make_row(job, grid, done_trials[i], i));
    }
    // Trial 4 runs on tiny-a, trial 20 on tiny-b (ids are model-major, 15 per model).
    content.sites = {{4, {{40, 0.5f, -0.5f}, {3, 1.25f, not_a_number_float}, {99, -2.0f, 2.0f}}},
                     {20, {{59, 0.75f, 0.0f}, {20, -1.0f, 1.0f}}}};
    Provenance& provenance = content.provenance;
    provenance.software_version = "0.1.0";
    provenance.git_commit = "0123456789abcdef0123456789abcdef01234567-dirty";
    provenance.command_line = "fracsweep run jobs/demo.ini --out demo.h5";
    provenance.job_sha256 = std::string(64, 'a');
    provenance.schedule = "dynamic (chunk 4)";
    provenance.mpi_size = 3;
    provenance.hostnames = {"node2", "node1", "node2"};
    provenance.blis_version = "0.9.0";
    provenance.blis_kernels = "haswell";
    provenance.blis_kernels_selected_by = "default";
    provenance.blis_threads = 2;
    provenance.started_utc = "2026-11-26T05:03:13Z";
    provenance.finished_utc = "2026-11-26T05:04:00Z";
    provenance.shard_index = 1;
    provenance.shard_count = 3;
    provenance.resume_count = 1;
    provenance.sessions = {"2026-11-26T04:03:13Z job=77_1 host=node1 trials_before=0",
                           "2026-11-26T05:03:13Z job=78_1 host=node2 trials_before=4"};
  }
  static constexpr float not_a_number_float = std::numeric_limits<float>::quiet_NaN();
};

// Expected per-site values (hand-computed from make_tensors: tiny-a vocab 8 -> embeddings
// [0, 32), wq [32, 48), norm_final [48, 100); tiny-b vocab 5 -> [0, 20), [20, 36), [36, 60)).
const std::vector<int64_t> expected_site_trials = {4, 4, 4, 20, 20};
const std::vector<int64_t> expected_site_ranks = {0, 1, 2, 0, 1};
const std::vector<int64_t> expected_site_offsets = {40, 3, 99, 59, 20};
const std::vector<std::string> expected_site_tensors = {"layers.0.wq", "tok_embeddings",
                                                        "norm_final", "norm_final", "layers.0.wq"};
const std::vector<int64_t> expected_index_in_tensor = {8, 3, 51, 23, 0};

// ------------------------------------------------------------------ reading back (C API)

// Owns an HDF5 id in the test; the id must be valid.
class Id {
 public:
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) { BOOST_TEST_REQUIRE(id >= 0); }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { close_(id_); }
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, int8_t>) return H5T_NATIVE_INT8;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  if constexpr (std::is_same_v<T, uint64_t>) return H5T_NATIVE_UINT64;
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
}

struct ResultsReader {
  Id file;
  explicit ResultsReader(const std::string& path)
      : file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose) {}

  bool exists(const std::string& path) const {
    return H5Lexists(file.get(), path.c_str(), H5P_DEFAULT) > 0;
  }

  bool has_attribute(const std::string& object, const std::string& name) const {
    return H5Aexists_by_name(file.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
  }

  // Element count of each axis of a dataset.
  std::vector<hsize_t> extent(const std::string& path) const {
    const Id dataset(H5Dopen2(file.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    const Id space(H5Dget_space(dataset.get()), H5Sclose);
    std::vector<hsize_t> dims(static_cast<size_t>(H5Sget_simple_extent_ndims(space.get())));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    return dims;
  }

  template <typename T>
  std::vector<T> numbers(const std::string& path) const {
    const Id dataset(H5Dopen2(file.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    const Id space(H5Dget_space(dataset.get()), H5Sclose);
    std::vector<T> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
    if (!values.empty()) {
      BOOST_TEST_REQUIRE(H5Dread(dataset.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                 values.data()) >= 0);
    }
    return values;
  }

  std::vector<std::string> strings(const std::string& path) const {
    const Id dataset(H5Dopen2(file.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    const Id stored_type(H5Dget_type(dataset.get()), H5Tclose);
    BOOST_TEST(H5Tis_variable_str(stored_type.get()) > 0, path << " is not variable-length");
    BOOST_TEST(H5Tget_cset(stored_type.get()) == H5T_CSET_UTF8, path << " is not UTF-8");
    const Id space(H5Dget_space(dataset.get()), H5Sclose);
    const Id text(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(text.get(), H5T_VARIABLE);
    H5Tset_cset(text.get(), H5T_CSET_UTF8);
    std::vector<char*> pointers(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
    if (pointers.empty()) return {};
    BOOST_TEST_REQUIRE(
        H5Dread(dataset.get(), text.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()) >= 0);
    std::vector<std::string> values(pointers.begin(), pointers.end());
    H5Dvlen_reclaim(text.get(), space.get(), H5P_DEFAULT, pointers.data());
    return values;
  }

  std::string text_attribute(const std::string& object, const std::string& name) const {
    const Id attribute(
        H5Aopen_by_name(file.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    const Id text(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(text.get(), H5T_VARIABLE);
    H5Tset_cset(text.get(), H5T_CSET_UTF8);
    char* pointer = nullptr;
    BOOST_TEST_REQUIRE(H5Aread(attribute.get(), text.get(), &pointer) >= 0);
    std::string value(pointer);
    H5free_memory(pointer);
    return value;
  }

  // A 1-D variable-length UTF-8 string array attribute.
  std::vector<std::string> text_array_attribute(const std::string& object,
                                                const std::string& name) const {
    const Id attribute(
        H5Aopen_by_name(file.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    const Id space(H5Aget_space(attribute.get()), H5Sclose);
    const Id text(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(text.get(), H5T_VARIABLE);
    H5Tset_cset(text.get(), H5T_CSET_UTF8);
    std::vector<char*> pointers(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
    BOOST_TEST_REQUIRE(H5Aread(attribute.get(), text.get(), pointers.data()) >= 0);
    std::vector<std::string> values(pointers.begin(), pointers.end());
    H5Dvlen_reclaim(text.get(), space.get(), H5P_DEFAULT, pointers.data());
    return values;
  }

  // Names of the datasets of a group in creation order.
  std::vector<std::string> datasets_in_creation_order(const std::string& group_path) const {
    const Id group(H5Gopen2(file.get(), group_path.c_str(), H5P_DEFAULT), H5Gclose);
    std::vector<std::string> names;
    const H5L_iterate_t collect = [](hid_t, const char* name, const H5L_info_t*,
                                     void* out) -> herr_t {
      static_cast<std::vector<std::string>*>(out)->emplace_back(name);
      return 0;
    };
    BOOST_TEST_REQUIRE(
        H5Literate(group.get(), H5_INDEX_CRT_ORDER, H5_ITER_INC, nullptr, collect, &names) >= 0);
    return names;
  }

  // "int32", "int64", "float64" or "str": the word the column table uses for a dataset's type.
  std::string type_word(const std::string& path) const {
    const Id dataset(H5Dopen2(file.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    const Id stored_type(H5Dget_type(dataset.get()), H5Tclose);
    const size_t bits = 8 * H5Tget_size(stored_type.get());
    switch (H5Tget_class(stored_type.get())) {
      case H5T_INTEGER:
        return "int" + std::to_string(bits);
      case H5T_FLOAT:
        return "float" + std::to_string(bits);
      case H5T_STRING:
        return "str";
      default:
        return "other";
    }
  }

  template <typename T>
  std::vector<T> numeric_attribute(const std::string& object, const std::string& name) const {
    const Id attribute(
        H5Aopen_by_name(file.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    const Id stored_type(H5Aget_type(attribute.get()), H5Tclose);
    BOOST_TEST(H5Tequal(stored_type.get(), native_type<T>()) > 0,
               object << " attribute " << name << " has another type");
    const Id space(H5Aget_space(attribute.get()), H5Sclose);
    std::vector<T> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
    BOOST_TEST_REQUIRE(H5Aread(attribute.get(), native_type<T>(), values.data()) >= 0);
    return values;
  }
};

// Element-wise equality where NaN equals NaN.
template <typename T>
void check_same_or_both_nan(const std::vector<T>& actual, const std::vector<T>& expected,
                            const std::string& what) {
  BOOST_TEST_REQUIRE(actual.size() == expected.size(), what << " length");
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::isnan(expected[i])) {
      BOOST_TEST(std::isnan(actual[i]), what << "[" << i << "] should be NaN");
    } else {
      BOOST_TEST(actual[i] == expected[i], what << "[" << i << "]");
    }
  }
}

// ------------------------------------------------------------------ expected values as JSON

std::string json(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      quoted += escaped;
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}
std::string json(double value) {
  if (std::isnan(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}
std::string json(float value) {
  return json(static_cast<double>(value));
}
std::string json(int64_t value) {
  return std::to_string(value);
}
std::string json(int32_t value) {
  return std::to_string(value);
}
std::string json(int8_t value) {
  return std::to_string(value);
}
std::string json(uint64_t value) {
  return std::to_string(value);
}
template <typename T>
std::string json(const std::vector<T>& values) {
  std::string array = "[";
  for (size_t i = 0; i < values.size(); ++i) array += (i ? ", " : "") + json(values[i]);
  return array + "]";
}
// {"key": value, ...} from already-encoded values.
std::string json_object(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string object = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    object += (i ? ",\n " : "") + json(members[i].first) + ": " + members[i].second;
  }
  return object + "}";
}

// Expected values of every dataset, computed from the content (not from the file).
std::string expected_json(const ResultsContent& content) {
  const JobConfig& job = *content.job;
  std::vector<std::string> models, model_paths, model_formats, strategies, strategy_names,
      strategy_scopes, amount_labels;
  std::vector<int64_t> model_parameters, counts;
  std::vector<int8_t> deterministic;
  std::vector<double> fractions;
  for (size_t m = 0; m < job.models.size(); ++m) {
    models.push_back(job.models[m].name);
    model_paths.push_back(content.models[m].path);
    model_formats.push_back(content.models[m].format);
    model_parameters.push_back(content.models[m].n_parameters);
  }
  for (const StrategySpec& strategy : job.strategies) {
    strategies.push_back(strategy.canonical());
    strategy_names.push_back(strategy.name());
    strategy_scopes.push_back(strategy.scope.canonical());
    deterministic.push_back(strategy.deterministic() ? 1 : 0);
  }
  for (const Amount& amount : job.amounts) {
    fractions.push_back(amount.is_count ? not_a_number : amount.fraction);
    counts.push_back(amount.is_count ? amount.count : -1);
    amount_labels.push_back(amount.label());
  }
  const std::string grid = json_object({{"model", json(models)},
                                        {"model_path", json(model_paths)},
                                        {"model_format", json(model_formats)},
                                        {"model_n_parameters", json(model_parameters)},
                                        {"strategy", json(strategies)},
                                        {"strategy_name", json(strategy_names)},
                                        {"strategy_scope", json(strategy_scopes)},
                                        {"strategy_spec", json(job.strategy_texts)},
                                        {"strategy_deterministic", json(deterministic)},
                                        {"fraction", json(fractions)},
                                        {"count", json(counts)},
                                        {"amount_label", json(amount_labels)},
                                        {"seed", json(job.seeds)}});

  std::vector<int64_t> trial, seed, k, k_changed, n_scope, positions, nonfinite, greedy_match,
      greedy_length;
  std::vector<int32_t> model_idx, strategy_idx, fraction_idx, seed_idx, rank, status;
  std::vector<std::string> model, strategy, stored_dtype;
  std::vector<double> fraction, mean_nll, perplexity, mean_nll_finite, accuracy, sdc_rate,
      agreement, mean_kl, max_kl, mean_kl_finite, wall_s;
  for (const TrialRow& row : content.rows) {
    trial.push_back(row.trial);
    model_idx.push_back(row.model_idx);
    strategy_idx.push_back(row.strategy_idx);
    fraction_idx.push_back(row.amount_idx);
    seed_idx.push_back(row.seed_idx);
    model.push_back(models[static_cast<size_t>(row.model_idx)]);
    strategy.push_back(strategies[static_cast<size_t>(row.strategy_idx)]);
    // Only layers.0.wq is bf16: a layers.* scope perturbs bf16 alone, the others both formats.
    const bool layers_only =
        !job.strategies[static_cast<size_t>(row.strategy_idx)].scope.include.empty();
    stored_dtype.push_back(layers_only ? "bf16" : "f32+bf16");
    fraction.push_back(row.fraction);
    seed.push_back(row.seed);
    k.push_back(row.k);
    k_changed.push_back(row.k_changed);
    n_scope.push_back(row.n_scope);
    positions.push_back(row.metrics.positions);
    nonfinite.push_back(row.metrics.nonfinite_positions);
    mean_nll.push_back(row.metrics.mean_nll);
    perplexity.push_back(row.metrics.perplexity);
    mean_nll_finite.push_back(row.metrics.mean_nll_finite);
    accuracy.push_back(row.metrics.accuracy);
    sdc_rate.push_back(row.metrics.sdc_rate);
    agreement.push_back(row.metrics.top1_agreement);
    mean_kl.push_back(row.metrics.mean_kl);
    max_kl.push_back(row.metrics.max_kl);
    mean_kl_finite.push_back(row.metrics.mean_kl_finite);
    greedy_match.push_back(row.metrics.greedy_match);
    greedy_length.push_back(row.metrics.greedy_length);
    wall_s.push_back(row.wall_s);
    rank.push_back(row.rank);
    status.push_back(row.status);
  }
  const std::string trials = json_object({{"trial", json(trial)},
                                          {"model_idx", json(model_idx)},
                                          {"strategy_idx", json(strategy_idx)},
                                          {"fraction_idx", json(fraction_idx)},
                                          {"seed_idx", json(seed_idx)},
                                          {"model", json(model)},
                                          {"strategy", json(strategy)},
                                          {"stored_dtype", json(stored_dtype)},
                                          {"fraction", json(fraction)},
                                          {"seed", json(seed)},
                                          {"k", json(k)},
                                          {"k_changed", json(k_changed)},
                                          {"n_scope", json(n_scope)},
                                          {"positions", json(positions)},
                                          {"nonfinite_positions", json(nonfinite)},
                                          {"mean_nll", json(mean_nll)},
                                          {"perplexity", json(perplexity)},
                                          {"mean_nll_finite", json(mean_nll_finite)},
                                          {"accuracy", json(accuracy)},
                                          {"sdc_rate", json(sdc_rate)},
                                          {"top1_agreement", json(agreement)},
                                          {"mean_kl", json(mean_kl)},
                                          {"max_kl", json(max_kl)},
                                          {"mean_kl_finite", json(mean_kl_finite)},
                                          {"greedy_match", json(greedy_match)},
                                          {"greedy_length", json(greedy_length)},
                                          {"wall_s", json(wall_s)},
                                          {"rank", json(rank)},
                                          {"status", json(status)}});

  std::vector<int32_t> model_index;
  std::vector<double> base_nll, base_perplexity, base_accuracy;
  std::vector<int64_t> base_positions, base_nonfinite, base_greedy_length, greedy_position;
  std::vector<std::string> greedy_text;
  size_t longest = 0;
  for (const ModelSummary& summary : content.models) {
    longest = std::max(longest, summary.baseline.greedy_ids.size());
  }
  std::string greedy_ids = "[";
  for (size_t m = 0; m < content.models.size(); ++m) {
    const ModelSummary& summary = content.models[m];
    model_index.push_back(static_cast<int32_t>(m));
    base_nll.push_back(summary.baseline.metrics.mean_nll);
    base_perplexity.push_back(summary.baseline.metrics.perplexity);
    base_accuracy.push_back(summary.baseline.metrics.accuracy);
    base_positions.push_back(summary.baseline.metrics.positions);
    base_nonfinite.push_back(summary.baseline.metrics.nonfinite_positions);
    base_greedy_length.push_back(static_cast<int64_t>(summary.baseline.greedy_ids.size()));
    greedy_text.push_back(summary.greedy_text);
    std::vector<int32_t> padded = summary.baseline.greedy_ids;
    padded.resize(longest, -1);
    greedy_ids += (m ? ", " : "") + json(padded);
  }
  greedy_ids += "]";
  for (size_t p = 0; p < longest; ++p) greedy_position.push_back(static_cast<int64_t>(p));
  const std::string baseline = json_object({{"model_index", json(model_index)},
                                            {"model", json(models)},
                                            {"mean_nll", json(base_nll)},
                                            {"perplexity", json(base_perplexity)},
                                            {"accuracy", json(base_accuracy)},
                                            {"positions", json(base_positions)},
                                            {"nonfinite_positions", json(base_nonfinite)},
                                            {"greedy_length", json(base_greedy_length)},
                                            {"greedy_text", json(greedy_text)},
                                            {"greedy_position", json(greedy_position)},
                                            {"greedy_ids", greedy_ids}});

  std::vector<int64_t> tensor_index, tensor_offset, tensor_count;
  std::vector<int32_t> tensor_model;
  std::vector<std::string> tensor_name, tensor_shape, tensor_dtype, tensor_role;
  for (size_t m = 0; m < content.models.size(); ++m) {
    for (const TensorInfo& tensor : content.models[m].tensors) {
      tensor_index.push_back(static_cast<int64_t>(tensor_index.size()));
      tensor_model.push_back(static_cast<int32_t>(m));
      tensor_name.push_back(tensor.name);
      tensor_offset.push_back(tensor.offset);
      tensor_count.push_back(tensor.count);
      tensor_shape.push_back(shape_text(tensor.shape));
      tensor_dtype.push_back(tensor.name == "layers.0.wq" ? "bf16" : "f32");
      tensor_role.push_back(fracsweep::tensor_role_name(tensor.role));
    }
  }
  const std::string tensors = json_object({{"tensor", json(tensor_index)},
                                           {"model_idx", json(tensor_model)},
                                           {"name", json(tensor_name)},
                                           {"offset", json(tensor_offset)},
                                           {"count", json(tensor_count)},
                                           {"shape", json(tensor_shape)},
                                           {"dtype", json(tensor_dtype)},
                                           {"role", json(tensor_role)}});

  const Provenance& provenance = content.provenance;
  const std::string root = json_object(
      {{"schema_version", json(std::string("fracsweep-results/1"))},
       {"job_name", json(job.name)},
       {"job_text", json(job.text)},
       {"job_seed", json(job.seed)},
       {"git_commit", json(provenance.git_commit)},
       {"schedule", json(provenance.schedule)},
       {"mpi_size", json(int32_t{3})},
       {"hostnames", json(std::string("node1,node2"))},
       {"blis_threads", json(int32_t{2})},
       {"n_trials", json(int64_t{30})},
       {"n_trials_done", json(static_cast<int64_t>(content.rows.size()))},
       {"shard_index", json(provenance.shard_index)},
       {"shard_count", json(provenance.shard_count)},
       {"resume_count", json(provenance.resume_count)},
       {"sessions", json(provenance.sessions[0] + "\n" + provenance.sessions[1] + "\n")}});

  std::vector<std::pair<std::string, std::string>> document = {{"root", root},
                                                               {"grid", grid},
                                                               {"trials", trials},
                                                               {"baseline", baseline},
                                                               {"tensors", tensors}};
  if (!content.sites.empty()) {
    std::vector<int64_t> site_index;
    std::vector<float> old_values, new_values;
    for (const TrialSites& recorded : content.sites) {
      for (const SiteRecord& site : recorded.sites) {
        site_index.push_back(static_cast<int64_t>(site_index.size()));
        old_values.push_back(site.old_value);
        new_values.push_back(site.new_value);
      }
    }
    document.emplace_back("sites", json_object({{"site", json(site_index)},
                                                {"trial", json(expected_site_trials)},
                                                {"site_rank", json(expected_site_ranks)},
                                                {"offset", json(expected_site_offsets)},
                                                {"tensor", json(expected_site_tensors)},
                                                {"index_in_tensor", json(expected_index_in_tensor)},
                                                {"old_value", json(old_values)},
                                                {"new_value", json(new_values)}}));
  }
  return json_object(document) + "\n";
}

// ------------------------------------------------------------------ files

// A fresh directory for one test, removed afterwards.
struct ScratchDirectory {
  fs::path path;
  ScratchDirectory() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("fracsweep_test_results_" + std::to_string(::getpid()) +
                                        "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run_python_readers(const std::string& results_path, const std::string& expected_text,
                       const ScratchDirectory& scratch) {
  const std::string expected_path = scratch.file("expected.json");
  std::ofstream(expected_path) << expected_text;
  const fs::path script = fs::path(__FILE__).parent_path() / "check_results_readers.py";
  const std::string command =
      "/usr/bin/python3 " + script.string() + " " + results_path + " " + expected_path;
  return std::system(command.c_str());
}

bool message_contains(const std::exception& error, const std::string& part) {
  return std::string(error.what()).find(part) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(grid_of_the_test_job_has_thirty_trials) {
  // 2 models x (2 random strategies x 3 amounts x 2 seeds + 1 deterministic x 3 amounts).
  const Sweep sweep;
  BOOST_TEST(sweep.grid.size() == 30);
  BOOST_TEST(sweep.grid.trial(20).model_idx == 1);
  BOOST_TEST(sweep.grid.trial(4).model_idx == 0);
}

BOOST_AUTO_TEST_CASE(file_reads_back_with_the_hdf5_c_api) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);
  BOOST_TEST(scratch.entries() == std::vector<std::string>{"demo.h5"}, "no temporary file left");

  const ResultsReader file(path);
  BOOST_TEST(file.text_attribute("/", "schema_version") == "fracsweep-results/1");
  BOOST_TEST(file.text_attribute("/", "job_text") == sweep.job.text);
  BOOST_TEST(file.text_attribute("/", "hostnames") == "node1,node2");
  BOOST_TEST(file.text_attribute("/", "schedule") == "dynamic (chunk 4)");
  BOOST_TEST(file.numeric_attribute<uint64_t>("/", "job_seed") ==
             std::vector<uint64_t>{18446744073709551600ULL});
  BOOST_TEST(file.numeric_attribute<int32_t>("/", "mpi_size") == std::vector<int32_t>{3});
  BOOST_TEST(file.numeric_attribute<int64_t>("/", "n_trials") == std::vector<int64_t>{30});
  BOOST_TEST(file.numeric_attribute<int64_t>("/", "n_trials_done") == std::vector<int64_t>{7});

  BOOST_TEST(file.strings("/grid/model") == (std::vector<std::string>{"tiny-a", "tiny-b"}));
  BOOST_TEST(file.numbers<int64_t>("/grid/model_n_parameters") == (std::vector<int64_t>{100, 60}));
  const std::vector<std::string> strategies = {zero_strategy().canonical(),
                                               gaussian_strategy().canonical(),
                                               magnitude_strategy().canonical()};
  BOOST_TEST(file.strings("/grid/strategy") == strategies);
  BOOST_TEST(file.strings("/grid/strategy_name") ==
             (std::vector<std::string>{"zero", "gaussian", "magnitude"}));
  BOOST_TEST(file.strings("/grid/strategy_spec") == sweep.job.strategy_texts);
  BOOST_TEST(file.numbers<int8_t>("/grid/strategy_deterministic") ==
             (std::vector<int8_t>{0, 0, 1}));
  check_same_or_both_nan(file.numbers<double>("/grid/fraction"), {0.001, 0.25, not_a_number},
                         "/grid/fraction");
  BOOST_TEST(file.numbers<int64_t>("/grid/count") == (std::vector<int64_t>{-1, -1, 8}));
  BOOST_TEST(file.strings("/grid/amount_label")[2] == "count=8");
  BOOST_TEST(file.numbers<int64_t>("/grid/seed") == (std::vector<int64_t>{11, 22}));

  BOOST_TEST(file.numbers<int64_t>("/trials/trial") == done_trials);
  BOOST_TEST(file.numbers<int32_t>("/trials/model_idx") ==
             (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 1}));
  BOOST_TEST(file.numbers<int32_t>("/trials/fraction_idx") ==
             (std::vector<int32_t>{0, 0, 2, 1, 0, 2, 2}));
  BOOST_TEST(file.strings("/trials/model") ==
             (std::vector<std::string>{"tiny-a", "tiny-a", "tiny-a", "tiny-a", "tiny-b", "tiny-b",
                                       "tiny-b"}));
  BOOST_TEST(file.strings("/trials/strategy")[3] == strategies[2]);
  // trial 4: count=8 of 100 in-scope parameters.
  BOOST_TEST(file.numbers<int64_t>("/trials/k")[2] == 8);
  BOOST_TEST(file.numbers<double>("/trials/fraction")[2] == 0.08);
  check_same_or_both_nan(file.numbers<double>("/trials/mean_nll"),
                         {2.5, 2.625, not_a_number, 2.875, 3.0, 3.125, 3.25}, "/trials/mean_nll");
  BOOST_TEST(file.numbers<double>("/trials/mean_nll_finite")[2] == 4.0);
  BOOST_TEST(file.numbers<int32_t>("/trials/status") ==
             (std::vector<int32_t>{0, 0, 1, 0, 0, 0, 0}));
  BOOST_TEST(file.numeric_attribute<int32_t>("/trials/status", "flag_values") ==
             (std::vector<int32_t>{0, 1}));
  BOOST_TEST(file.text_attribute("/trials/status", "flag_meanings") == "ok nonfinite_outputs");
  BOOST_TEST(file.text_attribute("/trials/mean_nll", "units") == "nats");
  BOOST_TEST(file.text_attribute("/trials/wall_s", "units") == "s");
  BOOST_TEST(file.has_attribute("/trials/trial", "REFERENCE_LIST"), "trial is a scale in use");
  BOOST_TEST(file.has_attribute("/trials/mean_nll", "DIMENSION_LIST"), "attached to a scale");

  BOOST_TEST(file.extent("/baseline/greedy_ids") == (std::vector<hsize_t>{2, 5}));
  BOOST_TEST(file.numbers<int32_t>("/baseline/greedy_ids") ==
             (std::vector<int32_t>{5, 9, 2, -1, -1, 7, 7, 1, 3, 4}));
  BOOST_TEST(file.strings("/baseline/greedy_text")[0] == "Once upon a time \u2014 \u00e9");
  BOOST_TEST(file.numbers<int64_t>("/baseline/greedy_length") == (std::vector<int64_t>{3, 5}));

  BOOST_TEST(file.strings("/tensors/name").size() == 6u);
  BOOST_TEST(file.strings("/tensors/shape")[2] == "52");
  BOOST_TEST(file.numbers<int64_t>("/tensors/offset") ==
             (std::vector<int64_t>{0, 32, 48, 0, 20, 36}));

  BOOST_TEST(file.numbers<int64_t>("/sites/trial") == expected_site_trials);
  BOOST_TEST(file.numbers<int64_t>("/sites/site_rank") == expected_site_ranks);
  BOOST_TEST(file.strings("/sites/tensor") == expected_site_tensors);
  BOOST_TEST(file.numbers<int64_t>("/sites/index_in_tensor") == expected_index_in_tensor);
  check_same_or_both_nan(file.numbers<float>("/sites/new_value"),
                         {-0.5f, Sweep::not_a_number_float, 2.0f, 0.0f, 1.0f}, "/sites/new_value");
}

// The /trials group lists its columns (name, type, unit, meaning) and each dataset agrees: the
// names are the datasets in creation order, long_name is the meaning, units the unit.
BOOST_AUTO_TEST_CASE(trials_group_lists_every_column_with_its_unit_and_meaning) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);

  const ResultsReader file(path);
  const std::vector<std::string> names = file.text_array_attribute("/trials", "column_names");
  const std::vector<std::string> types = file.text_array_attribute("/trials", "column_types");
  const std::vector<std::string> units = file.text_array_attribute("/trials", "column_units");
  const std::vector<std::string> meanings =
      file.text_array_attribute("/trials", "column_long_names");
  BOOST_TEST(names == file.datasets_in_creation_order("/trials"));
  BOOST_TEST_REQUIRE(types.size() == names.size());
  BOOST_TEST_REQUIRE(units.size() == names.size());
  BOOST_TEST_REQUIRE(meanings.size() == names.size());
  for (size_t c = 0; c < names.size(); ++c) {
    const std::string dataset = "/trials/" + names[c];
    BOOST_TEST(types[c] == file.type_word(dataset), dataset);
    BOOST_TEST(file.text_attribute(dataset, "long_name") == meanings[c], dataset);
    BOOST_TEST(file.has_attribute(dataset, "units") == !units[c].empty(), dataset);
    if (!units[c].empty()) BOOST_TEST(file.text_attribute(dataset, "units") == units[c], dataset);
  }
  const auto at = [&](const std::string& name) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  BOOST_TEST_REQUIRE(at("sdc_rate") < names.size());
  BOOST_TEST(units[at("mean_kl")] == "nats");
  BOOST_TEST(types[at("stored_dtype")] == "str");
  BOOST_TEST(meanings[at("status")] == "trial status");
}

BOOST_AUTO_TEST_CASE(trials_table_is_a_compound_copy_of_the_trials) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);

  // Read two fields by name into a record of our own layout.
  struct Record {
    int64_t trial;
    double mean_nll;
  };
  const ResultsReader file(path);
  const Id record_type(H5Tcreate(H5T_COMPOUND, sizeof(Record)), H5Tclose);
  H5Tinsert(record_type.get(), "trial", HOFFSET(Record, trial), H5T_NATIVE_INT64);
  H5Tinsert(record_type.get(), "mean_nll", HOFFSET(Record, mean_nll), H5T_NATIVE_DOUBLE);
  const Id table(H5Dopen2(file.file.get(), "/trials_table", H5P_DEFAULT), H5Dclose);
  std::vector<Record> records(done_trials.size());  // (n_rows)
  BOOST_TEST_REQUIRE(
      H5Dread(table.get(), record_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, records.data()) >= 0);
  for (size_t i = 0; i < records.size(); ++i) {
    BOOST_TEST(records[i].trial == done_trials[i]);
    BOOST_TEST(std::isnan(records[i].mean_nll) == (i == nonfinite_row));
  }
  BOOST_TEST(records[1].mean_nll == 2.625);
}

// read_results (fracsweep merge) gives back what write_results wrote: rows bit for bit, sites,
// models, tensors and provenance.
BOOST_AUTO_TEST_CASE(read_results_returns_what_was_written) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);
  const fracsweep::StoredResults stored = fracsweep::read_results(path);
  BOOST_TEST(stored.job_text == sweep.job.text);
  BOOST_TEST(stored.job_name == sweep.job.name);
  BOOST_TEST(stored.n_trials == 30);
  BOOST_TEST_REQUIRE(stored.rows.size() == sweep.content.rows.size());
  for (size_t i = 0; i < stored.rows.size(); ++i) {
    // TrialRow has no padding holes that differ: compare every byte.
    BOOST_TEST(std::memcmp(&stored.rows[i], &sweep.content.rows[i], sizeof(TrialRow)) == 0,
               "row " << i);
  }
  BOOST_TEST_REQUIRE(stored.sites.size() == 2u);
  BOOST_TEST(stored.sites[0].trial == 4);
  BOOST_TEST(stored.sites[1].sites.size() == 2u);
  BOOST_TEST(stored.sites[1].sites[0].offset == 59);
  BOOST_TEST(std::isnan(stored.sites[0].sites[1].new_value));
  BOOST_TEST_REQUIRE(stored.models.size() == 2u);
  const ModelSummary& model = stored.models[1];
  const ModelSummary& written = sweep.content.models[1];
  BOOST_TEST(model.name == written.name);
  BOOST_TEST(model.n_parameters == written.n_parameters);
  BOOST_TEST(model.baseline.greedy_ids == written.baseline.greedy_ids);
  BOOST_TEST(model.baseline.metrics.mean_nll == written.baseline.metrics.mean_nll);
  BOOST_TEST(model.greedy_text == written.greedy_text);
  BOOST_TEST_REQUIRE(model.tensors.size() == written.tensors.size());
  BOOST_TEST(model.tensors[1].shape == written.tensors[1].shape);
  BOOST_TEST(model.tensors[2].offset == written.tensors[2].offset);
  BOOST_TEST((model.tensors[2].role == written.tensors[2].role));
  BOOST_TEST((model.tensors[0].role == written.tensors[0].role));
  const Provenance& provenance = stored.provenance;
  BOOST_TEST(provenance.shard_index == 1);
  BOOST_TEST(provenance.shard_count == 3);
  BOOST_TEST(provenance.resume_count == 1);
  BOOST_TEST(provenance.sessions == sweep.content.provenance.sessions);
  BOOST_TEST(provenance.hostnames == (std::vector<std::string>{"node1", "node2"}));
  BOOST_TEST(provenance.job_sha256 == std::string(64, 'a'));
}

BOOST_AUTO_TEST_CASE(read_results_refuses_other_files) {
  const ScratchDirectory scratch;
  const std::string path = scratch.file("junk.h5");
  std::ofstream(path) << "not hdf5";
  try {
    fracsweep::read_results(path);
    BOOST_FAIL("a text file was read as results");
  } catch (const fracsweep::InputError& e) {
    BOOST_TEST(message_contains(e, path));
    BOOST_TEST(message_contains(e, "cannot open as an HDF5 file"));
  }
}

BOOST_AUTO_TEST_CASE(python_readers_open_the_file) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);
  BOOST_TEST(run_python_readers(path, expected_json(sweep.content), scratch) == 0);
}

BOOST_AUTO_TEST_CASE(file_without_trials_or_sites_opens_in_every_reader) {
  const ScratchDirectory scratch;
  Sweep sweep;
  sweep.content.rows.clear();
  sweep.content.sites.clear();
  for (ModelSummary& summary : sweep.content.models) summary.baseline.greedy_ids.clear();
  const std::string path = scratch.file("empty.h5");
  write_results(path, sweep.content, false);

  const ResultsReader file(path);
  BOOST_TEST(file.numeric_attribute<int64_t>("/", "n_trials_done") == std::vector<int64_t>{0});
  BOOST_TEST(file.extent("/trials/mean_nll") == std::vector<hsize_t>{0});
  BOOST_TEST(file.extent("/baseline/greedy_ids") == (std::vector<hsize_t>{2, 0}));
  BOOST_TEST(!file.exists("/sites"));
  BOOST_TEST(run_python_readers(path, expected_json(sweep.content), scratch) == 0);
}

BOOST_AUTO_TEST_CASE(existing_file_is_kept_byte_for_byte_without_force) {
  const ScratchDirectory scratch;
  Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  write_results(path, sweep.content, false);
  const std::string before = file_bytes(path);

  sweep.content.rows.pop_back();
  BOOST_CHECK_EXCEPTION(
      write_results(path, sweep.content, false), InputError, [&](const InputError& error) {
        return message_contains(error, path) && message_contains(error, "--force");
      });
  BOOST_TEST(file_bytes(path) == before);
  BOOST_TEST(scratch.entries() == std::vector<std::string>{"demo.h5"});

  write_results(path, sweep.content, true);
  BOOST_TEST(ResultsReader(path).numeric_attribute<int64_t>("/", "n_trials_done") ==
             std::vector<int64_t>{6});
  BOOST_TEST(scratch.entries() == std::vector<std::string>{"demo.h5"});
}

BOOST_AUTO_TEST_CASE(failure_while_writing_removes_the_temporary_file) {
  const ScratchDirectory scratch;
  Sweep sweep;
  sweep.content.sites[1].sites[0].offset = 60;  // past tiny-b's last parameter
  const std::string path = scratch.file("demo.h5");
  BOOST_CHECK_EXCEPTION(
      write_results(path, sweep.content, false), RunError, [](const RunError& error) {
        return message_contains(error, "offset 60") && message_contains(error, "tiny-b");
      });
  BOOST_TEST(scratch.entries().empty(), "neither the file nor its temporary exists");
}

BOOST_AUTO_TEST_CASE(hdf5_failure_names_the_file_and_the_call) {
  const ScratchDirectory scratch;
  const Sweep sweep;
  const std::string path = scratch.file("demo.h5");
  // A directory where the temporary file should go makes H5Fcreate fail.
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  fs::create_directory(temporary);
  BOOST_CHECK_EXCEPTION(
      write_results(path, sweep.content, false), RunError, [&](const RunError& error) {
        return message_contains(error, temporary) && message_contains(error, "H5Fcreate failed");
      });
  BOOST_TEST(fs::is_directory(temporary), "what was there before is left alone");
  BOOST_TEST(!fs::exists(path));
}

BOOST_AUTO_TEST_CASE(output_path_checks) {
  const ScratchDirectory scratch;
  const std::string existing = scratch.file("old.h5");
  std::ofstream(existing) << "x";
  BOOST_CHECK_THROW(check_output_path(existing, false), InputError);
  BOOST_CHECK_NO_THROW(check_output_path(existing, true));
  BOOST_CHECK_NO_THROW(check_output_path(scratch.file("new.h5"), false));
  BOOST_CHECK_THROW(check_output_path(scratch.path.string(), true), InputError);  // a directory
  BOOST_CHECK_THROW(check_output_path(scratch.file("missing/new.h5"), true), InputError);
  BOOST_CHECK_THROW(check_output_path(existing + "/new.h5", true), InputError);  // not a dir
  BOOST_CHECK_THROW(check_output_path("", true), InputError);
  if (::geteuid() != 0) {  // root writes anywhere
    const fs::path locked = scratch.path / "locked";
    fs::create_directory(locked);
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
    BOOST_CHECK_THROW(check_output_path((locked / "new.h5").string(), false), InputError);
    fs::permissions(locked, fs::perms::owner_all);
  }
}

// ------------------------------------------------------------------ hostile files (read_results)
// Each case edits a file write_results wrote, with the HDF5 C API, the way a damaged or forged
// file could differ; read_results must refuse it with InputError naming the file, the object and
// what was expected (fuzz/fuzz_results.cpp explores the same edits at random).

namespace {

int edited_files = 0;  // names each edited file apart

// The sweep's file in `scratch`, edited by `edit(file id)`.
template <typename Edit>
std::string edited_results(const ScratchDirectory& scratch, Edit&& edit) {
  const Sweep sweep;
  const std::string path = scratch.file("edited-" + std::to_string(++edited_files) + ".h5");
  write_results(path, sweep.content, false);
  const Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  edit(file.get());
  return path;
}

// Removes `name` when it exists.
void remove_link(hid_t file, const std::string& name) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) {
    BOOST_TEST_REQUIRE(H5Ldelete(file, name.c_str(), H5P_DEFAULT) >= 0);
  }
}

// Replaces dataset `name` with a chunked float64/int64/string dataset declaring `length`
// elements, none written: a few hundred bytes on disk whatever the length.
void replace_with_unwritten(hid_t file, const std::string& name, hsize_t length, hid_t type) {
  remove_link(file, name);
  const hsize_t unlimited = H5S_UNLIMITED, chunk = 16;
  const Id space(H5Screate_simple(1, &length, &unlimited), H5Sclose);
  const Id create(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(create.get(), 1, &chunk);
  const Id dataset(
      H5Dcreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, create.get(), H5P_DEFAULT),
      H5Dclose);
}

template <typename T>
void replace_with_values(hid_t file, const std::string& name, const std::vector<T>& values) {
  remove_link(file, name);
  const hsize_t length = values.size();
  const Id space(H5Screate_simple(1, &length, nullptr), H5Sclose);
  const Id dataset(H5Dcreate2(file, name.c_str(), native_type<T>(), space.get(), H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose);
  if (length > 0) {
    H5Dwrite(dataset.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  }
}

hid_t new_text_type() {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  return type;
}

void replace_with_strings(hid_t file, const std::string& name,
                          const std::vector<const char*>& values) {
  remove_link(file, name);
  const hsize_t length = values.size();
  const Id space(H5Screate_simple(1, &length, nullptr), H5Sclose);
  const Id type(new_text_type(), H5Tclose);
  const Id dataset(H5Dcreate2(file, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT),
                   H5Dclose);
  H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
}

// Sets one element of an existing int64/float64 dataset.
template <typename T>
void set_value(hid_t file, const std::string& name, hsize_t index, T value) {
  const Id dataset(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  const Id space(H5Dget_space(dataset.get()), H5Sclose);
  H5Sselect_elements(space.get(), H5S_SELECT_SET, 1, &index);
  const Id one(H5Screate(H5S_SCALAR), H5Sclose);
  BOOST_TEST_REQUIRE(
      H5Dwrite(dataset.get(), native_type<T>(), one.get(), space.get(), H5P_DEFAULT, &value) >= 0);
}

// read_results(path) throws InputError whose message holds the path and every part.
void expect_refused(const std::string& path, const std::vector<std::string>& parts) {
  try {
    fracsweep::read_results(path);
    BOOST_ERROR("the edited file was accepted");
  } catch (const InputError& error) {
    BOOST_TEST(message_contains(error, path), error.what());
    for (const std::string& part : parts) BOOST_TEST(message_contains(error, part), error.what());
  }
}

}  // namespace

// A tiny file declaring 10^12 elements is refused before anything is allocated (the reader
// used to size its buffer from the declared extent: an 8 TB allocation).
BOOST_AUTO_TEST_CASE(read_results_refuses_a_huge_declared_extent_before_reading) {
  const ScratchDirectory scratch;
  const std::string trials = edited_results(scratch, [](hid_t file) {
    replace_with_unwritten(file, "/trials/trial", 1'000'000'000'000, H5T_STD_I64LE);
  });
  BOOST_TEST(fs::file_size(trials) < 1'000'000u);
  expect_refused(trials, {"/trials/trial", "declares 1000000000000 elements", "stores 0 bytes"});
  const Id text(new_text_type(), H5Tclose);
  const std::string models = edited_results(scratch, [&](hid_t file) {
    replace_with_unwritten(file, "/grid/model", hsize_t{1} << 40, text.get());
  });
  expect_refused(models, {"/grid/model", "declares 1099511627776 elements"});
  const std::string column = edited_results(scratch, [](hid_t file) {
    replace_with_unwritten(file, "/trials/mean_nll", 1'000'000'000'000, H5T_IEEE_F64LE);
  });
  expect_refused(
      column, {"/trials/mean_nll", "has 1000000000000 values; expected 7", "like /trials/trial"});
}

BOOST_AUTO_TEST_CASE(read_results_names_the_expected_type_rank_and_length) {
  const ScratchDirectory scratch;
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  replace_with_strings(file, "/baseline/mean_nll", {"a", "b"});
                                }),
                 {"/baseline/mean_nll", "expected float64, found variable-length strings"});
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  replace_with_values<double>(file, "/grid/model_path", {1, 2});
                                }),
                 {"/grid/model_path", "expected variable-length strings, found float64"});
  expect_refused(
      edited_results(
          scratch, [](hid_t file) { replace_with_values<int64_t>(file, "/tensors/count", {16}); }),
      {"/tensors/count", "has 1 values; expected 6 like /tensors/name"});
  expect_refused(
      edited_results(
          scratch, [](hid_t file) { replace_with_values<int64_t>(file, "/sites/old_value", {1}); }),
      {"/sites/old_value", "expected float32, found int64"});
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  remove_link(file, "/tensors/shape");
                                  const Id group(H5Gcreate2(file, "/tensors/shape", H5P_DEFAULT,
                                                            H5P_DEFAULT, H5P_DEFAULT),
                                                 H5Gclose);
                                }),
                 {"/tensors/shape", "expected a dataset"});
}

// Root attributes must be one value of the expected kind (an array attribute used to be read
// into a single variable: a stack overflow).
BOOST_AUTO_TEST_CASE(read_results_refuses_attributes_of_another_shape_or_type) {
  const ScratchDirectory scratch;
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  H5Adelete(file, "n_trials");
                                  const hsize_t two = 2;
                                  const Id space(H5Screate_simple(1, &two, nullptr), H5Sclose);
                                  const Id attribute(
                                      H5Acreate2(file, "n_trials", H5T_STD_I64LE, space.get(),
                                                 H5P_DEFAULT, H5P_DEFAULT),
                                      H5Aclose);
                                  const int64_t values[2] = {30, 30};
                                  H5Awrite(attribute.get(), H5T_NATIVE_INT64, values);
                                }),
                 {"root attribute n_trials", "expected one int64", "found 2 values"});
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  H5Adelete(file, "job_text");
                                  const Id space(H5Screate(H5S_SCALAR), H5Sclose);
                                  const Id attribute(
                                      H5Acreate2(file, "job_text", H5T_STD_I32LE, space.get(),
                                                 H5P_DEFAULT, H5P_DEFAULT),
                                      H5Aclose);
                                }),
                 {"root attribute job_text", "expected one string, found int32"});
  expect_refused(edited_results(scratch, [](hid_t file) { H5Adelete(file, "schema_version"); }),
                 {"not a fracsweep results file"});
}

// Values that used to index outside the reader's buffers or throw std:: exceptions.
BOOST_AUTO_TEST_CASE(read_results_refuses_values_outside_their_range) {
  const ScratchDirectory scratch;
  expect_refused(
      edited_results(scratch,
                     [](hid_t file) { set_value<int64_t>(file, "/baseline/greedy_length", 1, 6); }),
      {"/baseline/greedy_length", "model 1 has 6 greedy tokens; expected 0..5"});
  expect_refused(
      edited_results(
          scratch, [](hid_t file) { set_value<int64_t>(file, "/baseline/greedy_length", 0, -1); }),
      {"/baseline/greedy_length", "model 0 has -1"});
  for (const char* shape : {"4x", "x", "", "-4", "99999999999999999999", "4 x 4"}) {
    if (std::string(shape).empty()) continue;  // "" is a scalar's shape: valid
    expect_refused(
        edited_results(scratch,
                       [&](hid_t file) {
                         replace_with_strings(file, "/tensors/shape",
                                              {"8x4", shape, "88", "5x4", "4x4", "40"});
                       }),
        {"/tensors/shape", "tensor 1 ('layers.0.wq') has shape '" + std::string(shape) + "'"});
  }
  expect_refused(
      edited_results(scratch,
                     [](hid_t file) { set_value<int32_t>(file, "/tensors/model_idx", 2, 7); }),
      {"/tensors/model_idx", "belongs to model 7"});
  expect_refused(
      edited_results(scratch, [](hid_t file) { set_value<int64_t>(file, "/sites/trial", 4, 30); }),
      {"/sites/trial", "is trial 30; expected 0..30 - 1"});
  expect_refused(
      edited_results(scratch, [](hid_t file) { set_value<int64_t>(file, "/trials/trial", 1, 0); }),
      {"/trials/trial", "expected strictly ascending"});
  expect_refused(
      edited_results(scratch,
                     [](hid_t file) { set_value<int32_t>(file, "/trials/model_idx", 0, 2); }),
      {"/trials", "model_idx 2"});
  expect_refused(edited_results(scratch,
                                [](hid_t file) {
                                  H5Adelete(file, "shard_count");
                                  const Id space(H5Screate(H5S_SCALAR), H5Sclose);
                                  const Id attribute(
                                      H5Acreate2(file, "shard_count", H5T_STD_I64LE, space.get(),
                                                 H5P_DEFAULT, H5P_DEFAULT),
                                      H5Aclose);
                                  const int64_t zero = 0;
                                  H5Awrite(attribute.get(), H5T_NATIVE_INT64, &zero);
                                }),
                 {"shard_index, shard_count", "shard 1 of 0"});
}

// More probe kinds than the per-trial metrics have room for (used to write past the array).
BOOST_AUTO_TEST_CASE(read_results_refuses_too_many_probe_kinds) {
  const ScratchDirectory scratch;
  const std::string path = edited_results(scratch, [](hid_t file) {
    replace_with_strings(file, "/grid/probe_kind", {"a", "b", "c", "d", "e", "f", "g", "h", "i"});
  });
  expect_refused(path, {"/grid/probe_kind", "lists 9 probe kinds; at most 8"});
}
