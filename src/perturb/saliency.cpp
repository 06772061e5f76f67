#include "fracsweep/perturb/saliency.hpp"

#include <bit>
#include <cmath>
#include <limits>

#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

double predicted_gain(float g, float old_value, float new_value) {
  const double gain = static_cast<double>(g) * (static_cast<double>(new_value) - old_value);
  return std::isnan(gain) ? -std::numeric_limits<double>::infinity() : gain;
}

}  // namespace

BitRange bit_range(StoredType stored, BitClass bits, int bit) {
  const int width = stored_bit_width(stored);
  // The mantissa's width is also the exponent's first bit.
  const int mantissa = stored == StoredType::f32 ? 23 : stored == StoredType::f16 ? 10 : 7;
  switch (bits) {
    case BitClass::sign:
      return {width - 1, width - 1};
    case BitClass::exponent_msb:
      return {width - 2, width - 2};
    case BitClass::exponent:
      return {mantissa, width - 2};
    case BitClass::mantissa:
      return {0, mantissa - 1};
    case BitClass::any:
      return {0, width - 1};
    case BitClass::explicit_bit:
      check_invariant(bit >= 0 && bit < width, "explicit bit outside the stored width");
      return {bit, bit};
  }
  return {0, width - 1};
}

float flip_stored_bit(StoredType stored, float w, int bit) {
  if (stored == StoredType::f32) {
    return std::bit_cast<float>(std::bit_cast<uint32_t>(w) ^ (uint32_t{1} << bit));
  }
  const uint16_t pattern = float_to_stored16(stored, w);
  return stored16_to_float(stored, static_cast<uint16_t>(pattern ^ (1u << bit)));
}

CandidateChange best_bit_flip(StoredType stored, float w, float g, BitClass bits, int bit) {
  const BitRange range = bit_range(stored, bits, bit);
  CandidateChange best;
  best.gain = -std::numeric_limits<double>::infinity();
  for (int b = range.first; b <= range.last; ++b) {
    const float flipped = flip_stored_bit(stored, w, b);
    const double gain = predicted_gain(g, w, flipped);
    if (best.bit < 0 || gain > best.gain) best = {flipped, b, gain};
  }
  return best;
}

CandidateChange targeted_change(const StrategySpec& strategy, StoredType stored, float w, float g) {
  switch (strategy.action) {
    case TargetAction::zero:
      return {0.0f, -1, predicted_gain(g, w, 0.0f)};
    case TargetAction::signflip: {
      const float flipped = flip_stored_bit(stored, w, stored_bit_width(stored) - 1);
      return {flipped, stored_bit_width(stored) - 1, predicted_gain(g, w, flipped)};
    }
    case TargetAction::bitflip:
      return best_bit_flip(stored, w, g, strategy.bits, strategy.bit);
  }
  return {w, -1, 0.0};
}

}  // namespace fracsweep
