// Job files (config/job.hpp parse_job_text): parse, echo, and the grid the job describes.
#include "fracsweep/config/job.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  fuzz::expect_only_input_errors([&] {
    const JobConfig job = parse_job_text(std::string(fuzz::as_text(data, size)), "fuzz.ini");
    echo_job(job);
    job_grid(job);
  });
  return 0;
}
