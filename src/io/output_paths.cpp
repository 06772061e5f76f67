#include "fracsweep/io/output_paths.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <utility>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace fs = std::filesystem;

namespace {

using FileIdentity = std::pair<dev_t, ino_t>;

// The identity of the file `path` resolves to (following symlinks), when it exists.
bool identity_of(const std::string& path, FileIdentity& identity) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return false;
  identity = {info.st_dev, info.st_ino};
  return true;
}

// Every input file by identity, directories expanded one level.
std::map<FileIdentity, std::string> input_files(const std::vector<std::string>& inputs) {
  std::map<FileIdentity, std::string> files;
  for (const std::string& input : inputs) {
    FileIdentity identity;
    if (!identity_of(input, identity)) continue;  // missing inputs are the loaders' to report
    files.emplace(identity, input);
    std::error_code error;
    if (!fs::is_directory(input, error)) continue;
    for (const fs::directory_entry& entry : fs::directory_iterator(input, error)) {
      if (identity_of(entry.path().string(), identity)) files.emplace(identity, entry.path());
    }
  }
  return files;
}

}  // namespace

void check_outputs_spare_inputs(const std::vector<std::string>& outputs,
                                const std::vector<std::string>& inputs) {
  check_invariant(!outputs.empty(), "check_outputs_spare_inputs needs the results path");
  const std::string& results = outputs.front();
  const fs::path directory = fs::absolute(fs::path(results)).parent_path();
  std::error_code error;
  check_input(fs::is_directory(directory, error),
              in_file(results, "the output directory " + directory.string() + " does not exist"));
  const std::map<FileIdentity, std::string> files = input_files(inputs);
  for (const std::string& output : outputs) {
    FileIdentity identity;
    if (!identity_of(output, identity)) continue;
    const auto input = files.find(identity);
    check_input(input == files.end(), [&] {
      return in_file(output, "is " + input->second +
                                 ", an input of this job; refusing to overwrite it (even with "
                                 "--force): choose another --out");
    });
  }
}

}  // namespace fracsweep
