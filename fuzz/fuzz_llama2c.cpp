// llama2.c checkpoints (src/formats/llama2c.cpp): header checks and the whole load.
#include "fracsweep/formats/llama2c.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("model.bin", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    read_llama2c_header(path);
    const Model model = load_llama2c(path);
    const TensorInfo& last = model.tensors.back();
    if (static_cast<int64_t>(model.values.size()) != last.offset + last.count) {
      throw RunError("loaded values do not cover the tensor table");
    }
  });
  return 0;
}
