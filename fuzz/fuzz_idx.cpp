// Example arrays (src/formats/image_data.cpp): IDX, gzip-compressed or plain, and .npy.
#include "fracsweep/formats/image_data.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("examples.idx.gz", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    const ExampleArray header = read_example_array(path, true);
    const ExampleArray array = read_example_array(path);
    int64_t count = 1;
    for (int64_t dim : array.shape) count *= dim;
    if (array.shape != header.shape || static_cast<int64_t>(array.values.size()) != count) {
      throw RunError("values do not match the shape");
    }
  });
  return 0;
}
