#define BOOST_TEST_MODULE rng
// The keyed counter-based generator (rng.hpp) against independent truth: Random123's Philox
// known-answer vectors, key_from_text values computed with /usr/bin/python3 from the written
// specification, the keyed permutation against the Python mirror and a plain transcription,
// and chi-square / moment checks of the derived draws. Every key is fixed, so
// the statistical checks are deterministic (no flakiness); their thresholds are the p = 1e-4
// upper quantiles of the chi-square distribution (scipy.stats.chi2.ppf(1 - 1e-4, df)).
#include <omp.h>

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
using fracsweep::KeyedPermutation;
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

BOOST_AUTO_TEST_CASE(u64_at_and_the_from_draw_forms_equal_the_one_draw_functions) {
  // Lockstep draws against u64 one by one, at indices across the 32-bit carry in a scrambled
  // order; below_from, uniform01_from and normal_from given those draws against below,
  // uniform01 and normal (n = 7 and 2^63 + 1 reject some first draws: the retry must be the
  // documented attempt 1).
  const KeyedRng rng(key_from_text("test-rng-range"));
  std::vector<uint64_t> indices(1500);  // (1500) around 2^32, scrambled
  for (size_t j = 0; j < indices.size(); ++j) {
    indices[j] = (uint64_t{1} << 32) - 700 + (j * 7 % indices.size());
  }
  std::vector<uint64_t> lane3(1500), lane4(1500);  // (1500) draws at indices[j]
  rng.u64_at(indices.data(), 1500, 3, lane3.data());
  rng.u64_at(indices.data(), 1500, 4, lane4.data());
  int64_t rejected = 0;
  for (size_t j = 0; j < lane3.size(); ++j) {
    const uint64_t i = indices[j];
    BOOST_TEST_REQUIRE(lane3[j] == rng.u64(i, 3, 0));
    BOOST_TEST_REQUIRE(lane4[j] == rng.u64(i, 4, 0));
    for (uint64_t n : {uint64_t{7}, uint64_t{16}, (uint64_t{1} << 63) + 1}) {
      BOOST_TEST_REQUIRE(rng.below_from(n, lane3[j], i, 3) == rng.below(n, i, 3));
    }
    const uint64_t big = (uint64_t{1} << 63) + 1;  // rejects low words below 2^63 - 1
    rejected +=
        static_cast<uint64_t>(static_cast<unsigned __int128>(lane3[j]) * big) < (0 - big) % big;
    BOOST_TEST_REQUIRE(KeyedRng::uniform01_from(lane3[j]) == rng.uniform01(i, 3));
    BOOST_TEST_REQUIRE(KeyedRng::normal_from(lane3[j], lane4[j]) == rng.normal(i, 3));
  }
  BOOST_TEST(rejected > 500);  // about half: the retry path ran
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

// --- KeyedPermutation / permutation_prefix (site recipe feistel-v1) -----------------------

namespace {

// Plain transcription of the rng.hpp recipe, on the KAT-tested block function alone: one index
// at a time, no batching, no KeyedRng.
int64_t reference_permute(uint64_t key, int64_t n, uint32_t lane, int64_t i) {
  int bits = 10;
  while ((uint64_t{1} << bits) < static_cast<uint64_t>(n)) ++bits;
  const int u = bits / 2, v = bits - u;
  auto encrypt = [&](uint64_t x) {
    uint64_t a = x >> v, b = x & ((uint64_t{1} << v) - 1);
    for (uint32_t round = 0; round < 8; ++round) {
      const int m = round % 2 == 0 ? u : v;
      const auto block =
          philox4x32_10({static_cast<uint32_t>(b), static_cast<uint32_t>(bits), lane, round},
                        {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)});
      const uint64_t c = a ^ (block[0] & ((uint64_t{1} << m) - 1));
      a = b;
      b = c;
    }
    return a << v | b;
  };
  uint64_t x = encrypt(static_cast<uint64_t>(i));
  while (x >= static_cast<uint64_t>(n)) x = encrypt(x);
  return static_cast<int64_t>(x);
}

}  // namespace

