"""The Python mirror of the engine's keyed generator, against published vectors and statistics."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from fracsweep_analysis.rng import (KeyedPermutation, KeyedRng, fisher_yates_prefix, fnv1a64,
                                    key_from_text, permutation_prefix, philox4x32_10,
                                    splitmix64_finalise)
from reference_permutation import reference_permute

# Random123 kat_vectors, philox4x32 with 10 rounds: (counter, key) -> output.
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    assert philox4x32_10(counter, key) == expected


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_u64_packs_index_lane_attempt_into_the_counter(counter, key, expected):
    # rng.hpp: counter = {index lo, index hi, lane, attempt}, key = {key lo, key hi},
    # u64 = block[0] | block[1] << 32; so each KAT vector is one u64 draw.
    rng = KeyedRng(key[0] | key[1] << 32)
    index = counter[0] | counter[1] << 32
    assert rng.u64(index, counter[2], counter[3]) == expected[0] | expected[1] << 32
    array = rng.u64_array(np.array([index], dtype=np.uint64), counter[2], counter[3])
    assert int(array[0]) == expected[0] | expected[1] << 32


def test_fnv1a64_published_vectors():
    # From the FNV reference test suite (Landon Curt Noll).
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_splitmix64_finaliser_reproduces_splitmix64_outputs():
    # SplitMix64 seeded with 0 outputs finaliser(k * golden gamma) for k = 1, 2, 3.
    gamma = 0x9E3779B97F4A7C15
    outputs = [splitmix64_finalise((k * gamma) & (2 ** 64 - 1)) for k in (1, 2, 3)]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_key_from_text_is_fnv_then_finaliser_over_utf8():
    text = "fracsweep-sites-v1|job_seed=1|model=stories260K|scope=include=*;exclude=|seed=0 — ü"
    assert key_from_text(text) == splitmix64_finalise(fnv1a64(text.encode("utf-8")))
    assert key_from_text("") == splitmix64_finalise(0xCBF29CE484222325)
    assert key_from_text("a") != key_from_text("b")


def test_uniform01_is_top_53_bits_of_u64():
    # KAT vector 1 as a draw: key 0, index 0, lane 0 -> u64 0xe169c58d6627e8d5.
    assert KeyedRng(0).uniform01(0, 0) == (0xE169C58D6627E8D5 >> 11) * 2.0 ** -53


def test_normal_is_box_muller_on_two_lanes():
    rng = KeyedRng(key_from_text("normal"))
    u1, u2 = rng.uniform01(77, 5), rng.uniform01(77, 6)
    assert rng.normal(77, 5) == math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def test_normal_draws_are_standard_normal():
    draws = KeyedRng(key_from_text("normal-stats")).normal_array(np.arange(20000, dtype=np.uint64), 1)
    assert stats.kstest(draws, "norm").pvalue > 1e-3
    assert abs(draws.mean()) < 0.03 and abs(draws.std() - 1.0) < 0.03


def test_array_forms_agree_with_scalar_forms():
    rng = KeyedRng(key_from_text("arrays"))
    indices = np.array([0, 1, 2, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 17, 2 ** 64 - 1], dtype=np.uint64)
    indices = np.concatenate([indices, np.arange(500, dtype=np.uint64) * 7919])
    assert [int(v) for v in rng.u64_array(indices, 3, 2)] == [rng.u64(int(i), 3, 2) for i in indices]
    assert list(rng.uniform01_array(indices, 1)) == [rng.uniform01(int(i), 1) for i in indices]
    assert list(rng.normal_array(indices, 1)) == [rng.normal(int(i), 1) for i in indices]
    for n in (1, 6, 2 ** 33 + 5, 2 ** 63 + 1, 2 ** 64 - 1):
        assert [int(v) for v in rng.below_array(n, indices, 0)] == [rng.below(n, int(i), 0) for i in indices]
    varying = np.arange(1, len(indices) + 1, dtype=np.uint64) * np.uint64(2 ** 50 + 3)
    assert ([int(v) for v in rng.below_array(varying, indices, 0)]
            == [rng.below(int(n), int(i), 0) for n, i in zip(varying, indices)])


def test_below_rejects_and_redraws_with_the_next_attempt():
    # n = 2^63 + 1 rejects about half of all first attempts (threshold (2^64 - n) mod n = 2^63 - 1).
    n = 2 ** 63 + 1
    rng = KeyedRng(key_from_text("rejections"))
    first_attempt_rejected = [i for i in range(200) if (rng.u64(i, 0, 0) * n) % 2 ** 64 < 2 ** 63 - 1]
    assert 60 < len(first_attempt_rejected) < 140
    for index in first_attempt_rejected[:20]:
        accepted = next(a for a in itertools.count() if (rng.u64(index, 0, a) * n) % 2 ** 64 >= 2 ** 63 - 1)
        assert rng.below(n, index, 0) == (rng.u64(index, 0, accepted) * n) >> 64


def test_below_is_uniform():
    rng = KeyedRng(key_from_text("uniform"))
    draws = rng.below_array(6, np.arange(60000, dtype=np.uint64), 2)
    assert draws.max() == 5
    assert stats.chisquare(np.bincount(draws.astype(np.int64), minlength=6)).pvalue > 1e-3
    n = 3 * 2 ** 62  # thirds of [0, n) equally likely only if rejection works
    thirds = (rng.below_array(n, np.arange(30000, dtype=np.uint64), 4) // np.uint64(2 ** 62)).astype(np.int64)
    assert thirds.max() == 2
    assert stats.chisquare(np.bincount(thirds, minlength=3)).pvalue > 1e-3


def dense_fisher_yates_prefix(rng: KeyedRng, n: int, k: int, lane: int) -> list[int]:
    """Reference: the full-array shuffle the sparse legacy recipe must reproduce."""
    values = list(range(n))
    for i in range(k):
        j = i + rng.below(n - i, i, lane)
        values[i], values[j] = values[j], values[i]
    return values[:k]


@pytest.mark.parametrize("n,k", [(1, 1), (10, 10), (1000, 37), (5000, 5000), (2 ** 20, 300)])
def test_legacy_fisher_yates_prefix_matches_dense_fisher_yates(n, k):
    rng = KeyedRng(key_from_text(f"perm-{n}-{k}"))
    assert fisher_yates_prefix(rng, n, k, 0).tolist() == dense_fisher_yates_prefix(rng, n, k, 0)


@pytest.mark.parametrize("n", [1, 2, 3, 45, 1024, 1025, 1000003, 2 ** 40 + 7, 2 ** 63 - 1])
def test_permutation_forms_agree_with_the_plain_reference(n):
    key = key_from_text("test-perm-kat")
    permutation = KeyedPermutation(KeyedRng(key), n, 0)
    indices = sorted(i for i in {0, 1, 2, n // 2, n - 1} if i < n)
    expected = [reference_permute(key, n, 0, i) for i in indices]
    assert [permutation(i) for i in indices] == expected
    assert permutation.permute_array(np.array(indices, dtype=np.uint64)).tolist() == expected
    k = min(n, 6)
    assert permutation_prefix(KeyedRng(key), n, k, 0).tolist() == [reference_permute(key, n, 0, i) for i in range(k)]


def test_permutation_known_answers_shared_with_the_engine_tests():
    # The same values are asserted on the engine side (tests/unit/test_rng.cpp).
    rng = KeyedRng(key_from_text("test-perm-kat"))
    assert permutation_prefix(rng, 45, 6, 0).tolist() == [23, 41, 32, 17, 1, 21]
    assert permutation_prefix(rng, 1000, 6, 5).tolist() == [195, 629, 619, 79, 994, 884]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 1023, 1024, 1025, 4097, 100003])
def test_full_prefix_is_a_permutation(n):
    full = permutation_prefix(KeyedRng(key_from_text(f"bijective-{n}")), n, n, 0)
    assert sorted(full.tolist()) == list(range(n))


def test_permutation_prefix_properties():
    rng = KeyedRng(key_from_text("prefix"))
    full = permutation_prefix(rng, 20000, 20000, 0)
    for k in (0, 1, 15, 256, 257, 19999):
        assert permutation_prefix(rng, 20000, k, 0).tolist() == full[:k].tolist()
    assert permutation_prefix(rng, 20000, 50, 1).tolist() != full[:50].tolist()  # lanes differ
    other = KeyedRng(key_from_text("prefix-other"))
    assert permutation_prefix(other, 20000, 50, 0).tolist() != full[:50].tolist()  # keys differ
    with pytest.raises(ValueError):
        permutation_prefix(rng, 5, 6, 0)


def test_first_site_is_uniform_over_keys():
    # permute(0) over 4000 keys at n = 1500, in 10 bins: an unkeyed or biased permutation fails.
    n = 1500
    firsts = [KeyedPermutation(KeyedRng(key_from_text(f"first-{key}")), n, 0)(0) for key in range(4000)]
    assert stats.chisquare(np.bincount(np.array(firsts) * 10 // n, minlength=10)).pvalue > 1e-3
