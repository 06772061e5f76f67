#include "fracsweep/util/error.hpp"

namespace fracsweep {

void check_input(bool condition, const std::string& message) {
  if (!condition) throw InputError(message);
}

void check_invariant(bool condition, const std::string& message) {
  if (!condition) throw RunError("internal error: " + message);
}

std::string in_file(const std::string& path, const std::string& message) {
  return path + ": " + message;
}

}  // namespace fracsweep
