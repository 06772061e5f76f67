#include "fracsweep/par/node_weights.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "fracsweep/models/models.hpp"
#include "fracsweep/par/node_memory.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr const char* file_prefix = "fracsweep-weights-";

// A communicator freed on destruction.
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm) : comm_(comm) {}
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_;
};

// The ranks of `comm` that share this rank's memory (one node).
MPI_Comm split_node(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  return node;
}

std::string batch_job_label() {
  for (const char* name : {"SLURM_JOB_ID", "PBS_JOBID"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return value;
  }
  return "local";
}

// A file that is unlinked on destruction unless kept (the converting rank, until every rank of
// the node has opened it).
class UnlinkOnExit {
 public:
  explicit UnlinkOnExit(std::string path) : path_(std::move(path)) {}
  UnlinkOnExit(const UnlinkOnExit&) = delete;
  UnlinkOnExit& operator=(const UnlinkOnExit&) = delete;
  ~UnlinkOnExit() { ::unlink(path_.c_str()); }

 private:
  std::string path_;
};

// The writable source the converting rank hands the loader: the values go straight into the
// node file, reserved in full first so a full file system is an error here, not a SIGBUS later.
class FileFill : public WeightsSource {
 public:
  FileFill(const FileDescriptor& fd, std::string file) : fd_(fd), file_(std::move(file)) {}
  ProvidedValues values_for(const std::string&, size_t n_values) const override {
    const auto bytes = static_cast<off_t>(n_values * sizeof(float));
    const int error = bytes > 0 ? ::posix_fallocate(fd_.get(), 0, bytes) : 0;
    check_input(error == 0, [&] {
      return file_ + ": cannot reserve " + std::to_string(bytes) +
             " bytes for the node's copy of the model weights: " + std::strerror(error) +
             " (free space there, set TMPDIR to a larger node-local directory, or run with "
             "--share-weights off)";
    });
    return {WeightBuffer::map_file(fd_, file_, n_values, WeightBuffer::Memory::file_shared), false};
  }

 private:
  const FileDescriptor& fd_;
  std::string file_;
};

// Waits for every rank of `comm` without spinning (MPI's blocking collectives poll a core): the
// ranks waiting for their node's first rank sleep, leaving it the cores for its OpenMP threads.
void wait_quietly(MPI_Comm comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(comm, &request);
  int done = 0;
  while (MPI_Test(&request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Calls wait_quietly when the scope ends, by return or by exception.
struct WaitQuietlyOnExit {
  MPI_Comm comm;
  ~WaitQuietlyOnExit() { wait_quietly(comm); }
};

uint64_t free_bytes(const std::string& directory) {
  struct statvfs info {};
  if (::statvfs(directory.c_str(), &info) != 0) return 0;
  return static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string node_file_directory(uint64_t bytes, std::string& reason) {
  const uint64_t margin = uint64_t{64} << 20;  // leave room for other users of /dev/shm
  const uint64_t shm_free = free_bytes("/dev/shm");
  if (shm_free >= bytes + margin) {
    reason = "/dev/shm has " + std::to_string(shm_free >> 20) + " MiB free";
    return "/dev/shm";
  }
  const char* tmpdir = std::getenv("TMPDIR");
  const std::string fallback = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  reason = "/dev/shm has " + std::to_string(shm_free >> 20) + " MiB free, " +
           std::to_string((bytes + margin) >> 20) + " MiB needed; using " + fallback;
  return fallback;
}

int remove_stale_node_files(const std::string& directory) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory.c_str()), ::closedir);
  if (!dir) return 0;
  int removed = 0;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (!name.starts_with(file_prefix)) continue;
    // fracsweep-weights-<job>-<pid>-<model>.f32: the pid is the second field from the end.
    const size_t last_dash = name.rfind('-');
    if (last_dash == std::string::npos || last_dash == 0) continue;
    const size_t pid_dash = name.rfind('-', last_dash - 1);
    if (pid_dash == std::string::npos) continue;
    const std::string pid_text = name.substr(pid_dash + 1, last_dash - pid_dash - 1);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    if (::unlink((directory + "/" + name).c_str()) == 0) ++removed;
  }
  return removed;
}

NodeLayout node_layout(MPI_Comm comm) {
  NodeLayout layout;
  const Communicator node(split_node(comm));
  MPI_Comm_rank(node.get(), &layout.rank_on_node);
  MPI_Comm_size(node.get(), &layout.ranks_on_node);
  int leaders = layout.rank_on_node == 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &leaders, 1, MPI_INT, MPI_SUM, comm);
  layout.node_count = leaders;
  return layout;
}

void check_node_memory(MPI_Comm comm, const JobConfig& job, ShareWeights share) {
  const NodeLayout layout = node_layout(comm);
  run_collective_phase(comm, [&] {
    if (layout.rank_on_node != 0) return;
    const bool shared = share == ShareWeights::automatic && layout.ranks_on_node > 1;
    std::string source;
    const uint64_t available = node_memory_available(source);
    check_fits_node(job, job_node_memory(job, layout.ranks_on_node, shared), available, source,
                    "fracsweep run");
  });
}

