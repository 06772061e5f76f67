// Progress journals (src/io/journal.cpp): a torn or corrupted journal must never crash a resume.
// Input: one mode byte, then the journal. Mode odd: the harness rewrites every record's CRC-32C
// so that mutations reach the payload decoding behind the checksum; mode even: bytes as given.
#include <cstring>

#include "fracsweep/io/journal.hpp"
#include "fracsweep/util/crc32c.hpp"
#include "fuzz_support.hpp"

namespace {

// Walks kind, length, payload, CRC records and sets each CRC to match; stops at a torn tail.
void fix_checksums(std::string& bytes) {
  size_t position = 0;
  while (bytes.size() - position >= 12) {
    uint32_t length = 0;
    std::memcpy(&length, bytes.data() + position + 4, 4);
    if (bytes.size() - position - 12 < length) return;
    const uint32_t crc = fracsweep::crc32c(bytes.data() + position, 8 + size_t{length});
    std::memcpy(bytes.data() + position + 8 + length, &crc, 4);
    position += 12 + size_t{length};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fracsweep;
  if (size < 1) return 0;
  std::string journal(fuzz::as_text(data + 1, size - 1));
  if (data[0] % 2 == 1) fix_checksums(journal);
  const fuzz::ScratchDirectory scratch;
  const std::string path = scratch.write("results.h5.journal", journal);
  fuzz::expect_only_input_errors([&] { read_journal(path); });
  return 0;
}
