// llama2.c tokenizers (src/formats/tokenizer.cpp): loading, then encode and decode.
// Input layout (scripts/fuzz.sh seeds writes seeds this way):
//   uint16 vocab_size, uint16 text bytes, text, tokenizer file
#include <cstring>

#include "fracsweep/formats/tokenizer.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  if (size < 4) return 0;
  uint16_t vocab_size = 0, text_bytes = 0;
  std::memcpy(&vocab_size, data, 2);
  std::memcpy(&text_bytes, data + 2, 2);
  if (text_bytes > size - 4) return 0;
  const std::string_view text = fuzz::as_text(data + 4, text_bytes);
  const fuzz::ScratchDirectory scratch;
  const std::string path =
      scratch.write("tokenizer.bin", fuzz::as_text(data + 4 + text_bytes, size - 4 - text_bytes));
  fuzz::expect_only_input_errors([&] {
    const Tokenizer tokenizer = Tokenizer::load_llama2c(path, vocab_size);
    const std::vector<int32_t> ids = tokenizer.encode(text, true, true);
    for (int32_t id : ids) {
      if (id < 0 || id >= tokenizer.vocab_size())
        throw RunError("encode produced an id outside the vocabulary");
    }
    tokenizer.decode(ids);
  });
  return 0;
}
