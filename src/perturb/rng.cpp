#include "fracsweep/perturb/rng.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

uint64_t key_from_text(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  for (unsigned char byte : text) {
    hash ^= byte;
    hash *= 0x100000001b3ULL;  // FNV-1a 64 prime
  }
  // SplitMix64 finaliser: spreads FNV's weak low-bit avalanche over all 64 bits.
  hash ^= hash >> 30;
  hash *= 0xbf58476d1ce4e5b9ULL;
  hash ^= hash >> 27;
  hash *= 0x94d049bb133111ebULL;
  hash ^= hash >> 31;
  return hash;
}

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint64_t multiplier0 = 0xD2511F53, multiplier1 = 0xCD9E8D57;
  constexpr uint32_t weyl0 = 0x9E3779B9, weyl1 = 0xBB67AE85;
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = multiplier0 * ctr[0];
    const uint64_t product1 = multiplier1 * ctr[2];
    ctr = {static_cast<uint32_t>(product1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(product1),
           static_cast<uint32_t>(product0 >> 32) ^ ctr[3] ^ key[1],
           static_cast<uint32_t>(product0)};
    key[0] += weyl0;
    key[1] += weyl1;
  }
  return ctr;
}

uint64_t KeyedRng::u64(uint64_t index, uint32_t lane, uint32_t attempt) const {
  const auto block = philox4x32_10(
      {static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), lane, attempt},
      {static_cast<uint32_t>(key_), static_cast<uint32_t>(key_ >> 32)});
  return uint64_t{block[0]} | uint64_t{block[1]} << 32;
}

uint64_t KeyedRng::below(uint64_t n, uint64_t index, uint32_t lane) const {
  return below_from(n, u64(index, lane, 0), index, lane);
}

uint64_t KeyedRng::below_from(uint64_t n, uint64_t draw, uint64_t index, uint32_t lane) const {
  // Lemire (2019): the high word of r * n is uniform in [0, n) once low words below
  // (2^64 - n) mod n are rejected.
  const uint64_t threshold = (0 - n) % n;
  for (uint32_t attempt = 1;; ++attempt) {
    const unsigned __int128 product = static_cast<unsigned __int128>(draw) * n;
    if (static_cast<uint64_t>(product) >= threshold) return static_cast<uint64_t>(product >> 64);
    draw = u64(index, lane, attempt);
  }
}

double KeyedRng::uniform01(uint64_t index, uint32_t lane) const {
  return uniform01_from(u64(index, lane));
}

double KeyedRng::uniform01_from(uint64_t draw) {
  return static_cast<double>(draw >> 11) * 0x1.0p-53;
}

double KeyedRng::normal(uint64_t index, uint32_t lane) const {
  return normal_from(u64(index, lane), u64(index, lane + 1));
}

double KeyedRng::normal_from(uint64_t draw, uint64_t next_lane_draw) {
  const double u1 = uniform01_from(draw);
  const double u2 = uniform01_from(next_lane_draw);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

namespace {

constexpr int feistel_rounds = 8;        // see rng.hpp for why eight
constexpr int64_t lockstep_width = 256;  // indices per vectorised batch (4 KB of state)

// Block words 0 and 1 of Philox4x32-10 as u64 composes them. Written with scalar locals (no
// std::array) so a loop over lanes calling it vectorises.
inline uint64_t philox_words01(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                               uint32_t k1) {
  constexpr uint64_t multiplier0 = 0xD2511F53, multiplier1 = 0xCD9E8D57;
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = multiplier0 * c0;
    const uint64_t product1 = multiplier1 * c2;
    const uint32_t next0 = static_cast<uint32_t>(product1 >> 32) ^ c1 ^ k0;
    const uint32_t next2 = static_cast<uint32_t>(product0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(product1);
    c3 = static_cast<uint32_t>(product0);
    c0 = next0;
    c2 = next2;
    k0 += 0x9E3779B9;
    k1 += 0xBB67AE85;
  }
  return uint64_t{c0} | uint64_t{c1} << 32;
}

// Block word 0 of Philox4x32-10: the Feistel round function needs at most 32 bits (the
// compiler drops the unused half).
inline uint32_t philox_word0(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  return static_cast<uint32_t>(philox_words01(c0, c1, c2, c3, k0, k1));
}

uint32_t low_bits_mask(int bits) {
  return bits >= 32 ? 0xffffffffu : (uint32_t{1} << bits) - 1;
}

}  // namespace

void KeyedRng::u64_at(const uint64_t* indices, int64_t count, uint32_t lane, uint64_t* out) const {
  const auto key0 = static_cast<uint32_t>(key_), key1 = static_cast<uint32_t>(key_ >> 32);
  for (int64_t j = 0; j < count; ++j) {  // vectorised: no branch, no cross-lane step
    const uint64_t index = indices[j];
    out[j] = philox_words01(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), lane,
                            0, key0, key1);
  }
}

