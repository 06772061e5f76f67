#pragma once
// Counter-based randomness keyed only by a trial's own values (never rank, time or schedule).
//
// Specification (mirrored exactly in analysis/fracsweep_analysis/rng.py):
//   key   = key_from_text(text): FNV-1a 64 over the UTF-8 bytes of `text`, then the
//           SplitMix64 finaliser (z ^= z>>30; z *= 0xbf58476d1ce4e5b9; z ^= z>>27;
//           z *= 0x94d049bb133111eb; z ^= z>>31).
//   block = Philox4x32-10(counter = {index & 0xffffffff, index >> 32, lane, attempt},
//                         key = {key & 0xffffffff, key >> 32})
//   u64(index, lane, attempt) = block[0] | block[1] << 32
//   below(n, index, lane): Lemire's multiply-shift with rejection; attempt 0, 1, ... until
//           the low 64 bits of u64 * n are >= (2^64 - n) mod n; returns the high 64 bits.
//   uniform01(index, lane) = (u64(index, lane, 0) >> 11) * 2^-53, in [0, 1).
//   normal(index, lane)    = sqrt(-2 ln(1 - u1)) * cos(2 pi u2), u1 = uniform01(index, lane),
//                            u2 = uniform01(index, lane + 1)   (Box-Muller, in double).
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace fracsweep {

uint64_t key_from_text(std::string_view text);

// The Philox4x32-10 block function (Salmon et al., SC'11), exposed for known-answer tests.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class KeyedRng {
 public:
  explicit KeyedRng(uint64_t key) : key_(key) {}
  uint64_t key() const { return key_; }
  uint64_t u64(uint64_t index, uint32_t lane, uint32_t attempt = 0) const;
  // Uniform integer in [0, n), n >= 1; unbiased.
  uint64_t below(uint64_t n, uint64_t index, uint32_t lane) const;
  // Uniform double in [0, 1).
  double uniform01(uint64_t index, uint32_t lane) const;
  // Standard normal via Box-Muller on lanes `lane` and `lane + 1`.
  double normal(uint64_t index, uint32_t lane) const;

 private:
  uint64_t key_;
};

// The first `k` entries of a uniformly random permutation of [0, n), drawn by a sparse
// Fisher-Yates shuffle in O(k) time and memory: step i swaps position i with
// i + below(n - i, i, lane). The draw for a smaller k is a prefix of the draw for a larger k.
std::vector<int64_t> permutation_prefix(const KeyedRng& rng, int64_t n, int64_t k, uint32_t lane);

}  // namespace fracsweep
