"""The engine's keyed site permutation (rng.hpp, site recipe "feistel-v1") transcribed plainly,
one index at a time on the KAT-tested Philox block function: the independent truth that
fracsweep_analysis.rng (vectorised) and the engine are tested against."""
from fracsweep_analysis.rng import philox4x32_10


def reference_permute(key: int, n: int, lane: int, index: int) -> int:
    """permute(index) of the keyed permutation of [0, n) with stream key `key`."""
    bits = 10
    while 2 ** bits < n:
        bits += 1
    u, v = bits // 2, bits - bits // 2

    def encrypt(x):
        a, b = x // 2 ** v, x % 2 ** v
        for r in range(8):
            m = u if r % 2 == 0 else v
            word0 = philox4x32_10((b, bits, lane, r), (key % 2 ** 32, key // 2 ** 32))[0]
            a, b = b, a ^ (word0 % 2 ** m)
        return a * 2 ** v + b

    x = encrypt(index)
    while x >= n:
        x = encrypt(x)
    return x