KeyedPermutation::KeyedPermutation(const KeyedRng& rng, int64_t n, uint32_t lane,
                                   int64_t evaluations)
    : rng_(rng), n_(n), lane_(lane) {
  check_invariant(n >= 1, "a keyed permutation needs n >= 1");
  bits_ = 10;  // parts of at least 5 bits (rng.hpp)
  while ((uint64_t{1} << bits_) < static_cast<uint64_t>(n)) ++bits_;
  left_bits_ = bits_ / 2;
  right_bits_ = bits_ - left_bits_;
  if (evaluations / tabulate_factor >= table_entries()) fill_round_tables();
}

int64_t KeyedPermutation::table_entries() const {
  return 4 * ((int64_t{1} << left_bits_) + (int64_t{1} << right_bits_));
}

uint32_t KeyedPermutation::round_function(int round, uint32_t right) const {
  const int output_bits = round % 2 == 0 ? left_bits_ : right_bits_;  // the width of A
  const auto mixed = static_cast<uint32_t>(
      rng_.u64(right | static_cast<uint64_t>(bits_) << 32, lane_, static_cast<uint32_t>(round)));
  return mixed & low_bits_mask(output_bits);
}

void KeyedPermutation::fill_round_tables() {
  int64_t start = 0;
  for (int round = 0; round < feistel_rounds; ++round) {
    round_table_start_[static_cast<size_t>(round)] = start;
    start += int64_t{1} << (round % 2 == 0 ? right_bits_ : left_bits_);  // the width of B
  }
  round_tables_.resize(static_cast<size_t>(start));
  const auto key0 = static_cast<uint32_t>(rng_.key()),
             key1 = static_cast<uint32_t>(rng_.key() >> 32);
  const auto width_word = static_cast<uint32_t>(bits_);
  for (int round = 0; round < feistel_rounds; ++round) {
    const auto begin = round_table_start_[static_cast<size_t>(round)];
    const int64_t size = int64_t{1} << (round % 2 == 0 ? right_bits_ : left_bits_);
    const uint32_t output_mask = low_bits_mask(round % 2 == 0 ? left_bits_ : right_bits_);
    uint32_t* table = round_tables_.data() + begin;  // (2^width of B) round `round` at each B
#pragma omp parallel for schedule(static) if (size > 8192)
    for (int64_t right = 0; right < size; ++right) {  // vectorised, as evaluate's rounds
      table[right] = philox_word0(static_cast<uint32_t>(right), width_word, lane_,
                                  static_cast<uint32_t>(round), key0, key1) &
                     output_mask;
    }
  }
}

uint64_t KeyedPermutation::encrypt(uint64_t x) const {
  auto left = static_cast<uint32_t>(x >> right_bits_);
  auto right = static_cast<uint32_t>(x & low_bits_mask(right_bits_));
  for (int round = 0; round < feistel_rounds; ++round) {
    const uint32_t next = left ^ round_function(round, right);
    left = right;
    right = next;
  }
  return uint64_t{left} << right_bits_ | right;
}

uint64_t KeyedPermutation::decrypt(uint64_t x) const {
  auto left = static_cast<uint32_t>(x >> right_bits_);
  auto right = static_cast<uint32_t>(x & low_bits_mask(right_bits_));
  for (int round = feistel_rounds - 1; round >= 0; --round) {
    const uint32_t before = right ^ round_function(round, left);
    right = left;
    left = before;
  }
  return uint64_t{left} << right_bits_ | right;
}

int64_t KeyedPermutation::inverse(int64_t x) const {
  check_invariant(x >= 0 && x < n_, "permuted index outside [0, n)");
  uint64_t i = decrypt(static_cast<uint64_t>(x));
  while (i >= static_cast<uint64_t>(n_)) i = decrypt(i);
  return static_cast<int64_t>(i);
}

int64_t KeyedPermutation::operator()(int64_t i) const {
  check_invariant(i >= 0 && i < n_, "permutation index outside [0, n)");
  uint64_t x = encrypt(static_cast<uint64_t>(i));
  while (x >= static_cast<uint64_t>(n_)) x = encrypt(x);
  return static_cast<int64_t>(x);
}

