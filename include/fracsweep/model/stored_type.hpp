#pragma once
// Stored number formats of tensors and exact conversions between them and float32.
#include <cstddef>
#include <cstdint>

namespace fracsweep {

// The number format a tensor is stored in by its file. Model::values always hold float32
// working values; for 16-bit tensors they are the exact widening of the stored 16-bit patterns
// (NaN payloads included), so the stored bits are recovered losslessly from them and the model
// is held once. Perturbations act on the stored format (perturb.hpp).
enum class StoredType : uint8_t { f32, f16, bf16 };
const char* stored_type_name(StoredType type);  // "f32", "f16", "bf16"

// 16-bit stored formats (f16 = IEEE binary16, bf16 = bfloat16). Widening is exact and keeps
// NaN payloads bit for bit, so float_to_stored16(t, stored16_to_float(t, b)) == b for every
// pattern b: the float32 working values encode the stored bits losslessly.
float stored16_to_float(StoredType type, uint16_t bits);
// The stored pattern of a working value (defined on widened values; `type` is f16 or bf16).
uint16_t float_to_stored16(StoredType type, float widened);
// A new float32 value rounded to the stored type (round to nearest even; NaN stays NaN).
uint16_t round_to_stored16(StoredType type, float value);
// Bits of one stored element: 32 for f32, 16 for f16 and bf16.
int stored_bit_width(StoredType type);

// IEEE binary16 and bfloat16 <-> float32 (round to nearest even; NaN stays NaN).
float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);
float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);

// Loading, on the calling rank's OpenMP threads (each element converted alone, so the result is
// bitwise the serial one): `count` little-endian 16-bit patterns at `bytes` widened by
// `to_float` into `out` (count); and a plain copy of `bytes` bytes.
void widen_16bit(const unsigned char* bytes, int64_t count, float* out,
                 float (*to_float)(uint16_t));
void copy_bytes(const void* source, size_t bytes, void* out);
// stored16_to_float for f16 (`f16`) or bf16, as a function widen_16bit takes.
using Widener = float (*)(uint16_t);
Widener stored16_widener(bool f16);

}  // namespace fracsweep
