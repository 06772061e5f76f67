// Sequential classifier descriptions (read_sequential_spec in src/nn/sequential.cpp), then the
// network plan against a weights file that holds every tensor the description names, each of
// the shape it asks for; the plan must either fit or name what does not.
#include "fracsweep/nn/sequential.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("model.json", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    const SequentialSpec spec = read_sequential_spec(path);
    const std::vector<int64_t> vector_shape{4};  // every named tensor: 4 values
    plan_network(spec, [&](const std::string&) { return &vector_shape; });
  });
  return 0;
}
