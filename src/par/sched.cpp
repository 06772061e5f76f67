#include "fracsweep/par/sched.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

#include "fracsweep/io/journal.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr int tag_result = 1;  // a TrialResult as encode_result's bytes
constexpr int tag_done = 2;    // a rank has no more trials

void check_mpi(int code, const char* what) {
  check_invariant(code == MPI_SUCCESS, [&] { return std::string("MPI call failed: ") + what; });
}

// RAII for the state shared by all ranks: two int64 in a window on rank 0, the next entry of
// the trial list to hand out and the stop flag, both updated atomically.
class SharedState {
 public:
  explicit SharedState(MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    const MPI_Aint bytes = rank == 0 ? static_cast<MPI_Aint>(slots * sizeof(int64_t)) : 0;
    check_mpi(MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, comm, &base_, &window_),
              "MPI_Win_allocate");
    if (rank == 0) base_[next_slot] = base_[stop_slot] = 0;
    check_mpi(MPI_Barrier(comm), "MPI_Barrier");
    check_mpi(MPI_Win_lock_all(0, window_), "MPI_Win_lock_all");
  }
  ~SharedState() {
    MPI_Win_unlock_all(window_);
    MPI_Win_free(&window_);
  }
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  // Atomically returns the next-entry counter and adds `amount` to it.
  int64_t fetch_add_next(int64_t amount) { return fetch_and_op(next_slot, amount, MPI_SUM); }
  void request_stop() { fetch_and_op(stop_slot, 1, MPI_REPLACE); }
  bool stop_requested() { return fetch_and_op(stop_slot, 0, MPI_NO_OP) != 0; }

 private:
  static constexpr MPI_Aint next_slot = 0, stop_slot = 1, slots = 2;
  int64_t fetch_and_op(MPI_Aint slot, int64_t operand, MPI_Op op) {
    int64_t previous = 0;
    check_mpi(MPI_Fetch_and_op(&operand, &previous, MPI_INT64_T, 0, slot, op, window_),
              "MPI_Fetch_and_op");
    check_mpi(MPI_Win_flush(0, window_), "MPI_Win_flush");
    return previous;
  }
  int64_t* base_ = nullptr;  // (slots) on rank 0; empty elsewhere
  MPI_Win window_ = MPI_WIN_NULL;
};

// Rank 0's side: receives results and done-messages from the other ranks.
class Collector {
 public:
  Collector(MPI_Comm comm, int n_ranks) : comm_(comm), waiting_for_(n_ranks - 1) {}

  // Receives whatever has arrived and hands results to `collect`; returns how many messages.
  int poll(const std::function<void(TrialResult)>& collect) {
    int received = 0;
    for (;; ++received) {
      MPI_Status status;
      int arrived = 0;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &arrived, &status), "MPI_Iprobe");
      if (!arrived) return received;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      std::vector<char> bytes(static_cast<size_t>(count));  // (count) one packed result
      check_mpi(MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm_,
                         MPI_STATUS_IGNORE),
                "MPI_Recv");
      if (status.MPI_TAG == tag_done) {
        --waiting_for_;
      } else {
        collect(decode_result(bytes.data(), bytes.size()));
      }
    }
  }
  bool others_finished() const { return waiting_for_ == 0; }

 private:
  MPI_Comm comm_;
  int waiting_for_;
};

}  // namespace

