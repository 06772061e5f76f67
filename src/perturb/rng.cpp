#include "fracsweep/perturb/rng.hpp"

#include <cmath>
#include <numbers>
#include <unordered_map>

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
  // Lemire (2019): the high word of r * n is uniform in [0, n) once low words below
  // (2^64 - n) mod n are rejected.
  const uint64_t threshold = (0 - n) % n;
  for (uint32_t attempt = 0;; ++attempt) {
    const unsigned __int128 product = static_cast<unsigned __int128>(u64(index, lane, attempt)) * n;
    if (static_cast<uint64_t>(product) >= threshold) return static_cast<uint64_t>(product >> 64);
  }
}

double KeyedRng::uniform01(uint64_t index, uint32_t lane) const {
  return static_cast<double>(u64(index, lane) >> 11) * 0x1.0p-53;
}

double KeyedRng::normal(uint64_t index, uint32_t lane) const {
  const double u1 = uniform01(index, lane);
  const double u2 = uniform01(index, lane + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::vector<int64_t> permutation_prefix(const KeyedRng& rng, int64_t n, int64_t k, uint32_t lane) {
  std::vector<int64_t> prefix;  // (k) the first k entries of the permutation
  prefix.reserve(static_cast<size_t>(k));
  // Positions >= i whose entry differs from the identity: only O(k) of them ever exist.
  std::unordered_map<int64_t, int64_t> displaced;
  displaced.reserve(static_cast<size_t>(k) * 2);
  auto entry_at = [&](int64_t position) {
    const auto it = displaced.find(position);
    return it == displaced.end() ? position : it->second;
  };
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - i),
                                                         static_cast<uint64_t>(i), lane));
    prefix.push_back(entry_at(j));
    displaced[j] = entry_at(i);
  }
  return prefix;
}

}  // namespace fracsweep