template <typename Rounds>
void KeyedPermutation::evaluate_with(int64_t first, int64_t count, int64_t* out,
                                     const Rounds& rounds) const {
  const uint32_t right_mask = low_bits_mask(right_bits_);
  uint32_t left[lockstep_width];   // (pending) part A of each value still walking
  uint32_t right[lockstep_width];  // (pending) part B
  int64_t slot[lockstep_width];    // (pending) where each value goes in out
  for (int64_t batch_start = 0; batch_start < count; batch_start += lockstep_width) {
    int64_t pending = std::min(lockstep_width, count - batch_start);
    for (int64_t j = 0; j < pending; ++j) {
      const auto x = static_cast<uint64_t>(first + batch_start + j);
      left[j] = static_cast<uint32_t>(x >> right_bits_);
      right[j] = static_cast<uint32_t>(x & right_mask);
      slot[j] = batch_start + j;
    }
    while (pending > 0) {  // one encryption of every pending value, then keep those >= n
      rounds(left, right, pending);
      int64_t still_outside = 0;
      for (int64_t j = 0; j < pending; ++j) {
        const uint64_t x = uint64_t{left[j]} << right_bits_ | right[j];
        if (x < static_cast<uint64_t>(n_)) {
          out[slot[j]] = static_cast<int64_t>(x);
        } else {
          left[still_outside] = left[j];
          right[still_outside] = right[j];
          slot[still_outside] = slot[j];
          ++still_outside;
        }
      }
      pending = still_outside;
    }
  }
}

void KeyedPermutation::evaluate(int64_t first, int64_t count, int64_t* out) const {
  check_invariant(first >= 0 && count >= 0 && first <= n_ - count,
                  "permutation range outside [0, n)");
  evaluate_or_invert<true>(first, count, out);
}

void KeyedPermutation::invert(int64_t first, int64_t count, int64_t* out) const {
  check_invariant(first >= 0 && count >= 0 && first <= n_ - count, "permuted range outside [0, n)");
  evaluate_or_invert<false>(first, count, out);
}

template <bool forward>
void KeyedPermutation::evaluate_or_invert(int64_t first, int64_t count, int64_t* out) const {
  // Forward round r: A, B = B, A xor F_r(B); in reverse (r = 7 .. 0): A, B = B xor F_r(A), A.
  // Either way one part is xored with F_r of the other and the parts swap places.
  if (tabulated()) {
    evaluate_with(first, count, out, [this](uint32_t* left, uint32_t* right, int64_t pending) {
      for (int step = 0; step < feistel_rounds; ++step) {
        const int round = forward ? step : feistel_rounds - 1 - step;
        const uint32_t* table =  // (2^width of B) this round's function
            round_tables_.data() + round_table_start_[static_cast<size_t>(round)];
        uint32_t* input = forward ? right : left;
        uint32_t* mixed = forward ? left : right;
        for (int64_t j = 0; j < pending; ++j) {
          const uint32_t next = mixed[j] ^ table[input[j]];
          mixed[j] = input[j];
          input[j] = next;
        }
      }
    });
    return;
  }
  const auto key0 = static_cast<uint32_t>(rng_.key()),
             key1 = static_cast<uint32_t>(rng_.key() >> 32);
  const auto width_word = static_cast<uint32_t>(bits_);
  const uint32_t left_mask = low_bits_mask(left_bits_), right_mask = low_bits_mask(right_bits_);
  evaluate_with(first, count, out, [&](uint32_t* left, uint32_t* right, int64_t pending) {
    for (int step = 0; step < feistel_rounds; ++step) {
      const int round = forward ? step : feistel_rounds - 1 - step;
      const uint32_t output_mask = round % 2 == 0 ? left_mask : right_mask;
      uint32_t* input = forward ? right : left;
      uint32_t* mixed = forward ? left : right;
      for (int64_t j = 0; j < pending; ++j) {  // vectorised: no branch, no cross-lane step
        const uint32_t function =
            philox_word0(input[j], width_word, lane_, static_cast<uint32_t>(round), key0, key1);
        const uint32_t next = mixed[j] ^ (function & output_mask);
        mixed[j] = input[j];
        input[j] = next;
      }
    }
  });
}

std::vector<int64_t> permutation_prefix(const KeyedRng& rng, int64_t n, int64_t k, uint32_t lane) {
  check_invariant(k >= 0 && k <= n, "permutation prefix longer than the permutation");
  std::vector<int64_t> prefix(static_cast<size_t>(k));  // (k) permute(0), ..., permute(k - 1)
  if (k == 0) return prefix;
  const KeyedPermutation permutation(rng, n, lane, k);
  constexpr int64_t range = 1 << 16;  // indices per parallel task
  // One range runs on the calling thread: starting a team costs more than small k's work.
#pragma omp parallel for schedule(static) if (k > range)
  for (int64_t first = 0; first < k; first += range) {
    permutation.evaluate(first, std::min(range, k - first), prefix.data() + first);
  }
  return prefix;
}

}  // namespace fracsweep
