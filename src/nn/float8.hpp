#pragma once
// Internal to the nn layer: one AVX2 register of 8 floats through GCC's vector extension, for
// the register-blocked attention kernels (ops.cpp, ops_backward.cpp). Written as plain loops,
// GCC vectorised those products along the wrong axis, through shuffles.
#include <cstdint>
#include <cstring>

namespace fracsweep::simd {

using float8 = float __attribute__((vector_size(32)));
constexpr int64_t lanes8 = 8;

inline float8 splat8(float value) {
  return float8{} + value;
}

inline float8 load8(const float* from) {
  float8 value;
  std::memcpy(&value, from, sizeof value);
  return value;
}

inline void store8(float* to, float8 value) {
  std::memcpy(to, &value, sizeof value);
}

// Keys per row of a transposed-keys buffer: len rounded up to a multiple of 8.
inline int64_t padded_keys(int64_t len) {
  return (len + lanes8 - 1) / lanes8 * lanes8;
}

}  // namespace fracsweep::simd
