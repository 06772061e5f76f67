"""The engine's keyed counter-based generator, bit for bit (include/fracsweep/rng.hpp).

Every function here has a scalar form on Python ints (the reference: plain, obviously
correct) and, where a trial needs many draws, an array form on numpy uint64 that must agree
with it exactly. Transcendental functions (log, cos) are taken from Python's ``math`` module,
which calls the same C library as the engine; numpy's vectorised versions may differ in the
last bit, so they are not used for values that must match the engine.

Specification (rng.hpp):
  key   = key_from_text(text): FNV-1a 64 over the UTF-8 bytes, then the SplitMix64 finaliser.
  block = Philox4x32-10(counter = {index lo32, index hi32, lane, attempt},
                        key = {key lo32, key hi32})
  u64(index, lane, attempt) = block[0] | block[1] << 32
  below(n, index, lane): Lemire multiply-shift with rejection over attempts 0, 1, ...
  uniform01(index, lane) = (u64(index, lane, 0) >> 11) * 2^-53
  normal(index, lane) = sqrt(-2 ln(1 - u1)) cos(2 pi u2), u1, u2 = uniform01 on lanes lane, lane+1

Sites (rng.hpp, site recipe "feistel-v1"): permutation_prefix(rng, n, k, lane) is
permute(0), ..., permute(k - 1) of a keyed permutation of [0, n): an 8-round Feistel network on
[0, 2^b), b = max(10, ceil(log2 n)), parts of u = b // 2 and v = b - u bits (FF1's alternating
layout), round r: C = A xor (u64(B | b << 32, lane, r) mod 2^m), m = u (r even) or v (r odd),
A, B = B, C; then cycle-walking into [0, n). Files written before the recipe attribute existed
used the sparse Fisher-Yates shuffle, fisher_yates_prefix (site recipe "fisher-yates").
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

FNV64_OFFSET_BASIS = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3

PHILOX_M0 = 0xD2511F53  # multiplier applied to counter word 0
PHILOX_M1 = 0xCD9E8D57  # multiplier applied to counter word 2
PHILOX_W0 = 0x9E3779B9  # Weyl key increment, key word 0 (golden ratio)
PHILOX_W1 = 0xBB67AE85  # Weyl key increment, key word 1 (sqrt(3) - 1)
PHILOX_ROUNDS = 10

TWO_POW_MINUS_53 = 2.0 ** -53


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64-bit, over `data`."""
    state = FNV64_OFFSET_BASIS
    for byte in data:
        state = ((state ^ byte) * FNV64_PRIME) & MASK64
    return state


def splitmix64_finalise(z: int) -> int:
    """The SplitMix64 output mix (no increment): a bijection on 64-bit integers."""
    z &= MASK64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z


def key_from_text(text: str) -> int:
    """The 64-bit stream key of a key text (see perturb.hpp for the texts)."""
    return splitmix64_finalise(fnv1a64(text.encode("utf-8")))


def philox4x32_10(counter: Sequence[int], key: Sequence[int]) -> tuple[int, int, int, int]:
    """One Philox4x32-10 block: four 32-bit counter words and two 32-bit key words."""
    c0, c1, c2, c3 = (word & MASK32 for word in counter)
    k0, k1 = (word & MASK32 for word in key)
    for round_index in range(PHILOX_ROUNDS):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        product0 = PHILOX_M0 * c0
        product1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((product1 >> 32) ^ c1 ^ k0, product1 & MASK32,
                          (product0 >> 32) ^ c3 ^ k1, product0 & MASK32)
    return c0, c1, c2, c3


def _philox4x32_10_arrays(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray,
                          key: int) -> tuple[np.ndarray, np.ndarray]:
    """Array Philox on uint64 arrays holding 32-bit words; returns block words 0 and 1."""
    mask32 = np.uint64(MASK32)
    shift32 = np.uint64(32)
    k0, k1 = key & MASK32, key >> 32
    for round_index in range(PHILOX_ROUNDS):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        product0 = np.uint64(PHILOX_M0) * c0  # (n) exact: 32 x 32 bits fit in 64
        product1 = np.uint64(PHILOX_M1) * c2  # (n)
        c0, c1, c2, c3 = ((product1 >> shift32) ^ c1 ^ np.uint64(k0), product1 & mask32,
                          (product0 >> shift32) ^ c3 ^ np.uint64(k1), product0 & mask32)
    return c0, c1