BOOST_AUTO_TEST_CASE(permutation_matches_python_mirror_known_answers) {
  // From analysis/fracsweep_analysis/rng.py (KeyedPermutation, written from the rng.hpp text).
  const KeyedRng rng(key_from_text("test-perm-kat"));
  struct Answer {
    int64_t n;
    std::vector<int64_t> first;  // permute(0), permute(1), ...
    int64_t last;                // permute(n - 1)
  };
  const std::vector<Answer> answers = {
      {1, {0}, 0},
      {3, {2, 0, 1}, 1},
      {45, {23, 41, 32, 17, 1, 21}, 30},
      {1000003, {121153, 522833, 254470, 158347, 528733, 725552}, 927668},
      {(int64_t{1} << 40) + 7,
       {449872985400, 674917259807, 941014822955, 716223596382, 1068151750817, 803843659996},
       102181806193},
      {INT64_MAX,
       {2883713208045741680, 237368089051749672, 560156254167500049, 7059585406508649058,
        4628315180955075894, 6060114133779466644},
       6534105555937763697}};
  for (const Answer& answer : answers) {
    const KeyedPermutation permutation(rng, answer.n, 0);
    const auto count = static_cast<int64_t>(answer.first.size());
    std::vector<int64_t> batch(answer.first.size());  // (count)
    permutation.evaluate(0, count, batch.data());
    BOOST_TEST(batch == answer.first, "n = " << answer.n);
    for (int64_t i = 0; i < count; ++i) BOOST_TEST(permutation(i) == answer.first[i]);
    BOOST_TEST(permutation(answer.n - 1) == answer.last, "n = " << answer.n);
  }
  const KeyedPermutation lane5(rng, 1000, 5);
  const std::vector<int64_t> lane5_first = {195, 629, 619, 79, 994, 884};
  for (int64_t i = 0; i < 6; ++i) BOOST_TEST(lane5(i) == lane5_first[static_cast<size_t>(i)]);
}

BOOST_AUTO_TEST_CASE(batched_evaluation_matches_the_plain_reference) {
  // evaluate() (lockstep batches, compaction of walking lanes) against one-index transcriptions.
  const uint64_t key = key_from_text("test-perm-reference");
  const KeyedRng rng(key);
  for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{700}, int64_t{1024}, int64_t{1025},
                    int64_t{1} << 20, (int64_t{1} << 20) + 1, int64_t{3000017}}) {
    const KeyedPermutation permutation(rng, n, 3);
    for (int64_t first : {int64_t{0}, n / 3, n - std::min<int64_t>(n, 600)}) {
      const int64_t count = std::min<int64_t>(600, n - first);  // spans 256-lane batches
      std::vector<int64_t> batch(static_cast<size_t>(count));   // (count)
      permutation.evaluate(first, count, batch.data());
      for (int64_t j = 0; j < count; ++j) {
        BOOST_TEST_REQUIRE(batch[static_cast<size_t>(j)] == reference_permute(key, n, 3, first + j),
                           "n = " << n << ", i = " << first + j);
        if (j < 20) BOOST_TEST(permutation(first + j) == batch[static_cast<size_t>(j)]);
      }
    }
  }
}

