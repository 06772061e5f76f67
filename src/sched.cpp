#include "fracsweep/sched.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "fracsweep/error.hpp"

namespace fracsweep {

namespace {

constexpr int tag_result = 1;  // a TrialRow followed by its SiteRecords, as bytes
constexpr int tag_done = 2;    // a rank has no more trials

void check_mpi(int code, const char* what) {
  check_invariant(code == MPI_SUCCESS, std::string("MPI call failed: ") + what);
}

// RAII for the shared trial counter: an int64 in a window on rank 0, bumped atomically.
class SharedCounter {
 public:
  explicit SharedCounter(MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    const MPI_Aint bytes = rank == 0 ? static_cast<MPI_Aint>(sizeof(int64_t)) : 0;
    check_mpi(MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, comm, &base_, &window_),
              "MPI_Win_allocate");
    if (rank == 0) *base_ = 0;
    check_mpi(MPI_Barrier(comm), "MPI_Barrier");
    check_mpi(MPI_Win_lock_all(0, window_), "MPI_Win_lock_all");
  }
  ~SharedCounter() {
    MPI_Win_unlock_all(window_);
    MPI_Win_free(&window_);
  }
  SharedCounter(const SharedCounter&) = delete;
  SharedCounter& operator=(const SharedCounter&) = delete;

  // Atomically returns the counter and adds `amount` to it.
  int64_t fetch_add(int64_t amount) {
    int64_t previous = 0;
    check_mpi(MPI_Fetch_and_op(&amount, &previous, MPI_INT64_T, 0, 0, MPI_SUM, window_),
              "MPI_Fetch_and_op");
    check_mpi(MPI_Win_flush(0, window_), "MPI_Win_flush");
    return previous;
  }

 private:
  int64_t* base_ = nullptr;
  MPI_Win window_ = MPI_WIN_NULL;
};

std::vector<char> pack(const TrialResult& result) {
  std::vector<char> bytes(sizeof(TrialRow) + result.sites.size() * sizeof(SiteRecord));
  std::memcpy(bytes.data(), &result.row, sizeof(TrialRow));
  if (!result.sites.empty()) {
    std::memcpy(bytes.data() + sizeof(TrialRow), result.sites.data(),
                result.sites.size() * sizeof(SiteRecord));
  }
  return bytes;
}

TrialResult unpack(const std::vector<char>& bytes) {
  check_invariant(bytes.size() >= sizeof(TrialRow) &&
                      (bytes.size() - sizeof(TrialRow)) % sizeof(SiteRecord) == 0,
                  "malformed result message");
  TrialResult result;
  std::memcpy(&result.row, bytes.data(), sizeof(TrialRow));
  result.sites.resize((bytes.size() - sizeof(TrialRow)) / sizeof(SiteRecord));
  if (!result.sites.empty()) {
    std::memcpy(result.sites.data(), bytes.data() + sizeof(TrialRow),
                result.sites.size() * sizeof(SiteRecord));
  }
  return result;
}

// Rank 0's side: receives results and done-messages from the other ranks.
class Collector {
 public:
  Collector(MPI_Comm comm, int n_ranks) : comm_(comm), waiting_for_(n_ranks - 1) {}

  // Receives whatever has arrived; with `block`, waits for at least one message.
  void poll(std::vector<TrialResult>& results, bool block) {
    for (;;) {
      MPI_Status status;
      int arrived = 0;
      if (block) {
        check_mpi(MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &status), "MPI_Probe");
        arrived = 1;
        block = false;
      } else {
        check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &arrived, &status), "MPI_Iprobe");
      }
      if (!arrived) return;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      std::vector<char> bytes(static_cast<size_t>(count));
      check_mpi(MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm_,
                         MPI_STATUS_IGNORE),
                "MPI_Recv");
      if (status.MPI_TAG == tag_done) {
        --waiting_for_;
      } else {
        results.push_back(unpack(bytes));
      }
    }
  }
  bool others_finished() const { return waiting_for_ == 0; }

 private:
  MPI_Comm comm_;
  int waiting_for_;
};

}  // namespace

void run_collective_phase(MPI_Comm comm, const std::function<void()>& phase) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string message;
  int exit_code = exit_ok;
  try {
    phase();
  } catch (const InputError& e) {
    message = e.what();
    exit_code = exit_bad_input;
  } catch (const std::exception& e) {
    message = e.what();
    exit_code = exit_internal;
  }
  const int mine = exit_code != exit_ok ? rank : std::numeric_limits<int>::max();
  int first_failed = 0;
  check_mpi(MPI_Allreduce(&mine, &first_failed, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (first_failed == std::numeric_limits<int>::max()) return;
  check_mpi(MPI_Bcast(&exit_code, 1, MPI_INT, first_failed, comm), "MPI_Bcast");
  throw PhaseFailure(message, exit_code, rank == first_failed);
}

int64_t automatic_chunk(int64_t n_trials, int n_ranks) {
  return std::clamp<int64_t>(n_trials / (static_cast<int64_t>(n_ranks) * 16), 1, 32);
}

std::vector<TrialResult> run_distributed(MPI_Comm comm, int64_t n_trials,
                                         const ScheduleOptions& options,
                                         const std::function<TrialResult(int64_t)>& run_trial,
                                         Progress& progress) {
  int rank = 0, n_ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &n_ranks);
  const int64_t chunk = options.chunk > 0 ? options.chunk : automatic_chunk(n_trials, n_ranks);

  std::vector<TrialResult> results;  // rank 0: every result; other ranks: none kept
  Collector collector(comm, n_ranks);
  auto deliver = [&](TrialResult result) {
    if (rank == 0) {
      results.push_back(std::move(result));
      collector.poll(results, false);
      progress.update(static_cast<int64_t>(results.size()));
    } else {
      const std::vector<char> bytes = pack(result);
      check_mpi(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, 0, tag_result, comm),
                "MPI_Send");
    }
  };

  // The counter window outlives the collection below: freeing it is collective, and a rank
  // still sending results must not meet rank 0 inside MPI_Win_free.
  std::optional<SharedCounter> counter;
  if (options.dynamic) {
    counter.emplace(comm);
    for (int64_t first; (first = counter->fetch_add(chunk)) < n_trials;) {
      for (int64_t id = first; id < std::min(first + chunk, n_trials); ++id) deliver(run_trial(id));
    }
  } else {  // static: one contiguous block per rank
    const int64_t first = n_trials * rank / n_ranks, last = n_trials * (rank + 1) / n_ranks;
    for (int64_t id = first; id < last; ++id) deliver(run_trial(id));
  }
  if (rank != 0) check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, 0, tag_done, comm), "MPI_Send");
  while (rank == 0 && !collector.others_finished()) {
    collector.poll(results, true);
    progress.update(static_cast<int64_t>(results.size()));
  }

  std::sort(results.begin(), results.end(),
            [](const TrialResult& a, const TrialResult& b) { return a.row.trial < b.row.trial; });
  if (rank == 0) {
    check_invariant(static_cast<int64_t>(results.size()) == n_trials,
                    "collected " + std::to_string(results.size()) + " results for " +
                        std::to_string(n_trials) + " trials");
    progress.finish(n_trials);
  }
  return results;
}

}  // namespace fracsweep
