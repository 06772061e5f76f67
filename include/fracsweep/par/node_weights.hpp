#pragma once
// One copy of the unperturbed model weights per node. The node's first rank converts every
// model's weights into a node-local file (under /dev/shm, or $TMPDIR when /dev/shm has too
// little room); every rank of the node then maps the file copy-on-write (WeightBuffer's
// file_private), and the file is unlinked as soon as all of them have opened it, so nothing is
// left behind once the run is past that point. A trial's writes copy only the pages they touch
// into its own rank; ModelSession drops those copies after the bitwise restore.
//
// Files are named fracsweep-weights-<batch job id>-<pid>-<model index>.f32; a leftover of a
// process that no longer exists on this node (one killed while converting) is removed by the
// next run's staging.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/model/weight_buffer.hpp"

namespace fracsweep {

enum class ShareWeights { automatic, off };

// What the node layout will be: where weights live and how many ranks share them.
struct NodeLayout {
  int rank_on_node = 0;
  int ranks_on_node = 1;
  int node_count = 1;
  bool shared = false;  // weights staged in a node file and mapped by every rank of the node
};

// Collective over `comm`: this rank's place on its node and the number of nodes.
NodeLayout node_layout(MPI_Comm comm);

// Collective over `comm`: refuses (InputError on every rank, exit 2) when the job's weights in
// the layout `share` gives cannot fit a node's available memory (node_memory.hpp), before any
// values are read. Each node's first rank checks its own node.
void check_node_memory(MPI_Comm comm, const JobConfig& job, ShareWeights share);

class NodeWeights : public WeightsSource {
 public:
  // Collective over `comm`. With `share` automatic, more than one rank on a node and at least one
  // model in a format that can be mapped (llama2.c, GGUF, Hugging Face; sequential classifiers
  // are small and stay private), stages the job's models; otherwise every model stays in private
  // memory. A failure on any rank (bad model file, no room for the file) throws PhaseFailure on
  // every rank, the converting rank's carrying the message, and leaves no file behind.
  NodeWeights(MPI_Comm comm, const JobConfig& job, ShareWeights share);

  ProvidedValues values_for(const std::string& model_path, size_t n_values) const override;
  const NodeLayout& layout() const { return layout_; }
  // "shared by 2 ranks of the node (/dev/shm)" or "private to each rank (...)".
  const std::string& description() const { return description_; }

 private:
  struct StagedModel {
    std::string model_path;  // as the loader reports it (Model::path)
    size_t n_values = 0;
    std::string file;  // node-local file name (already unlinked once staging returns)
    FileDescriptor fd;
  };
  NodeLayout layout_;
  std::string description_;
  std::vector<StagedModel> staged_;
};

// The directory for node files: /dev/shm when its free space holds `bytes` (with a margin),
// else $TMPDIR (or /tmp). `reason` receives why (for the log).
std::string node_file_directory(uint64_t bytes, std::string& reason);

// Removes files named fracsweep-weights-* in `directory` whose process (the pid in the name)
// no longer exists on this node; returns how many.
int remove_stale_node_files(const std::string& directory);

}  // namespace fracsweep
