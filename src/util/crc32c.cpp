#include "fracsweep/util/crc32c.hpp"

#include <boost/crc.hpp>

namespace fracsweep {

namespace {

// CRC-32C: polynomial 0x1EDC6F41 (0x82F63B78 reflected), initial and final XOR 0xFFFFFFFF,
// input and output reflected.
using Crc32cComputer = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

uint32_t reversed_bits(uint32_t value) {
  uint32_t reversed = 0;
  for (int bit = 0; bit < 32; ++bit) {
    reversed = (reversed << 1) | (value & 1u);
    value >>= 1;
  }
  return reversed;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  // Continuing from a finished checksum `crc`: undoing its final XOR gives the (reflected)
  // register, and crc_optimal takes its starting remainder unreflected.
  Crc32cComputer computer(reversed_bits(crc ^ 0xFFFFFFFFu));
  computer.process_bytes(data, size);
  return computer.checksum();
}

}  // namespace fracsweep
