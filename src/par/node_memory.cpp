#include "fracsweep/par/node_memory.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>

#include "fracsweep/models/models.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

// A number from the first line of `path`, or nothing ("max", absent file).
bool read_number(const std::string& path, uint64_t& value) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  value = std::stoull(text);
  return true;
}

uint64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace

NodeMemory job_node_memory(const JobConfig& job, int ranks_on_node, bool shared) {
  NodeMemory memory;
  memory.ranks_on_node = ranks_on_node;
  std::vector<uint64_t> bytes(job.models.size());  // (n_models) float32 values
  for (size_t m = 0; m < job.models.size(); ++m) {
    for (const TensorInfo& t : check_model(job, m)) bytes[m] += static_cast<uint64_t>(t.count) * 4;
  }
  std::set<std::string> seen;
  for (size_t m = 0; m < job.models.size(); ++m) {
    const ModelSpec& spec = job.models[m];
    // Sequential classifiers stay private (node_weights.hpp); every other file once per node.
    if (shared && spec.format != ModelFormat::sequential) {
      if (seen.insert(spec.path).second) memory.shared_weights += bytes[m];
      continue;
    }
    // A rank running model m holds it, its reference and its delta donors.
    uint64_t held = bytes[m];
    std::set<size_t> extra;
    if (!spec.reference.empty()) extra.insert(static_cast<size_t>(job.model_index(spec.reference)));
    for (const StrategySpec& strategy : job.strategies) {
      if (strategy.kind == StrategyKind::delta && strategy.from_model != spec.name)
        extra.insert(static_cast<size_t>(job.model_index(strategy.from_model)));
    }
    for (size_t other : extra) {
      if (!shared || job.models[other].format == ModelFormat::sequential) held += bytes[other];
    }
    memory.private_weights = std::max(memory.private_weights, held);
  }
  return memory;
}

uint64_t node_memory_available(std::string& source) {
  uint64_t available = mem_available();
  source = "MemAvailable";
  uint64_t limit = 0, usage = 0;
  if ((read_number("/sys/fs/cgroup/memory.max", limit) &&
       read_number("/sys/fs/cgroup/memory.current", usage)) ||
      (read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes", limit) &&
       read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes", usage))) {
    const uint64_t left = limit > usage ? limit - usage : 0;
    if (left < available) {
      available = left;
      source = "cgroup memory limit";
    }
  }
  if (const char* test = std::getenv("FRACSWEEP_TEST_MEMORY_LIMIT_MIB")) {
    const uint64_t test_limit = std::strtoull(test, nullptr, 10) << 20;
    if (test_limit < available) {
      available = test_limit;
      source = "FRACSWEEP_TEST_MEMORY_LIMIT_MIB";
    }
  }
  return available;
}

uint64_t process_anonymous_bytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key, unit;
  uint64_t kib = 0;
  while (in >> key) {
    if (key == "Anonymous:" && in >> kib) return kib * 1024;
    std::getline(in, unit);
  }
  return 0;
}

std::string memory_text(uint64_t bytes) {
  char text[32];
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(text, sizeof text, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  } else {
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  }
  return text;
}

void check_fits_node(const JobConfig& job, const NodeMemory& need, uint64_t available,
                     const std::string& source, const std::string& command) {
  check_input(need.per_node() <= available, [&] {
    return in_file(job.path,
                   command + ": the job needs " + memory_text(need.per_node()) + " per node (" +
                       memory_text(need.shared_weights) + " of weights shared by the node + " +
                       std::to_string(need.ranks_on_node) + " ranks x " +
                       memory_text(need.per_rank()) +
                       (need.per_rank_working == 0 ? " of weights" : "") + "), more than the " +
                       memory_text(available) + " this node has (" + source +
                       "); run fewer ranks per node, share the weights (--share-weights auto "
                       "with several ranks on a node), or use a node with more memory");
  });
}

}  // namespace fracsweep