def mul_64x64_128(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 128-bit products of uint64 arrays, as (high 64 bits, low 64 bits)."""
    mask32 = np.uint64(MASK32)
    shift32 = np.uint64(32)
    a_lo, a_hi = a & mask32, a >> shift32
    b_lo, b_hi = b & mask32, b >> shift32
    lo_lo = a_lo * b_lo  # (n) each partial product < 2^64
    lo_hi = a_lo * b_hi
    hi_lo = a_hi * b_lo
    hi_hi = a_hi * b_hi
    middle = (lo_lo >> shift32) + (lo_hi & mask32) + (hi_lo & mask32)  # < 3 * 2^32
    low = (lo_lo & mask32) | ((middle & mask32) << shift32)
    high = hi_hi + (lo_hi >> shift32) + (hi_lo >> shift32) + (middle >> shift32)
    return high, low


class KeyedRng:
    """A stream keyed by a 64-bit key; every draw is a pure function of (index, lane, attempt)."""

    def __init__(self, key: int):
        if not 0 <= key <= MASK64:
            raise ValueError(f"key must be an unsigned 64-bit integer, got {key}")
        self.key = key

    @classmethod
    def from_text(cls, text: str) -> "KeyedRng":
        return cls(key_from_text(text))

    # --- scalar reference forms -------------------------------------------------------
    def u64(self, index: int, lane: int, attempt: int = 0) -> int:
        block = philox4x32_10((index & MASK32, (index >> 32) & MASK32, lane, attempt),
                              (self.key & MASK32, self.key >> 32))
        return block[0] | (block[1] << 32)

    def below(self, n: int, index: int, lane: int) -> int:
        """Uniform integer in [0, n), n >= 1, unbiased (Lemire's method with rejection)."""
        if not 1 <= n <= MASK64:
            raise ValueError(f"below(n) needs 1 <= n < 2^64, got {n}")
        rejection_threshold = ((1 << 64) - n) % n
        attempt = 0
        while True:
            product = self.u64(index, lane, attempt) * n
            if product & MASK64 >= rejection_threshold:
                return product >> 64
            attempt += 1

    def uniform01(self, index: int, lane: int) -> float:
        return (self.u64(index, lane, 0) >> 11) * TWO_POW_MINUS_53

    def normal(self, index: int, lane: int) -> float:
        u1 = self.uniform01(index, lane)
        u2 = self.uniform01(index, lane + 1)
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)

    # --- array forms (must agree exactly with the scalar forms) -------------------------
    def u64_array(self, indices: np.ndarray, lane: int, attempt: int | np.ndarray = 0) -> np.ndarray:
        """u64 for each index (uint64 array); `attempt` is a scalar or an array like `indices`."""
        index = np.asarray(indices, dtype=np.uint64)
        attempts = np.broadcast_to(np.asarray(attempt, dtype=np.uint64), index.shape)
        word0, word1 = _philox4x32_10_arrays(
            index & np.uint64(MASK32), index >> np.uint64(32),
            np.full(index.shape, lane, dtype=np.uint64), attempts.astype(np.uint64), self.key)
        return word0 | (word1 << np.uint64(32))

    def below_array(self, n: int | np.ndarray, indices: np.ndarray, lane: int) -> np.ndarray:
        """below(n_i, index_i, lane) for each i; `n` is a scalar or an array like `indices`."""
        index = np.asarray(indices, dtype=np.uint64)
        bound = np.broadcast_to(np.asarray(n, dtype=np.uint64), index.shape).copy()
        if np.any(bound == 0):
            raise ValueError("below(n) needs n >= 1")
        rejection_threshold = (np.uint64(0) - bound) % bound  # (2^64 - n) mod n
        result = np.empty(index.shape, dtype=np.uint64)
        pending = np.arange(index.size)  # positions still rejected
        attempt = 0
        while pending.size:
            high, low = mul_64x64_128(self.u64_array(index[pending], lane, attempt), bound[pending])
            accepted = low >= rejection_threshold[pending]
            result[pending[accepted]] = high[accepted]
            pending = pending[~accepted]
            attempt += 1
        return result

    def uniform01_array(self, indices: np.ndarray, lane: int) -> np.ndarray:
        return (self.u64_array(indices, lane) >> np.uint64(11)).astype(np.float64) * TWO_POW_MINUS_53

    def normal_array(self, indices: np.ndarray, lane: int) -> np.ndarray:
        first = self.uniform01_array(indices, lane).tolist()
        second = self.uniform01_array(indices, lane + 1).tolist()
        return np.array([math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
                         for u1, u2 in zip(first, second)], dtype=np.float64)


SITE_RECIPE = "feistel-v1"          # the engine's recipe (rng.hpp site_recipe_name)
LEGACY_SITE_RECIPE = "fisher-yates"  # files without a site_recipe attribute

FEISTEL_ROUNDS = 8
FEISTEL_MIN_BITS = 10
PERMUTATION_CHUNK = 1 << 20  # indices evaluated per numpy pass (bounds the temporary arrays)


class KeyedPermutation:
    """The engine's keyed permutation of [0, n) (rng.hpp KeyedPermutation), n >= 1."""

    def __init__(self, rng: KeyedRng, n: int, lane: int):
        if n < 1:
            raise ValueError(f"a keyed permutation needs n >= 1, got {n}")
        self.rng, self.n, self.lane = rng, n, lane
        self.bits = max(FEISTEL_MIN_BITS, (n - 1).bit_length())  # smallest b with 2^b >= n
        self.left_bits = self.bits // 2
        self.right_bits = self.bits - self.left_bits

    # --- scalar reference forms -------------------------------------------------------
    def encrypt(self, x: int) -> int:
        """One pass of the Feistel network on [0, 2^b)."""
        left, right = x >> self.right_bits, x & ((1 << self.right_bits) - 1)
        for round_index in range(FEISTEL_ROUNDS):
            width = self.left_bits if round_index % 2 == 0 else self.right_bits
            mixed = self.rng.u64(right | self.bits << 32, self.lane, round_index)
            left, right = right, left ^ (mixed & ((1 << width) - 1))
        return left << self.right_bits | right

    def __call__(self, index: int) -> int:
        if not 0 <= index < self.n:
            raise ValueError(f"permutation index {index} outside [0, {self.n})")
        x = self.encrypt(index)
        while x >= self.n:  # cycle-walking back into [0, n)
            x = self.encrypt(x)
        return x

    # --- array forms (must agree exactly with the scalar forms) -------------------------
    def encrypt_array(self, x: np.ndarray) -> np.ndarray:
        right_mask = np.uint64((1 << self.right_bits) - 1)
        left, right = x >> np.uint64(self.right_bits), x & right_mask
        width_word = np.full(x.shape, self.bits, dtype=np.uint64)
        lane_word = np.full(x.shape, self.lane, dtype=np.uint64)
        for round_index in range(FEISTEL_ROUNDS):
            width = self.left_bits if round_index % 2 == 0 else self.right_bits
            mixed, _ = _philox4x32_10_arrays(right, width_word, lane_word,
                                             np.full(x.shape, round_index, dtype=np.uint64), self.key)
            left, right = right, left ^ (mixed & np.uint64((1 << width) - 1))
        return (left << np.uint64(self.right_bits)) | right

    @property
    def key(self) -> int:
        return self.rng.key

    def permute_array(self, indices: np.ndarray) -> np.ndarray:
        """permute(i) for each i of `indices` (uint64, all in [0, n))."""
        x = self.encrypt_array(np.asarray(indices, dtype=np.uint64))
        walking = np.flatnonzero(x >= np.uint64(self.n))  # positions still outside [0, n)
        while walking.size:
            x[walking] = self.encrypt_array(x[walking])
            walking = walking[x[walking] >= np.uint64(self.n)]
        return x


def permutation_prefix(rng: KeyedRng, n: int, k: int, lane: int) -> np.ndarray:
    """permute(0), ..., permute(k - 1) of KeyedPermutation(rng, n, lane), int64 (k): the
    engine's sites as in-scope indices (site recipe "feistel-v1")."""
    if not 0 <= k <= n:
        raise ValueError(f"permutation_prefix needs 0 <= k <= n, got n={n}, k={k}")
    prefix = np.empty(k, dtype=np.int64)  # (k)
    if k == 0:
        return prefix
    permutation = KeyedPermutation(rng, n, lane)
    for first in range(0, k, PERMUTATION_CHUNK):
        stop = min(k, first + PERMUTATION_CHUNK)
        prefix[first:stop] = permutation.permute_array(np.arange(first, stop, dtype=np.uint64))
    return prefix


def fisher_yates_prefix(rng: KeyedRng, n: int, k: int, lane: int) -> np.ndarray:
    """The legacy site recipe ("fisher-yates", results files without a site_recipe attribute):
    the first k entries of a sparse Fisher-Yates shuffle of [0, n).

    Step i swaps position i with i + below(n - i, i, lane); positions never swapped hold their
    own index, so only touched positions are stored. Returns int64 (k).
    """
    if not 0 <= k <= n:
        raise ValueError(f"fisher_yates_prefix needs 0 <= k <= n, got n={n}, k={k}")
    steps = np.arange(k, dtype=np.uint64)
    partners = (steps + rng.below_array(np.uint64(n) - steps, steps, lane)).tolist()  # (k)
    moved: dict[int, int] = {}  # position -> value now there, for positions swapped so far
    prefix = np.empty(k, dtype=np.int64)  # (k) the permutation's first k entries
    for position, partner in enumerate(partners):
        value_here = moved.pop(position, position)
        prefix[position] = moved.get(partner, partner) if partner != position else value_here
        if partner != position:
            moved[partner] = value_here
    return prefix


SITE_PREFIXES = {SITE_RECIPE: permutation_prefix, LEGACY_SITE_RECIPE: fisher_yates_prefix}
