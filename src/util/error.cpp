#include "fracsweep/util/error.hpp"

#include <new>

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

std::string describe_exception(const std::exception& error) {
  if (dynamic_cast<const std::bad_alloc*>(&error) != nullptr) {
    return "out of memory: an allocation failed (std::bad_alloc); the job, its models or its "
           "evaluation data need more memory than this process may use (`fracsweep plan JOB` "
           "estimates it; fewer ranks per node leave more to each)";
  }
  return error.what();
}

}  // namespace fracsweep
