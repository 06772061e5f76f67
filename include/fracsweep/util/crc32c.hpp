#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of journal records;
// computed with Boost.CRC.
#include <cstddef>
#include <cstdint>

namespace fracsweep {

// CRC-32C of `size` bytes at `data`, continuing from `crc` (0 for a fresh checksum), so
// crc32c(b, nb, crc32c(a, na)) equals the checksum of a followed by b.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace fracsweep
