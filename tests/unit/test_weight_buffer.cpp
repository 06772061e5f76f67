// WeightBuffer (model/weight_buffer.hpp): private memory, and copy-on-write mappings of one
// node file as two ranks see it (two mappings in one process behave the same: MAP_PRIVATE
// copies are per mapping). Also the parallel load helpers (widening, per-tensor statistics)
// against plain serial loops, and the removal of node files left by ended processes.
#define BOOST_TEST_MODULE weight_buffer
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fracsweep/model/model.hpp"
#include "fracsweep/model/stored_type.hpp"
#include "fracsweep/model/weight_buffer.hpp"
#include "fracsweep/par/node_weights.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;
using fs::WeightBuffer;

namespace {

constexpr size_t page_floats = 4096 / sizeof(float);

// A node file of `n` floats with value i at offset i, and a descriptor open on it.
struct NodeFile {
  explicit NodeFile(size_t n) : path(dir.file("weights.f32")) {
    std::vector<float> values(n);  // (n)
    for (size_t i = 0; i < n; ++i) values[i] = static_cast<float>(i);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(values.data()),
               static_cast<std::streamsize>(n * sizeof(float)));
    fd = fs::FileDescriptor(::open(path.c_str(), O_RDWR));
    BOOST_TEST_REQUIRE(fd.valid());
  }
  fs::test::TempDir dir;
  std::string path;
  fs::FileDescriptor fd;
};

// A field of /proc/self/smaps_rollup in KiB ("Anonymous", "Pss", ...).
long rollup_kib(const std::string& field) {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  long value = 0;
  std::string unit;
  while (in >> key) {
    if (key == field + ":") {
      in >> value;
      return value;
    }
    std::getline(in, unit);
  }
  BOOST_FAIL("no field " + field + " in /proc/self/smaps_rollup");
  return 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(private_writes_are_invisible_to_another_mapping_and_to_the_file) {
  const size_t n = 8 * page_floats;
  NodeFile file(n);
  WeightBuffer rank_a =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_private);
  const WeightBuffer rank_b =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_private);
  rank_a[3 * page_floats + 5] = -1.5f;
  BOOST_TEST(rank_a[3 * page_floats + 5] == -1.5f);
  BOOST_TEST(rank_b[3 * page_floats + 5] == static_cast<float>(3 * page_floats + 5));
  const WeightBuffer fresh =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_private);
  BOOST_TEST(fresh[3 * page_floats + 5] == static_cast<float>(3 * page_floats + 5));
}

BOOST_AUTO_TEST_CASE(restore_and_release_give_the_shared_page_back) {
  const size_t n = 8 * page_floats + 100;  // the last page is partial
  NodeFile file(n);
  WeightBuffer values =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_private);
  const std::vector<int64_t> sites = {7, int64_t(2 * page_floats), int64_t(2 * page_floats + 1),
                                      int64_t(n - 1)};
  for (const int64_t s : sites) values[static_cast<size_t>(s)] = std::nanf("");
  for (const int64_t s : sites) values[static_cast<size_t>(s)] = static_cast<float>(s);  // restore
  std::vector<int64_t> offsets = sites;
  values.release_pages(offsets, [](int64_t offset) { return offset; });
  for (size_t i = 0; i < n; ++i) BOOST_REQUIRE(values[i] == static_cast<float>(i));

  // Released pages read the file again: a write through a shared mapping now shows through,
  // which a private copy would hide. Page 5 was never written, so it shows through as well;
  // page 4 gets a private copy that is not released, and keeps its own value.
  values[4 * page_floats] = 42.0f;
  WeightBuffer writer =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_shared);
  writer[7] = 1000.0f;
  writer[4 * page_floats] = 2000.0f;
  writer[n - 1] = 3000.0f;
  BOOST_TEST(values[7] == 1000.0f);
  BOOST_TEST(values[n - 1] == 3000.0f);
  BOOST_TEST(values[4 * page_floats] == 42.0f);
}

BOOST_AUTO_TEST_CASE(release_returns_the_private_copies_to_the_system) {
  const size_t pages = 4096;  // 16 MiB
  const size_t n = pages * page_floats;
  NodeFile file(n);
  WeightBuffer values =
      WeightBuffer::map_file(file.fd, file.path, n, WeightBuffer::Memory::file_private);
  double sum = 0;
  for (size_t p = 0; p < pages; ++p) sum += values[p * page_floats];  // map every page shared
  BOOST_TEST(sum > 0);
  const long anonymous_before = rollup_kib("Anonymous");
  std::vector<int64_t> offsets;
  for (size_t p = 0; p < pages; ++p) {
    const size_t at = p * page_floats + 3;
    // Through volatile: a store of the value just loaded is otherwise no store at all.
    volatile float* const site = values.data() + at;
    const float old = *site;
    *site = old + 1.0f;  // a private copy of the page
    *site = old;
    offsets.push_back(static_cast<int64_t>(at));
  }
  const long anonymous_written = rollup_kib("Anonymous");
  BOOST_TEST(anonymous_written - anonymous_before >= static_cast<long>(pages * 4) * 9 / 10);
  values.release_pages(offsets, [](int64_t offset) { return offset; });
  const long anonymous_released = rollup_kib("Anonymous");
  BOOST_TEST(anonymous_released - anonymous_before <= static_cast<long>(pages * 4) / 10);
  for (size_t i = 0; i < n; i += 997) BOOST_REQUIRE(values[i] == static_cast<float>(i));
}