NodeWeights::NodeWeights(MPI_Comm comm, const JobConfig& job, ShareWeights share)
    : layout_(node_layout(comm)) {
  int world_rank = 0;
  MPI_Comm_rank(comm, &world_rank);
  const Communicator node(split_node(comm));

  // The models to stage: every mappable format, each file once.
  std::vector<size_t> models;  // (n_staged) job model indices
  std::set<std::string> seen;
  for (size_t m = 0; m < job.models.size(); ++m) {
    if (job.models[m].format == ModelFormat::sequential) continue;
    if (seen.insert(job.models[m].path).second) models.push_back(m);
  }
  if (share == ShareWeights::off || layout_.ranks_on_node == 1 || models.empty()) {
    description_ = std::string("private to each rank (") +
                   (share == ShareWeights::off   ? "--share-weights off"
                    : layout_.ranks_on_node == 1 ? "one rank per node"
                                                 : "no model format to share") +
                   ")";
    return;
  }
  const bool leader = layout_.rank_on_node == 0;
  const bool announce = world_rank == 0;

  // Phase 1, the node's first rank alone: convert every model into its node file.
  std::vector<std::string> files(models.size());
  std::vector<std::unique_ptr<UnlinkOnExit>> unlink_guards;  // (n_staged) the leader's files
  run_collective_phase(comm, [&] {
    const WaitQuietlyOnExit arrive{comm};
    if (!leader) return;
    uint64_t bytes = 0;
    for (size_t m : models) {
      for (const TensorInfo& t : check_model(job, m)) bytes += static_cast<uint64_t>(t.count) * 4;
    }
    std::string reason;
    const std::string directory = node_file_directory(bytes, reason);
    const int removed = remove_stale_node_files(directory);
    if (announce) {
      std::fprintf(
          stderr, "[fracsweep] weights: one copy per node, %.2f GiB in %s (%s)%s\n",
          static_cast<double>(bytes) / (1 << 30), directory.c_str(), reason.c_str(),
          removed > 0
              ? (", removed " + std::to_string(removed) + " leftover file(s) of ended runs").c_str()
              : "");
    }
    for (size_t i = 0; i < models.size(); ++i) {
      const size_t m = models[i];
      files[i] = directory + "/" + file_prefix + batch_job_label() + "-" +
                 std::to_string(::getpid()) + "-" + std::to_string(m) + ".f32";
      FileDescriptor fd(::open(files[i].c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      check_input(fd.valid(), [&] {
        return files[i] +
               ": cannot create the node's copy of the model weights: " + std::strerror(errno);
      });
      unlink_guards.push_back(std::make_unique<UnlinkOnExit>(files[i]));
      const auto start = std::chrono::steady_clock::now();
      const Model model = load_model_weights(job, m, FileFill(fd, files[i]));
      if (announce) {
        std::fprintf(stderr, "[fracsweep] model '%s': converted into the node file in %.1f s\n",
                     job.models[m].name.c_str(), seconds_since(start));
      }
      staged_.push_back({model.path, model.values.size(), files[i], std::move(fd)});
    }
  });
  // Phase 2: every other rank of the node opens the files by the names the leader chose.
  for (size_t i = 0; i < models.size(); ++i) {
    std::string path_and_file[2] = {leader ? staged_[i].model_path : "", files[i]};
    for (std::string& text : path_and_file) {
      auto length = static_cast<int64_t>(text.size());
      MPI_Bcast(&length, 1, MPI_INT64_T, 0, node.get());
      text.resize(static_cast<size_t>(length));
      MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, 0, node.get());
    }
    uint64_t n_values = leader ? staged_[i].n_values : 0;
    MPI_Bcast(&n_values, 1, MPI_UINT64_T, 0, node.get());
    if (!leader) {
      staged_.push_back(
          {path_and_file[0], static_cast<size_t>(n_values), path_and_file[1], FileDescriptor()});
    }
  }
  run_collective_phase(comm, [&] {
    if (leader) return;
    for (StagedModel& staged : staged_) {
      staged.fd = FileDescriptor(::open(staged.file.c_str(), O_RDONLY | O_CLOEXEC));
      check_input(staged.fd.valid(), [&] {
        return staged.file +
               ": cannot open the node's copy of the model weights: " + std::strerror(errno);
      });
    }
  });
  // Every rank holds a descriptor: the names can go (the guards unlink them on the leader).
  MPI_Barrier(node.get());
  unlink_guards.clear();
  layout_.shared = true;
  const std::string& first_file = staged_.front().file;
  description_ = "one copy per node, shared by " + std::to_string(layout_.ranks_on_node) +
                 " ranks of the node (" + first_file.substr(0, first_file.rfind('/')) + ")";
}

ProvidedValues NodeWeights::values_for(const std::string& model_path, size_t n_values) const {
  for (const StagedModel& staged : staged_) {
    if (staged.model_path != model_path) continue;
    check_invariant(staged.n_values == n_values,
                    model_path + ": staged value count differs from the loader's");
    return {WeightBuffer::map_file(staged.fd, staged.file, n_values,
                                   WeightBuffer::Memory::file_private),
            true};
  }
  return private_weights().values_for(model_path, n_values);
}

}  // namespace fracsweep
