#pragma once
// The one vectorisable exp of the kernels (attention, SwiGLU) and of the metrics' log-sum-exp:
// inline and branch-free, so loops that call it vectorise (no libm call, selects through
// integer masks). Both functions are defined here for every caller to inline.
#include <bit>
#include <cstdint>

namespace fracsweep {

// `if_true` where `condition` holds, else `if_false`, through integer masks: with GCC's default
// -ftrapping-math a floating-point ?: whose result feeds more arithmetic blocks vectorisation.
inline float select_by_mask(bool condition, float if_true, float if_false) {
  const int32_t mask = -static_cast<int32_t>(condition);
  return std::bit_cast<float>((std::bit_cast<int32_t>(if_true) & mask) |
                              (std::bit_cast<int32_t>(if_false) & ~mask));
}

// e^x for x <= 88, relative error below 1.5e-7 (measured: < 1e-7 on a 1e-4 grid of [-87, 88]):
// x = n ln2 + r with |r| <= ln2/2, e^x = 2^n e^r, e^r by its Taylor series to r^7 (truncation
// |r|^8 / 8! < 6e-9 relative; the rest is float rounding of the Horner steps), 2^n written into
// the exponent bits. Documented values:
//   x < -87 (-inf included): exactly 0 (e^x < 1.7e-38, under float's normal range);
//   x = 0: exactly 1;   NaN: NaN (its sign kept).
// Arguments below -88 are clamped to -88 before the exponent arithmetic, which would otherwise
// overflow int32 (undefined behaviour) for x in about (-1.7e7, -8.7e6), where x log2e + 1.5 * 2^23
// is a small negative float; values for x >= -87 do not depend on the clamp.
inline float fast_exp(float x) {
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_high = 0.693359375f;             // 355/512: n * ln2_high is exact
  constexpr float ln2_low = -2.12194440054690583e-4f;  // ln2 - ln2_high
  constexpr float round_shift = 12582912.0f;           // 1.5 * 2^23: y + shift - shift rounds y
  const float clamped = select_by_mask(x < -88.0f, -88.0f, x);  // NaN compares false: kept
  const float shifted = clamped * log2e + round_shift;
  const float n = shifted - round_shift;
  const float r = (clamped - n * ln2_high) - n * ln2_low;
  float series = 1.0f / 5040.0f;
  series = series * r + 1.0f / 720.0f;
  series = series * r + 1.0f / 120.0f;
  series = series * r + 1.0f / 24.0f;
  series = series * r + 1.0f / 6.0f;
  series = series * r + 0.5f;
  series = series * r + 1.0f;
  series = series * r + 1.0f;
  // In int32 range for every clamped value: n in [-127, 127] on [-88, 88]; the bits of +inf,
  // large x or NaN minus those of round_shift do not overflow either.
  const int32_t exponent = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(round_shift);
  const float two_to_n = std::bit_cast<float>((exponent + 127) << 23);  // garbage below -87
  const float value = select_by_mask(clamped < -87.0f, 0.0f, series * two_to_n);
  // NaN: x itself. Which NaN the arithmetic above yields (its sign) depends on the compiler's
  // operand order (clang and GCC differ), so the documented sign is not left to it.
  return select_by_mask(x != x, x, value);
}

}  // namespace fracsweep