BOOST_AUTO_TEST_CASE(private_memory_behaves_like_a_vector) {
  WeightBuffer values(3);
  BOOST_TEST((values.memory() == WeightBuffer::Memory::private_memory));
  values[0] = 1.0f;
  values[1] = 2.0f;
  values[2] = 3.0f;
  values.resize(5);  // new values are zero, as with std::vector
  BOOST_TEST((values == std::vector<float>{1.0f, 2.0f, 3.0f, 0.0f, 0.0f}));
  values.push_back(6.0f);
  values.insert(values.end(), values.begin(), values.begin() + 2);  // from itself
  BOOST_TEST((values == std::vector<float>{1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 6.0f, 1.0f, 2.0f}));
  std::vector<int64_t> offsets = {0};
  // Nothing to release in private memory.
  values.release_pages(offsets, [](int64_t offset) { return offset; });
  BOOST_TEST(values[0] == 1.0f);
  const WeightBuffer copy = values;
  values[0] = 9.0f;
  BOOST_TEST(copy[0] == 1.0f);
  WeightBuffer moved = std::move(values);
  BOOST_TEST(moved[0] == 9.0f);
  BOOST_TEST(values.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
}

BOOST_AUTO_TEST_CASE(a_copy_of_a_mapping_is_private_memory) {
  NodeFile file(page_floats);
  const WeightBuffer mapped =
      WeightBuffer::map_file(file.fd, file.path, page_floats, WeightBuffer::Memory::file_private);
  WeightBuffer copy = mapped;
  BOOST_TEST((copy.memory() == WeightBuffer::Memory::private_memory));
  BOOST_TEST((copy == mapped));
  WeightBuffer still_mapped =
      WeightBuffer::map_file(file.fd, file.path, page_floats, WeightBuffer::Memory::file_private);
  BOOST_CHECK_THROW(still_mapped.push_back(1.0f), fs::RunError);
}

BOOST_AUTO_TEST_CASE(parallel_widening_equals_the_serial_loop_for_every_pattern) {
  std::vector<uint16_t> patterns(1 << 16);  // (65536) every 16-bit pattern
  for (size_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<uint16_t>(i);
  const auto* bytes = reinterpret_cast<const unsigned char*>(patterns.data());
  for (const bool f16 : {true, false}) {
    std::vector<float> parallel(patterns.size());  // (65536)
    fs::widen_16bit(bytes, static_cast<int64_t>(patterns.size()), parallel.data(),
                    fs::stored16_widener(f16));
    const fs::StoredType type = f16 ? fs::StoredType::f16 : fs::StoredType::bf16;
    for (size_t i = 0; i < patterns.size(); ++i) {
      BOOST_REQUIRE(std::bit_cast<uint32_t>(parallel[i]) ==
                    std::bit_cast<uint32_t>(fs::stored16_to_float(type, patterns[i])));
    }
  }
  std::vector<char> source(10'000'019), copy(source.size());  // not a multiple of the block
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<char>(i * 31);
  fs::copy_bytes(source.data(), source.size(), copy.data());
  BOOST_TEST((copy == source));
}

BOOST_AUTO_TEST_CASE(parallel_statistics_equal_the_serial_pass) {
  fs::Model model;
  std::mt19937 generator(5);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (const int64_t count : {1000003, 17, 1, 65536, 3}) {
    fs::append_tensor(model.tensors, "t" + std::to_string(model.tensors.size()), {count});
    for (int64_t i = 0; i < count; ++i) model.values.push_back(normal(generator));
  }
  model.values[5] = std::numeric_limits<float>::infinity();  // left out
  model.values[6] = std::nanf("");
  const std::vector<fs::FiniteStats> stats = fs::finite_stats(model);
  BOOST_TEST_REQUIRE(stats.size() == model.tensors.size());
  for (size_t t = 0; t < stats.size(); ++t) {
    const fs::TensorInfo& info = model.tensors[t];
    double sum = 0, sum_sq = 0;
    int64_t finite = 0;
    float lo = std::numeric_limits<float>::max(), hi = -lo;
    for (int64_t i = 0; i < info.count; ++i) {
      const float w = model.values[static_cast<size_t>(info.offset + i)];
      if (!std::isfinite(w)) continue;
      lo = std::min(lo, w);
      hi = std::max(hi, w);
      sum += w;
      sum_sq += static_cast<double>(w) * w;
      ++finite;
    }
    const double mean = sum / static_cast<double>(finite);
    const double std = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(finite) - mean * mean));
    BOOST_TEST(stats[t].min == lo);
    BOOST_TEST(stats[t].max == hi);
    BOOST_TEST(std::bit_cast<uint64_t>(stats[t].std) == std::bit_cast<uint64_t>(std));
  }
}

BOOST_AUTO_TEST_CASE(stale_node_files_of_ended_processes_are_removed) {
  fs::test::TempDir dir;
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no longer exists
  const std::string dead = dir.file("fracsweep-weights-local-" + std::to_string(child) + "-0.f32");
  const std::string alive =
      dir.file("fracsweep-weights-4242-" + std::to_string(::getpid()) + "-1.f32");
  const std::string other = dir.file("unrelated-" + std::to_string(child) + "-0.f32");
  for (const std::string& path : {dead, alive, other}) std::ofstream(path) << "x";
  BOOST_TEST(fs::remove_stale_node_files(dir.path().string()) == 1);
  BOOST_TEST(!std::filesystem::exists(dead));
  BOOST_TEST(std::filesystem::exists(alive));
  BOOST_TEST(std::filesystem::exists(other));
}
