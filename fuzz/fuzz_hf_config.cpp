// Hugging Face config.json (HfCheckpoint, formats/hf.hpp; src/models/hf_model.cpp): the input is
// the config of a directory whose model.safetensors holds no tensor, so every path ends in the
// configuration checks or in naming the missing tensors.
#include "fracsweep/formats/hf.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  static const std::string empty_safetensors("\x02\0\0\0\0\0\0\0{}", 10);  // 8-byte length + "{}"
  const fuzz::ScratchDirectory scratch;
  scratch.write("config.json", fuzz::as_text(data, size));
  scratch.write("model.safetensors", empty_safetensors);
  fuzz::expect_only_input_errors([&] {
    const HfCheckpoint checkpoint(scratch.path());
    hf_tensor_table(checkpoint);
  });
  return 0;
}
