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
//
// Keyed permutation of [0, n), n >= 1 (site recipe "feistel-v1"; KeyedPermutation):
//   b = max(10, ceil(log2 n))      bits of the Feistel domain [0, 2^b): n <= 2^b < 2n for
//                                  n > 2^9; narrower parts mix too slowly (below)
//   u = floor(b / 2), v = b - u    widths of the left part A and the right part B
//   encrypt(x), x in [0, 2^b): A = x >> v, B = x mod 2^v; for r = 0, 1, ..., 7:
//           m = u if r is even, v if r is odd   (the width of A at round r)
//           C = A xor (u64(B | b << 32, lane, r) mod 2^m)
//             (Philox counter {B, b, lane, r}: round function keyed by the stream, the domain
//              width, the lane and the round; only block word 0 reaches the mod 2^m, m <= 32)
//           A = B; B = C
//         after the 8 rounds A has u bits and B has v bits again; encrypt(x) = A << v | B.
//   permute(i), i in [0, n): x = encrypt(i); while x >= n: x = encrypt(x)   (cycle-walking:
//           x stays on the cycle of i under encrypt, which re-enters [0, n), so permute is a
//           bijection of [0, n); the mean walk over [0, n) is 2^b / n encryptions, < 2 for
//           n > 2^9 and never more than 1024 in all for a whole small permutation).
//   permutation_prefix(n, k) = permute(0), ..., permute(k - 1).
// This is FF1's alternating Feistel layout (NIST SP 800-38G) in base 2 with xor: the parts
// differ by at most one bit, so the domain is the smallest power of two >= n, not of four.
// Rounds: Luby-Rackoff needs 4 for a strong pseudorandom permutation, but only far below the
// domain size; Patarin (Asiacrypt 2001) distinguishes 5 rounds from random with O(2^(1.5 w))
// queries (w = part width), 6 rounds when many permutations of a small domain are drawn, and
// recommends more than 6 for that use, which is ours (one permutation per seed, k up to n).
// Eight rounds is FF3-1's count. With ideal round functions, the joint law of two entries is
// within total variation about 2^(-u r / 2) of uniform after r rounds (exact Markov-chain
// computation for b <= 10: 4.2e-2 after 8 rounds at b = 3, 9.5e-4 after 4 and 9.2e-7 after 8
// at b = 10), so the domain has at least 10 bits, and at n ~ 2^18 (u = 9) it is 2^-36.
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

// Name of the site recipe above, stored in results files (root attribute site_recipe) so the
// offline mirror can refuse files whose sites were drawn otherwise.
constexpr const char* site_recipe_name = "feistel-v1";

// The keyed pseudo-random permutation of [0, n) specified above, evaluated per index in O(1)
// memory. Immutable: safe to share between threads.
class KeyedPermutation {
 public:
  KeyedPermutation(const KeyedRng& rng, int64_t n, uint32_t lane);
  int64_t size() const { return n_; }
  // permute(i) for 0 <= i < n: the plain one-index reference of evaluate.
  int64_t operator()(int64_t i) const;
  // out[j] = permute(first + j) for 0 <= j < count, first + count <= n. Evaluates 256
  // indices in lockstep so the compiler vectorises the Philox rounds; serial (callers
  // parallelise over ranges).
  void evaluate(int64_t first, int64_t count, int64_t* out) const;

 private:
  uint64_t encrypt(uint64_t x) const;  // one pass of the Feistel network on [0, 2^b)

  KeyedRng rng_;
  int64_t n_;
  uint32_t lane_;
  int bits_;        // b
  int left_bits_;   // u
  int right_bits_;  // v
};

// permute(0), ..., permute(k - 1) of KeyedPermutation(rng, n, lane), 0 <= k <= n: the first k
// entries of a keyed random permutation of [0, n), so a smaller k's draw is a prefix of a larger
// one's. O(1) memory beyond the result; ranges of indices run on the OpenMP threads, and the
// result is the same for every thread count.
std::vector<int64_t> permutation_prefix(const KeyedRng& rng, int64_t n, int64_t k, uint32_t lane);

}  // namespace fracsweep
