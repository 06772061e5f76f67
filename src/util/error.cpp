#include "fracsweep/util/error.hpp"

namespace fracsweep {

void throw_input_error(const std::string& message) {
  throw InputError(message);
}

void throw_invariant_error(const std::string& message) {
  throw RunError("internal error: " + message);
}

std::string in_file(const std::string& path, const std::string& message) {
  return path + ": " + message;
}

}  // namespace fracsweep
