#pragma once
// Shared pieces of the libFuzzer targets: scratch files under /dev/shm for readers that take a
// path, and the one rule every target checks: bad input may only end in InputError.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "fracsweep/util/error.hpp"

namespace fracsweep::fuzz {

// Where scratch inputs live: memory-backed, one name per process so runs never collide.
inline std::filesystem::path scratch_root() {
  const std::filesystem::path shm("/dev/shm");
  const std::filesystem::path base =
      std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path();
  return base / ("fracsweep-fuzz-" + std::to_string(getpid()));
}

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw RunError("fuzz harness: cannot write " + path.string());
}

// A directory of scratch files for one input; removed with everything in it at scope end.
class ScratchDirectory {
 public:
  ScratchDirectory() : path_(scratch_root()) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;

  // Writes `bytes` to `name` inside the directory; returns its path.
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::filesystem::path file = path_ / name;
    write_bytes(file, bytes);
    return file.string();
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `body` on one input. InputError is the correct answer to bad bytes; any other exception
// escapes, and libFuzzer reports it (with the input) as a finding.
template <typename Body>
void expect_only_input_errors(Body&& body) {
  try {
    body();
  } catch (const InputError&) {
  }
}

}  // namespace fracsweep::fuzz
