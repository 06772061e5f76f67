// .npy files (src/formats/npy.cpp): header, dtype, shape, data and the conversions.
#include "fracsweep/formats/npy.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("array.npy", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    const NpyArray header = read_npy_header(path);
    const NpyArray array = read_npy(path);
    if (array.shape != header.shape || array.dtype != header.dtype)
      throw RunError("header and full read disagree");
    if (static_cast<int64_t>(array.as_float().size()) != array.count())
      throw RunError("as_float size");
    fuzz::expect_only_input_errors([&] { array.as_int64(); });
  });
  return 0;
}
