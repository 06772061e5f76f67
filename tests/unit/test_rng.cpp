#define BOOST_TEST_MODULE rng
// The keyed counter-based generator (rng.hpp) against independent truth: Random123's Philox
// known-answer vectors, key_from_text values computed with /usr/bin/python3 from the written
// specification, and chi-square / moment checks of the derived draws. Every key is fixed, so
// the statistical checks are deterministic (no flakiness); their thresholds are the p = 1e-4
// upper quantiles of the chi-square distribution (scipy.stats.chi2.ppf(1 - 1e-4, df)).
#include <algorithm>
#include <array>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <numbers>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "fracsweep/perturb/rng.hpp"

using fracsweep::key_from_text;
using fracsweep::KeyedRng;
using fracsweep::permutation_prefix;
using fracsweep::philox4x32_10;

namespace {

// Pearson's statistic of observed counts against equal expected counts.
double chi_square_uniform(const std::vector<int64_t>& counts) {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  const double expected = total / static_cast<double>(counts.size());
  double statistic = 0;
  for (int64_t observed : counts) {
    const double deviation = static_cast<double>(observed) - expected;
    statistic += deviation * deviation / expected;
  }
  return statistic;
}

// Counts of below(n) over `draws` consecutive indices of one fixed stream.
std::vector<int64_t> below_counts(uint64_t n, int64_t draws, uint32_t lane) {
  const KeyedRng rng(key_from_text("test-rng-below"));
  std::vector<int64_t> counts(n, 0);  // (n) draws per value
  for (int64_t i = 0; i < draws; ++i) ++counts[rng.below(n, static_cast<uint64_t>(i), lane)];
  return counts;
}

}  // namespace

// --- Philox4x32-10 block function: Random123 kat_vectors ---------------------------------

