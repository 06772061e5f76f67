#include "fracsweep/error.hpp"
#include "fracsweep/model_loaders.hpp"

namespace fracsweep {

void check_sequential_model(const JobConfig& job, const ModelSpec& spec) {
  throw InputError(in_file(spec.path, std::string("model format '") +
                                          model_format_name(spec.format) +
                                          "' is not supported by this build (job " + job.path + ")"));
}

std::unique_ptr<OpenModel> open_sequential_model(const JobConfig& job, const ModelSpec& spec,
                                           const EvalSources&) {
  check_sequential_model(job, spec);
  return nullptr;
}

}  // namespace fracsweep
