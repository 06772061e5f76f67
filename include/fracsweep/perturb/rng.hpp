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
//   inverse(x), x in [0, n): the i with permute(i) = x: decrypt (the rounds in reverse order,
//           r = 7, ..., 0: A, B = B xor F_r(A), A) walked the same way, x = decrypt(x) while
//           x >= n; the cycle of x under encrypt is the cycle under decrypt, reversed.
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

  // Many draws at once: out[j] = u64(indices[j], lane, 0) for 0 <= j < count, evaluated in
  // lockstep so the compiler vectorises the Philox rounds (u64 is the plain reference).
  void u64_at(const uint64_t* indices, int64_t count, uint32_t lane, uint64_t* out) const;
  // below, uniform01 and normal given their attempt-0 draws (`draw` = u64(index, lane, 0),
  // `next_lane_draw` = u64(index, lane + 1, 0)): the functions above are these, so the values
  // are the same bits.
  uint64_t below_from(uint64_t n, uint64_t draw, uint64_t index, uint32_t lane) const;
  static double uniform01_from(uint64_t draw);
  static double normal_from(uint64_t draw, uint64_t next_lane_draw);

 private:
  uint64_t key_;
};

// Name of the site recipe above, stored in results files (root attribute site_recipe) so the
// offline mirror can refuse files whose sites were drawn otherwise.
constexpr const char* site_recipe_name = "feistel-v1";

// The keyed pseudo-random permutation of [0, n) specified above, evaluated per index.
// Immutable: safe to share between threads.
//
// Round tables: round r's function depends on B alone (the key, b, lane and r are fixed), and B
// has v bits at even rounds and u bits at odd ones, so the whole round is a table of 2^v or 2^u
// words: 4 (2^u + 2^v) words for the 8 rounds, e.g. 98,304 (384 KB) at n = 1.3e8. Filling them
// costs one Philox block per entry, once; a lookup then replaces a Philox block per index and
// round. A permutation built for `evaluations` indices at least tabulate_factor times the table
// size fills them (on the OpenMP threads; the entries do not depend on their number), and
// evaluate() looks them up; otherwise it evaluates the rounds directly. Both give the same values.
class KeyedPermutation {
 public:
  // Tabulate from this many planned evaluations per table entry on. A cost estimate, not a
  // measured break-even: filling costs one Philox block per entry, direct evaluation about 8
  // per index, so at 2 evaluations per entry the fill is 1/16 of the direct work it replaces,
  // and the tables take at most 2 bytes per evaluation.
  static constexpr int64_t tabulate_factor = 2;

  // `evaluations`: how many indices the caller will evaluate (e.g. a trial's k); 0 never
  // tabulates.
  KeyedPermutation(const KeyedRng& rng, int64_t n, uint32_t lane, int64_t evaluations = 0);
  int64_t size() const { return n_; }
  // permute(i) for 0 <= i < n: the plain one-index reference of evaluate.
  int64_t operator()(int64_t i) const;
  // out[j] = permute(first + j) for 0 <= j < count, first + count <= n. Evaluates 256
  // indices in lockstep so the compiler vectorises the Philox rounds (or the table lookups);
  // serial (callers parallelise over ranges).
  void evaluate(int64_t first, int64_t count, int64_t* out) const;
  // permute^-1(x) for 0 <= x < n: the plain one-index reference of invert.
  int64_t inverse(int64_t x) const;
  // out[j] = inverse(first + j) for 0 <= j < count, first + count <= n: the rank of every
  // entry of a range of the permuted domain, as evaluate (lockstep, tables when built; serial).
  void invert(int64_t first, int64_t count, int64_t* out) const;
  // Whether evaluate() and invert() look the rounds up in tables.
  bool tabulated() const { return !round_tables_.empty(); }
  // Words in the 8 round tables: 4 (2^u + 2^v).
  int64_t table_entries() const;

 private:
  uint64_t encrypt(uint64_t x) const;  // one pass of the Feistel network on [0, 2^b)
  uint64_t decrypt(uint64_t x) const;  // its inverse
  // Word 0 of round `round`'s Philox block at right part `right`, masked to the round's width.
  uint32_t round_function(int round, uint32_t right) const;
  // The lockstep batches and cycle-walking of evaluate and invert, with `rounds(left, right,
  // pending)` applying the 8 rounds (or their inverses) to the first `pending` entries of the
  // part arrays.
  template <typename Rounds>
  void evaluate_with(int64_t first, int64_t count, int64_t* out, const Rounds& rounds) const;
  // The lockstep 8 rounds forward (evaluate) or in reverse (invert), tabulated or direct.
  template <bool forward>
  void evaluate_or_invert(int64_t first, int64_t count, int64_t* out) const;
  void fill_round_tables();

  KeyedRng rng_;
  int64_t n_;
  uint32_t lane_;
  int bits_;        // b
  int left_bits_;   // u
  int right_bits_;  // v
  // (4 (2^u + 2^v)) round r's function at every B, from round_table_start_[r]; empty: direct
  std::vector<uint32_t> round_tables_;
  std::array<int64_t, 8> round_table_start_{};  // (8) where each round's table begins
};

// permute(0), ..., permute(k - 1) of KeyedPermutation(rng, n, lane), 0 <= k <= n: the first k
// entries of a keyed random permutation of [0, n), so a smaller k's draw is a prefix of a larger
// one's. O(1) memory beyond the result; ranges of indices run on the OpenMP threads, and the
// result is the same for every thread count.
std::vector<int64_t> permutation_prefix(const KeyedRng& rng, int64_t n, int64_t k, uint32_t lane);

}  // namespace fracsweep
