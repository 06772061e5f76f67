// safetensors files (src/formats/safetensors.cpp): length prefix, JSON header, tensor extents,
// and conversion of every tensor to float.
#include "fracsweep/formats/safetensors.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    const SafetensorsFile file(path);
    for (const SafetensorsTensor& tensor : file.tensors()) {
      if (file.find(tensor.name) != &tensor)
        throw RunError("find does not return the listed tensor");
      std::vector<float> values(static_cast<size_t>(tensor.count));  // (count) bounded by the file
      file.read_as_float(tensor, values.data());
    }
  });
  return 0;
}