namespace {

// Every rank calls this with its own outcome (`exit_code` exit_ok: success). When any rank
// failed, every rank throws PhaseFailure with the lowest failing rank's exit code and message
// (printed by that rank only); otherwise it returns.
void agree_on_outcome(MPI_Comm comm, const std::string& message, int exit_code) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int mine = exit_code != exit_ok ? rank : std::numeric_limits<int>::max();
  int first_failed = 0;
  check_mpi(MPI_Allreduce(&mine, &first_failed, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (first_failed == std::numeric_limits<int>::max()) return;
  check_mpi(MPI_Bcast(&exit_code, 1, MPI_INT, first_failed, comm), "MPI_Bcast");
  throw PhaseFailure(message, exit_code, rank == first_failed);
}

// The first failure of this rank: its message and exit code (exit_ok while none).
struct Failure {
  std::string message;
  int exit_code = exit_ok;
  bool happened() const { return exit_code != exit_ok; }
  // Runs `work`; an exception becomes this failure (the first one is kept). Returns success.
  bool capture(const std::function<void()>& work) {
    try {
      work();
      return true;
    } catch (const InputError& e) {
      record(e.what(), exit_bad_input);
    } catch (const std::exception& e) {
      record(describe_exception(e), exit_internal);
    }
    return false;
  }

 private:
  void record(std::string text, int code) {
    if (happened()) return;
    message = std::move(text);
    exit_code = code;
  }
};

}  // namespace

void run_collective_phase(MPI_Comm comm, const std::function<void()>& phase) {
  Failure failure;
  failure.capture(phase);
  agree_on_outcome(comm, failure.message, failure.exit_code);
}

int64_t automatic_chunk(int64_t n_trials, int n_ranks) {
  return std::clamp<int64_t>(n_trials / (static_cast<int64_t>(n_ranks) * 16), 1, 32);
}

bool run_distributed(MPI_Comm comm, const std::vector<int64_t>& trial_ids,
                     const ScheduleOptions& options,
                     const std::function<TrialResult(int64_t)>& run_trial,
                     const std::function<void(TrialResult)>& collect,
                     const std::function<bool()>& stop_requested, Progress& progress) {
  int rank = 0, n_ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &n_ranks);
  const auto n_trials = static_cast<int64_t>(trial_ids.size());
  const int64_t chunk = options.chunk > 0 ? options.chunk : automatic_chunk(n_trials, n_ranks);

  int64_t collected = 0;  // rank 0: results handed to `collect`
  const std::function<void(TrialResult)> collect_counted = [&](TrialResult result) {
    collect(std::move(result));
    ++collected;
  };
  const std::function<void(TrialResult)> discard = [](TrialResult) {};
  Collector collector(comm, n_ranks);
  auto deliver = [&](TrialResult result) {
    if (rank == 0) {
      collect_counted(std::move(result));
      collector.poll(collect_counted);
      progress.update(collected);
    } else {
      const std::vector<char> bytes = encode_result(result);
      check_mpi(
          MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, 0, tag_result, comm),
          "MPI_Send");
    }
  };

  // The window outlives the collection below: freeing it is collective, and a rank still
  // sending results must not meet rank 0 inside MPI_Win_free.
  SharedState shared(comm);
  // A failing trial (or journal write) stops every rank like a signal does; the trials in flight
  // finish, then all ranks agree on the failure below, so none is left waiting.
  Failure failure;
  const auto run_and_deliver = [&](int64_t i) {
    if (!failure.capture([&] { deliver(run_trial(trial_ids[static_cast<size_t>(i)])); })) {
      shared.request_stop();
    }
  };
  bool stop_published = false;
  const auto publish_local_stop = [&] {
    if (!stop_published && stop_requested()) {
      shared.request_stop();
      stop_published = true;
    }
  };
  const auto should_stop = [&] {
    publish_local_stop();
    return stop_published || failure.happened() || shared.stop_requested();
  };
  if (options.dynamic) {
    for (int64_t first = 0; !should_stop() && (first = shared.fetch_add_next(chunk)) < n_trials;) {
      const int64_t last = std::min(first + chunk, n_trials);
      for (int64_t i = first; i < last && (i == first || !should_stop()); ++i) run_and_deliver(i);
    }
  } else {  // static: one contiguous block per rank
    const int64_t first = n_trials * rank / n_ranks, last = n_trials * (rank + 1) / n_ranks;
    for (int64_t i = first; i < last && !should_stop(); ++i) run_and_deliver(i);
  }
  if (rank != 0) check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, 0, tag_done, comm), "MPI_Send");
  while (rank == 0 && !collector.others_finished()) {
    // After rank 0's own failure the other ranks' rows are only drained, not collected.
    int received = 0;
    failure.capture(
        [&] { received = collector.poll(failure.happened() ? discard : collect_counted); });
    if (received == 0) {
      publish_local_stop();  // a signal to rank 0 now still stops the others
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    progress.update(collected);
  }
  agree_on_outcome(comm, failure.message, failure.exit_code);

  int complete = rank == 0 && collected == n_trials ? 1 : 0;
  check_mpi(MPI_Bcast(&complete, 1, MPI_INT, 0, comm), "MPI_Bcast");
  return complete != 0;
}

}  // namespace fracsweep