BOOST_AUTO_TEST_CASE(philox_matches_random123_known_answers) {
  using Block = std::array<uint32_t, 4>;
  BOOST_TEST((philox4x32_10({0, 0, 0, 0}, {0, 0}) ==
              Block{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  BOOST_TEST(
      (philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
       Block{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  BOOST_TEST(
      (philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
       Block{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// --- key_from_text: FNV-1a 64 + SplitMix64 finaliser -------------------------------------

BOOST_AUTO_TEST_CASE(key_from_text_matches_python_reference) {
  // Values from a standalone /usr/bin/python3 transcription of the rng.hpp specification.
  BOOST_TEST(key_from_text("") == 0xf52a15e9a9b5e89bULL);
  BOOST_TEST(key_from_text("a") == 0x02c0bdbf481420f8ULL);
  BOOST_TEST(key_from_text("fracsweep") == 0x565d34ad8f192c70ULL);
  BOOST_TEST(
      key_from_text("fracsweep-sites-v1|job_seed=7|model=toy|scope=include=*;exclude=|seed=3") ==
      0x81994c3bcae7dc45ULL);
}

// --- u64 / uniform01 / normal follow the written composition -----------------------------

BOOST_AUTO_TEST_CASE(u64_is_the_low_two_block_words_of_the_documented_counter) {
  const uint64_t key = 0x0123456789abcdefULL;
  const KeyedRng rng(key);
  BOOST_TEST(rng.key() == key);
  const uint64_t index = 0xfedcba9876543210ULL;  // high half set: catches a truncated index
  const auto block = philox4x32_10({0x76543210, 0xfedcba98, 7, 3}, {0x89abcdef, 0x01234567});
  BOOST_TEST(rng.u64(index, 7, 3) == (uint64_t{block[0]} | uint64_t{block[1]} << 32));
  BOOST_TEST(rng.u64(index, 7, 3) != rng.u64(index, 7, 2));
  BOOST_TEST(rng.u64(index, 7, 0) != rng.u64(index, 8, 0));
  BOOST_TEST(rng.u64(index, 7, 0) != KeyedRng(key + 1).u64(index, 7, 0));
}

BOOST_AUTO_TEST_CASE(uniform01_is_the_top_53_bits_and_stays_in_unit_interval) {
  const KeyedRng rng(key_from_text("test-rng-uniform"));
  constexpr int64_t draws = 200000;
  std::vector<int64_t> decile_counts(10, 0);  // (10) draws per tenth of [0, 1)
  double sum = 0;
  for (int64_t i = 0; i < draws; ++i) {
    const double u = rng.uniform01(static_cast<uint64_t>(i), 2);
    BOOST_TEST_REQUIRE((u >= 0.0 && u < 1.0), "uniform01 outside [0, 1): " << u);
    if (i < 1000) {
      BOOST_TEST(u ==
                 std::ldexp(static_cast<double>(rng.u64(static_cast<uint64_t>(i), 2) >> 11), -53));
    }
    ++decile_counts[static_cast<size_t>(u * 10)];
    sum += u;
  }
  // Mean of U(0,1): sd 1/sqrt(12 n) ~ 6.5e-4; 6 sd.
  BOOST_TEST(std::fabs(sum / draws - 0.5) < 0.004);
  BOOST_TEST(chi_square_uniform(decile_counts) < 33.72);  // df 9
}

BOOST_AUTO_TEST_CASE(normal_has_standard_moments_and_shape) {
  const KeyedRng rng(key_from_text("test-rng-normal"));
  constexpr int64_t draws = 200000;
  double sum = 0, sum_sq = 0;
  int64_t within_one_sd = 0;
  for (int64_t i = 0; i < draws; ++i) {
    const double z = rng.normal(static_cast<uint64_t>(i), 1);
    BOOST_TEST_REQUIRE(std::isfinite(z));
    sum += z;
    sum_sq += z * z;
    within_one_sd += std::fabs(z) < 1.0;
  }
  const double mean = sum / draws;
  const double variance = sum_sq / draws - mean * mean;
  // Standard errors at n = 2e5: mean 2.2e-3, variance 3.2e-3, P(|z|<1) 1.0e-3; ~5-6 se.
  BOOST_TEST(std::fabs(mean) < 0.012);
  BOOST_TEST(std::fabs(variance - 1.0) < 0.018);
  BOOST_TEST(std::fabs(static_cast<double>(within_one_sd) / draws - 0.682689) < 0.006);
}

BOOST_AUTO_TEST_CASE(normal_is_box_muller_on_lanes_lane_and_lane_plus_one) {
  const KeyedRng rng(key_from_text("test-rng-box-muller"));
  for (uint64_t i = 0; i < 100; ++i) {
    const double u1 = rng.uniform01(i, 4), u2 = rng.uniform01(i, 5);
    const double expected =
        std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
    BOOST_TEST(rng.normal(i, 4) == expected, boost::test_tools::tolerance(1e-15));
  }
}

// --- below: range and unbiasedness --------------------------------------------------------

BOOST_AUTO_TEST_CASE(below_is_in_range_and_uniform_for_small_and_large_n) {
  // Thresholds: chi-square upper 1e-4 quantile for df = n - 1.
  const std::map<uint64_t, double> critical = {{3, 18.42}, {7, 27.86}, {1000, 1173.85}};
  for (const auto& [n, threshold] : critical) {
    const std::vector<int64_t> counts = below_counts(n, 200000, 0);  // (n)
    BOOST_TEST(std::accumulate(counts.begin(), counts.end(), int64_t{0}) == 200000);
    BOOST_TEST(chi_square_uniform(counts) < threshold, "n = " << n);
  }
  const KeyedRng rng(key_from_text("test-rng-below-range"));
  for (uint64_t i = 0; i < 1000; ++i) {
    BOOST_TEST(rng.below(1, i, 0) == 0u);
    BOOST_TEST(rng.below(UINT64_MAX, i, 0) < UINT64_MAX);
  }
}

BOOST_AUTO_TEST_CASE(below_rejects_the_biased_low_words) {
  // n = 3 * 2^62: without rejection the multiply-shift maps 2 of every 4 raw words to
  // values x with x % 3 == 0 (probability 1/2 instead of 1/3). With Lemire's rejection the
  // residues are uniform.
  const uint64_t n = uint64_t{3} << 62;
  const KeyedRng rng(key_from_text("test-rng-rejection"));
  std::vector<int64_t> residue_counts(3, 0);  // (3) draws per x % 3
  for (uint64_t i = 0; i < 30000; ++i) {
    const uint64_t x = rng.below(n, i, 0);
    BOOST_TEST_REQUIRE(x < n);
    ++residue_counts[x % 3];
  }
  BOOST_TEST(chi_square_uniform(residue_counts) < 18.42);  // df 2
}

BOOST_AUTO_TEST_CASE(below_follows_the_documented_attempt_sequence) {
  // Plain reference of the rng.hpp rule: attempts 0, 1, ... until the low word of u64 * n is
  // >= (2^64 - n) mod n. n = 2^63 + 1 rejects about half the raw words, so retries happen.
  const uint64_t n = (uint64_t{1} << 63) + 1;
  const KeyedRng rng(key_from_text("test-rng-attempts"));
  const uint64_t threshold = (0 - n) % n;
  int64_t retried = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    uint64_t expected = 0;
    for (uint32_t attempt = 0;; ++attempt) {
      const unsigned __int128 product = static_cast<unsigned __int128>(rng.u64(i, 3, attempt)) * n;
      if (static_cast<uint64_t>(product) >= threshold) {
        expected = static_cast<uint64_t>(product >> 64);
        retried += attempt > 0;
        break;
      }
    }
    BOOST_TEST(rng.below(n, i, 3) == expected);
  }
  BOOST_TEST(retried > 500);  // ~1000 expected: the rejection path was exercised
}

// --- permutation_prefix -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(permutation_prefix_has_distinct_in_range_entries) {
  const KeyedRng rng(key_from_text("test-perm-distinct"));
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {10, 0}, {10, 3}, {1000, 999}, {int64_t{1} << 40, 5000}}) {
    const std::vector<int64_t> prefix = permutation_prefix(rng, n, k, 0);  // (k)
    BOOST_TEST_REQUIRE(static_cast<int64_t>(prefix.size()) == k);
    const std::set<int64_t> unique(prefix.begin(), prefix.end());
    BOOST_TEST(static_cast<int64_t>(unique.size()) == k, "duplicates for n=" << n);
    for (int64_t entry : prefix) BOOST_TEST_REQUIRE((entry >= 0 && entry < n));
  }
}

BOOST_AUTO_TEST_CASE(permutation_prefix_is_nested_and_full_length_is_a_permutation) {
  const KeyedRng rng(key_from_text("test-perm-nested"));
  constexpr int64_t n = 500;
  const std::vector<int64_t> full = permutation_prefix(rng, n, n, 1);  // (n)
  std::vector<int64_t> sorted = full;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(n);  // (n) 0, 1, ..., n-1
  std::iota(identity.begin(), identity.end(), 0);
  BOOST_TEST(sorted == identity);
  BOOST_TEST(full != identity);  // it actually shuffled
  for (int64_t k : {0, 1, 7, 100, 499}) {
    const std::vector<int64_t> prefix = permutation_prefix(rng, n, k, 1);  // (k)
    BOOST_TEST(std::equal(prefix.begin(), prefix.end(), full.begin()), "k = " << k);
  }
}

BOOST_AUTO_TEST_CASE(permutation_prefix_depends_only_on_key_and_lane) {
  const KeyedRng a(key_from_text("test-perm-key-a")), a_again(key_from_text("test-perm-key-a"));
  const KeyedRng b(key_from_text("test-perm-key-b"));
  const auto first = permutation_prefix(a, 100000, 50, 0);
  permutation_prefix(b, 100000, 50, 0);  // unrelated draws in between change nothing
  BOOST_TEST(permutation_prefix(a_again, 100000, 50, 0) == first);
  BOOST_TEST(permutation_prefix(b, 100000, 50, 0) != first);
  BOOST_TEST(permutation_prefix(a, 100000, 50, 1) != first);
}

BOOST_AUTO_TEST_CASE(permutation_prefix_first_entry_is_uniform) {
  constexpr int64_t n = 10, keys = 50000;
  std::vector<int64_t> counts(n, 0);  // (n) keys whose first entry is each value
  for (int64_t key = 0; key < keys; ++key) {
    const KeyedRng rng(key_from_text("test-perm-first-" + std::to_string(key)));
    ++counts[static_cast<size_t>(permutation_prefix(rng, n, 1, 0)[0])];
  }
  BOOST_TEST(chi_square_uniform(counts) < 33.72);  // df 9
}

BOOST_AUTO_TEST_CASE(permutation_prefix_full_permutations_are_uniform) {
  // All 120 orderings of 5 elements, 1000 expected each.
  constexpr int64_t n = 5, keys = 120000;
  std::map<std::vector<int64_t>, int64_t> by_permutation;
  for (int64_t key = 0; key < keys; ++key) {
    const KeyedRng rng(key_from_text("test-perm-full-" + std::to_string(key)));
    ++by_permutation[permutation_prefix(rng, n, n, 0)];
  }
  BOOST_TEST_REQUIRE(by_permutation.size() == 120u);
  std::vector<int64_t> counts;  // (120)
  for (const auto& entry : by_permutation) counts.push_back(entry.second);
  BOOST_TEST(chi_square_uniform(counts) < 185.09);  // df 119
}
