#pragma once
// First-order predictions for the gradient-guided strategies (taylor, bfa): the change a
// strategy would make to one parameter, and the objective's predicted gain g * (w' - w) from
// the gradient g at the unperturbed weights. Bit flips act on the parameter's stored pattern
// (f32, f16, bf16) and w' is its exact widening.
#include <cstdint>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/model/stored_type.hpp"

namespace fracsweep {

struct CandidateChange {
  float new_value = 0.0f;  // the parameter's new float32 working value
  int bit = -1;            // the flipped bit of the stored pattern; -1 when not a flip
  double gain = 0.0;       // g * (new_value - old), in double; NaN is made -inf (no gain)
};

// Bits [first, last] of a stored pattern that `bits` names (`bit` for an explicit bit):
// f32 sign 31, exponent 23..30, exponent-msb 30, mantissa 0..22, any 0..31; f16 sign 15,
// exponent 10..14, mantissa 0..9; bf16 sign 15, exponent 7..14, mantissa 0..6; any 0..15.
struct BitRange {
  int first = 0, last = 0;
};
BitRange bit_range(StoredType stored, BitClass bits, int bit);

// `w` with bit `bit` of its stored pattern flipped, widened to float32.
float flip_stored_bit(StoredType stored, float w, int bit);

// The best single-bit flip of `w` within `bits` by predicted gain (ties: the lower bit).
CandidateChange best_bit_flip(StoredType stored, float w, float g, BitClass bits, int bit);

// The change a targeted strategy's then=`action` makes to `w` (zero, signflip, or the best
// bit flip within its bit class), with its predicted gain.
CandidateChange targeted_change(const StrategySpec& strategy, StoredType stored, float w, float g);

}  // namespace fracsweep