namespace {

// n at and around the powers of two 2^10 .. 2^32 (b = 10 .. 33, odd and even; 2^j + 1 walks
// about half its encryptions back into [0, n)), plus sizes of no particular form.
std::vector<int64_t> table_test_sizes() {
  std::vector<int64_t> sizes = {1, 2, 3, 700, 1000, 3000017, 130000000};
  for (int power = 10; power <= 32; ++power) {
    const int64_t two = int64_t{1} << power;
    for (int64_t n : {two - 1, two, two + 1}) sizes.push_back(n);
  }
  return sizes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_tables_give_the_plain_reference_values) {
  // A permutation planned for n evaluations tabulates its rounds (from b = 10 to 33); its
  // evaluate() must equal the one-index transcription and the untabulated evaluate().
  const uint64_t key = key_from_text("test-perm-tables");
  const KeyedRng rng(key);
  for (int64_t n : table_test_sizes()) {
    const KeyedPermutation direct(rng, n, 2);
    const KeyedPermutation tabulated(rng, n, 2, n);
    BOOST_TEST(!direct.tabulated());
    BOOST_TEST(tabulated.tabulated() ==
                   (n / KeyedPermutation::tabulate_factor >= tabulated.table_entries()),
               "n = " << n);
    for (int64_t first : {int64_t{0}, n / 3, n - std::min<int64_t>(n, 300)}) {
      const int64_t count = std::min<int64_t>(300, n - first);     // spans 256-lane batches
      std::vector<int64_t> looked_up(static_cast<size_t>(count));  // (count) tabulated
      std::vector<int64_t> computed(static_cast<size_t>(count));   // (count) direct
      tabulated.evaluate(first, count, looked_up.data());
      direct.evaluate(first, count, computed.data());
      BOOST_TEST_REQUIRE(looked_up == computed, "n = " << n << ", first = " << first);
      for (int64_t j = 0; j < count; j += 7) {
        BOOST_TEST_REQUIRE(
            looked_up[static_cast<size_t>(j)] == reference_permute(key, n, 2, first + j),
            "n = " << n << ", i = " << first + j);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(inverse_undoes_the_permutation_tabulated_or_not) {
  // inverse(permute(i)) = i at the table sizes (b = 10 .. 33 around every power of two);
  // invert() (lockstep, direct and tabulated) equals the one-index inverse.
  const KeyedRng rng(key_from_text("test-perm-inverse"));
  for (int64_t n : table_test_sizes()) {
    const KeyedPermutation direct(rng, n, 1);
    const KeyedPermutation tabulated(rng, n, 1, n);
    for (int64_t first : {int64_t{0}, n / 3, n - std::min<int64_t>(n, 300)}) {
      const int64_t count = std::min<int64_t>(300, n - first);     // spans 256-lane batches
      std::vector<int64_t> ranks(static_cast<size_t>(count));      // (count) direct
      std::vector<int64_t> looked_up(static_cast<size_t>(count));  // (count) tabulated
      direct.invert(first, count, ranks.data());
      tabulated.invert(first, count, looked_up.data());
      BOOST_TEST_REQUIRE(looked_up == ranks, "n = " << n << ", first = " << first);
      for (int64_t j = 0; j < count; ++j) {
        const auto x = first + j;
        BOOST_TEST_REQUIRE(ranks[static_cast<size_t>(j)] == direct.inverse(x), "n = " << n);
        if (j % 17 == 0) {
          BOOST_TEST_REQUIRE(direct(ranks[static_cast<size_t>(j)]) == x, "n = " << n);
          BOOST_TEST_REQUIRE(direct.inverse(direct(x)) == x, "n = " << n);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(tables_are_used_from_the_documented_size_on) {
  // b = 20: u = v = 10, 4 (2^10 + 2^10) = 8192 entries.
  const KeyedRng rng(key_from_text("test-perm-table-rule"));
  constexpr int64_t n = 1000003;
  const KeyedPermutation permutation(rng, n, 0);
  BOOST_TEST(permutation.table_entries() == 8192);
  const int64_t threshold = KeyedPermutation::tabulate_factor * 8192;
  BOOST_TEST(!KeyedPermutation(rng, n, 0, threshold - 1).tabulated());
  BOOST_TEST(KeyedPermutation(rng, n, 0, threshold).tabulated());
  // permutation_prefix tabulates from that k on: the prefixes still nest across the switch.
  const std::vector<int64_t> longer = permutation_prefix(rng, n, threshold + 1000, 0);
  for (int64_t k : {threshold - 1, threshold, threshold + 1}) {
    const std::vector<int64_t> prefix = permutation_prefix(rng, n, k, 0);  // (k)
    BOOST_TEST(std::equal(prefix.begin(), prefix.end(), longer.begin()), "k = " << k);
  }
  for (int64_t i : {int64_t{0}, threshold - 1, threshold + 999}) {
    BOOST_TEST(longer[static_cast<size_t>(i)] == permutation(i));
  }
}

BOOST_AUTO_TEST_CASE(round_tables_do_not_depend_on_the_thread_count) {
  // b = 31 and 32: tables of 2^15 and 2^16 entries per round, filled by several threads.
  const KeyedRng rng(key_from_text("test-perm-table-threads"));
  const int threads_before = omp_get_max_threads();
  for (int64_t n : {(int64_t{1} << 30) + 5, int64_t{3000000000}}) {
    std::vector<std::vector<int64_t>> by_threads;  // (2, 2000) per thread count
    for (int threads : {1, 3}) {
      omp_set_num_threads(threads);
      const KeyedPermutation permutation(rng, n, 0, n);
      BOOST_TEST_REQUIRE(permutation.tabulated());
      std::vector<int64_t> values(2000);  // (2000) permute(n / 2), ...
      permutation.evaluate(n / 2, 2000, values.data());
      by_threads.push_back(values);
    }
    BOOST_TEST(by_threads[0] == by_threads[1], "n = " << n);
    const KeyedPermutation direct(rng, n, 0);
    for (size_t j = 0; j < 2000; j += 97) {
      BOOST_TEST(by_threads[0][j] == direct(n / 2 + static_cast<int64_t>(j)));
    }
  }
  omp_set_num_threads(threads_before);
}

BOOST_AUTO_TEST_CASE(full_prefix_is_a_permutation_for_small_and_odd_sizes) {
  const KeyedRng rng(key_from_text("test-perm-bijective"));
  for (int64_t n : {1, 2, 3, 5, 7, 10, 1000, 1023, 1024, 1025, 4097, 65537, 100003, 1 << 19}) {
    const std::vector<int64_t> full = permutation_prefix(rng, n, n, 0);  // (n)
    std::vector<int64_t> sorted = full;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(static_cast<size_t>(n));  // (n) 0, 1, ..., n - 1
    std::iota(identity.begin(), identity.end(), 0);
    BOOST_TEST(sorted == identity, "n = " << n);
    if (n >= 5) BOOST_TEST(full != identity, "n = " << n);  // it actually shuffled
  }
}

BOOST_AUTO_TEST_CASE(large_domains_give_distinct_in_range_entries) {
  const KeyedRng rng(key_from_text("test-perm-large"));
  for (int64_t n : {(int64_t{1} << 40) + 12345, int64_t{1100000000}, INT64_MAX}) {
    const std::vector<int64_t> prefix = permutation_prefix(rng, n, 20000, 0);  // (20000)
    const std::set<int64_t> unique(prefix.begin(), prefix.end());
    BOOST_TEST(unique.size() == prefix.size(), "duplicates for n = " << n);
    for (int64_t entry : prefix) BOOST_TEST_REQUIRE((entry >= 0 && entry < n));
    // Spread over the whole range, not clustered near the indices: mean near n / 2.
    const double mean =
        std::accumulate(prefix.begin(), prefix.end(), 0.0) / static_cast<double>(prefix.size());
    BOOST_TEST(std::fabs(mean / static_cast<double>(n) - 0.5) < 0.02);  // sd 0.002
  }
}

BOOST_AUTO_TEST_CASE(prefixes_nest_and_depend_on_key_and_lane) {
  const KeyedRng rng(key_from_text("test-perm-nested"));
  constexpr int64_t n = 300007;
  const std::vector<int64_t> full = permutation_prefix(rng, n, n, 1);  // (n)
  for (int64_t k : {0, 1, 7, 255, 256, 257, 65536, 65537, 299999}) {
    const std::vector<int64_t> prefix = permutation_prefix(rng, n, k, 1);  // (k)
    BOOST_TEST(std::equal(prefix.begin(), prefix.end(), full.begin()), "k = " << k);
  }
  const KeyedRng other(key_from_text("test-perm-nested-other"));
  const auto first = permutation_prefix(rng, n, 50, 1);
  BOOST_TEST(permutation_prefix(KeyedRng(rng.key()), n, 50, 1) == first);
  BOOST_TEST(permutation_prefix(other, n, 50, 1) != first);
  BOOST_TEST(permutation_prefix(rng, n, 50, 0) != first);
}

BOOST_AUTO_TEST_CASE(prefix_does_not_depend_on_the_thread_count) {
  const KeyedRng rng(key_from_text("test-perm-threads"));
  constexpr int64_t n = 5000011, k = 400000;  // several parallel ranges
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<int64_t> one = permutation_prefix(rng, n, k, 0);
  omp_set_num_threads(3);
  const std::vector<int64_t> three = permutation_prefix(rng, n, k, 0);
  omp_set_num_threads(threads_before);
  BOOST_TEST(one == three);
}

BOOST_AUTO_TEST_CASE(positions_are_uniform_over_keys) {
  // Where each index lands, over 20000 keys at n = 10: Pearson's statistic of the (index,
  // position) table against 2000 per cell has (n - 1)^2 = 81 df. An unkeyed, unshuffled or
  // biased permutation fails by orders of magnitude.
  constexpr int64_t n = 10, keys = 20000;
  std::vector<int64_t> counts(n * n, 0);  // (n * n) keys with permute(i) == j, at i * n + j
  for (int64_t key = 0; key < keys; ++key) {
    const KeyedRng rng(key_from_text("test-perm-position-" + std::to_string(key)));
    const std::vector<int64_t> full = permutation_prefix(rng, n, n, 0);
    for (int64_t i = 0; i < n; ++i) ++counts[static_cast<size_t>(i * n + full[i])];
  }
  BOOST_TEST(chi_square_uniform(counts) < 137.07);  // df 81
}

BOOST_AUTO_TEST_CASE(full_permutations_are_uniform_over_keys) {
  // All 24 orderings of 4 elements, 1000 expected each: the joint law, not just positions.
  constexpr int64_t n = 4, keys = 24000;
  std::map<std::vector<int64_t>, int64_t> by_permutation;
  for (int64_t key = 0; key < keys; ++key) {
    const KeyedRng rng(key_from_text("test-perm-full-" + std::to_string(key)));
    ++by_permutation[permutation_prefix(rng, n, n, 0)];
  }
  BOOST_TEST_REQUIRE(by_permutation.size() == 24u);
  std::vector<int64_t> counts;  // (24)
  for (const auto& entry : by_permutation) counts.push_back(entry.second);
  BOOST_TEST(chi_square_uniform(counts) < 57.07);  // df 23
}

BOOST_AUTO_TEST_CASE(consecutive_entries_are_independent_at_a_real_size) {
  // Within one permutation of a scope-sized n: the pair (permute(i), permute(i + 1)) binned
  // 10 x 10 over 200000 i should fill the cells evenly (Feistel inputs i, i + 1 share all
  // but their low bits, the case too few rounds would leave correlated).
  const KeyedRng rng(key_from_text("test-perm-pairs"));
  constexpr int64_t n = 300007, pairs = 200000;
  const std::vector<int64_t> prefix = permutation_prefix(rng, n, pairs + 1, 0);
  std::vector<int64_t> counts(100, 0);  // (100) pairs per (decile of one, decile of next)
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t a = prefix[static_cast<size_t>(i)] * 10 / n;
    const int64_t b = prefix[static_cast<size_t>(i + 1)] * 10 / n;
    ++counts[static_cast<size_t>(a * 10 + b)];
  }
  BOOST_TEST(chi_square_uniform(counts) < 160.06);  // df 99
}
