#include "fracsweep/model/stored_type.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace fracsweep {

const char* stored_type_name(StoredType type) {
  switch (type) {
    case StoredType::f32:
      return "f32";
    case StoredType::f16:
      return "f16";
    case StoredType::bf16:
      return "bf16";
  }
  return "?";
}

int stored_bit_width(StoredType type) {
  return type == StoredType::f32 ? 32 : 16;
}

float stored16_to_float(StoredType type, uint16_t bits) {
  if (type == StoredType::bf16) return std::bit_cast<float>(uint32_t{bits} << 16);
  const bool nan = (bits & 0x7C00u) == 0x7C00u && (bits & 0x3FFu) != 0;
  if (!nan) return half_to_float(bits);
  // NaN: the 10-bit payload moves to the top of the binary32 fraction unchanged (not quieted).
  return std::bit_cast<float>(uint32_t{bits & 0x8000u} << 16 | 0x7F800000u |
                              uint32_t{bits & 0x3FFu} << 13);
}

uint16_t float_to_stored16(StoredType type, float widened) {
  const auto bits = std::bit_cast<uint32_t>(widened);
  if (type == StoredType::bf16) return static_cast<uint16_t>(bits >> 16);
  if (std::isnan(widened)) {
    return static_cast<uint16_t>((bits >> 16 & 0x8000u) | 0x7C00u | (bits >> 13 & 0x3FFu));
  }
  return float_to_half(widened);  // exact: a widened value is representable
}

uint16_t round_to_stored16(StoredType type, float value) {
  return type == StoredType::bf16 ? float_to_bf16(value) : float_to_half(value);
}

// --- 16-bit floats. binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. bfloat16: the
// upper half of a binary32 (1 sign, 8 exponent, 7 fraction bits).

float half_to_float(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  uint32_t fraction = bits & 0x3FFu;
  uint32_t result = 0;
  if (exponent == 0x1F) {
    // Inf keeps a zero fraction; NaN keeps its payload and becomes quiet.
    result = sign | 0x7F800000u | (fraction << 13) | (fraction != 0 ? 0x00400000u : 0u);
  } else if (exponent != 0) {
    result = sign | ((exponent + 127 - 15) << 23) | (fraction << 13);
  } else if (fraction == 0) {
    result = sign;
  } else {
    // Subnormal fraction * 2^-24: shift the leading 1 into the implicit-bit position.
    uint32_t float_exponent = 127 - 15 + 1;
    while ((fraction & 0x400u) == 0) {
      fraction <<= 1;
      --float_exponent;
    }
    result = sign | (float_exponent << 23) | ((fraction & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(result);
}

uint16_t float_to_half(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t float_exponent = (bits >> 23) & 0xFFu;
  const uint32_t fraction = bits & 0x7FFFFFu;
  if (float_exponent == 0xFF) {
    if (fraction == 0) return static_cast<uint16_t>(sign | 0x7C00u);  // Inf
    return static_cast<uint16_t>(sign | 0x7E00u | (fraction >> 13));  // quiet NaN, top payload
  }
  const int exponent = static_cast<int>(float_exponent) - 127;  // float subnormals: far below
  uint32_t kept = 0;     // the 16-bit magnitude before rounding
  uint32_t dropped = 0;  // the bits shifted out
  uint32_t halfway = 0;  // the value of `dropped` exactly between two results
  if (exponent >= -14) {
    // Normal range; an exponent above 15 or a rounding carry out of 0x7BFF gives Inf (0x7C00).
    if (exponent > 15) return static_cast<uint16_t>(sign | 0x7C00u);
    kept = static_cast<uint32_t>(exponent + 15) << 10 | fraction >> 13;
    dropped = fraction & 0x1FFFu;
    halfway = 0x1000u;
  } else {
    // Subnormal result: (1.fraction * 2^exponent) / 2^-24 = significand >> shift.
    const int shift = -(exponent + 1);  // >= 14
    if (shift > 24) return sign;        // below half the smallest subnormal: +-0
    const uint32_t significand = fraction | 0x800000u;
    kept = significand >> shift;
    dropped = significand & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
  }
  if (dropped > halfway || (dropped == halfway && (kept & 1u) != 0)) ++kept;
  return static_cast<uint16_t>(sign | kept);
}

float bf16_to_float(uint16_t bits) {
  uint32_t result = uint32_t{bits} << 16;
  const bool is_nan = (bits & 0x7F80u) == 0x7F80u && (bits & 0x7Fu) != 0;
  if (is_nan) result |= 0x00400000u;  // quiet
  return std::bit_cast<float>(result);
}

uint16_t float_to_bf16(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, top payload
  }
  // Round to nearest even on the low 16 bits; a carry may step into the exponent (up to Inf).
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

void widen_16bit(const unsigned char* bytes, int64_t count, float* out,
                 float (*to_float)(uint16_t)) {
  // Static schedule: each thread writes (and so page-faults) one contiguous part of `out`.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    uint16_t bits = 0;
    std::memcpy(&bits, bytes + 2 * i, sizeof bits);
    out[i] = to_float(bits);
  }
}

Widener stored16_widener(bool f16) {
  if (f16) return [](uint16_t bits) { return stored16_to_float(StoredType::f16, bits); };
  return [](uint16_t bits) { return stored16_to_float(StoredType::bf16, bits); };
}

void copy_bytes(const void* source, size_t bytes, void* out) {
  constexpr int64_t block = int64_t{1} << 22;  // 4 MiB per task
  const auto n_blocks = static_cast<int64_t>((bytes + block - 1) / block);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const auto begin = static_cast<size_t>(b * block);
    std::memcpy(static_cast<char*>(out) + begin, static_cast<const char*>(source) + begin,
                std::min(bytes - begin, static_cast<size_t>(block)));
  }
}

}  // namespace fracsweep
