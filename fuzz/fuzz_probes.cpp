// Behaviour probe files (src/formats/probes.cpp): any bytes as a probes TSV must end in a
// parsed probe set or an InputError, never a crash or an unbounded allocation.
#include "fracsweep/formats/probes.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("probes.tsv", std::string(fuzz::as_text(data, size)));
  fuzz::expect_only_input_errors([&] { read_probes(path); });
  return 0;
}
