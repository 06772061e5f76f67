#pragma once
// How much memory a job needs on one node, and how much the node has: `fracsweep plan` prints
// both, and `plan` and `run` refuse a layout whose weights cannot fit before loading anything.
//
// Weights: with sharing (node_weights.hpp) every model of the job (reference and donors
// included) is held once per node, all at once; without it each rank holds the model it runs
// plus that model's reference and donors, so a node holds ranks x the largest such set.
// Per-rank working memory (activations, evaluator with its cached baseline, undo log) is what
// `plan` measures on sample trials; `run` checks the weights alone, a lower bound.
#include <cstdint>
#include <string>

#include "fracsweep/config/job.hpp"

namespace fracsweep {

struct NodeMemory {
  uint64_t shared_weights = 0;    // bytes once per node (sharing)
  uint64_t private_weights = 0;   // bytes per rank (no sharing)
  uint64_t per_rank_working = 0;  // bytes per rank besides the weights (0: not measured)
  int ranks_on_node = 1;

  uint64_t per_rank() const { return private_weights + per_rank_working; }
  uint64_t per_node() const {
    return shared_weights + per_rank() * static_cast<uint64_t>(ranks_on_node);
  }
};

// The weights of `job` for `ranks_on_node` ranks of one node, shared or not (checks the model
// files' headers, no values are read).
NodeMemory job_node_memory(const JobConfig& job, int ranks_on_node, bool shared);

// The memory this node can give the job: the lower of MemAvailable (/proc/meminfo) and the
// cgroup's limit minus its usage (v2 memory.max, v1 memory.limit_in_bytes), where one is set.
// `source` names which. FRACSWEEP_TEST_MEMORY_LIMIT_MIB (for tests only) lowers it further.
uint64_t node_memory_available(std::string& source);

// Throws InputError naming the job when `need` exceeds `available`: what the layout needs per
// node and per rank, what the node has, and what to change.
void check_fits_node(const JobConfig& job, const NodeMemory& need, uint64_t available,
                     const std::string& source, const std::string& command);

// This process's anonymous memory now (/proc/self/smaps_rollup), for measuring what a model
// session holds besides its weights.
uint64_t process_anonymous_bytes();

// "1.23 GiB", or "12.3 MiB" below 1 GiB.
std::string memory_text(uint64_t bytes);

}  // namespace fracsweep
