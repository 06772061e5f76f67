#include "fracsweep/util/crc32c.hpp"

#include <array>

namespace fracsweep {

namespace {

constexpr uint32_t castagnoli_reflected = 0x82F63B78u;

// table[b]: the CRC register after shifting byte b through eight reflected steps.
constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};  // (256) one entry per byte value
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t reg = byte;
    for (int bit = 0; bit < 8; ++bit) reg = (reg & 1u) ? (reg >> 1) ^ castagnoli_reflected : reg >> 1;
    table[byte] = reg;
  }
  return table;
}

constexpr std::array<uint32_t, 256> crc_table = make_table();

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t reg = ~crc;
  for (size_t i = 0; i < size; ++i) reg = crc_table[(reg ^ bytes[i]) & 0xFFu] ^ (reg >> 8);
  return ~reg;
}

}  // namespace fracsweep
