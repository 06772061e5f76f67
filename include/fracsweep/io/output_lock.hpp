#pragma once
// "<results file>.lock": stops two runs from writing the same output (and its journal) at once.
// Created atomically (O_CREAT | O_EXCL, which works on NFS and Lustre without file locking);
// it holds the host, process id, batch job id and start time of its holder and is removed when
// the holder ends. A lock left by a killed run on the same host (its process is gone) is taken
// over; any other existing lock is refused with a message naming its holder.
#include <string>

namespace fracsweep {

class OutputLock {
 public:
  // Takes the lock of `results_path`; throws InputError when another run holds it.
  OutputLock(const std::string& results_path, const std::string& job_id);
  ~OutputLock();  // removes the lock file
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  const std::string& path() const { return path_; }
  static std::string path_for(const std::string& results_path) { return results_path + ".lock"; }

 private:
  std::string path_;
};

}  // namespace fracsweep
