"""Integer hashes for seeds: a 32-bit mixer (xor-shift / multiply, as in MurmurHash3's finaliser)
for Python ints and int64 tensors alike, and the hash of a whole seed below 2**63."""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
_ODD = (0x7FEB352D, 0x2C1B3C6D)  # odd multipliers below 2**31: a 32-bit value times one fits an int64


def mix32(x):
    """A 32-bit value (Python int or int64 tensor of values in [0, 2**32)) -> its hash, same type."""
    for odd in _ODD:
        x = x ^ (x >> 16)
        x = (x * odd) & MASK32
    return x ^ (x >> 15)


def seed_hash(seed: int, salt: int = 0) -> int:
    """A 32-bit hash of a seed below 2**63 and a 32-bit salt: both halves of the seed mixed, a
    bijection of the low half for each high half."""
    return mix32(mix32((seed ^ salt) & MASK32) ^ (seed >> 32))
