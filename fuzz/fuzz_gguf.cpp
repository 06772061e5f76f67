// GGUF files (src/formats/gguf.cpp, src/models/gguf_model.cpp): header, metadata, tensor infos,
// the Llama configuration and tensor table, the load, and the vocabulary.
#include "fracsweep/formats/gguf.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("model.gguf", fuzz::as_text(data, size));
  fuzz::expect_only_input_errors([&] {
    const GgufFile file(path);
    for (const auto& [key, value] : file.metadata()) file.find(key);
    for (const GgufTensor& tensor : file.tensors()) {
      std::vector<float> values(static_cast<size_t>(tensor.count));  // (count) bounded by the file
      file.read_as_float(tensor, values.data());
    }
    const Model model = load_gguf_llama(file);
    const Tokenizer tokenizer = gguf_tokenizer(file, model.config.vocab_size);
    tokenizer.decode(tokenizer.encode("Once upon a time", true, false));
  });
  return 0;
}
