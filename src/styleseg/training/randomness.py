"""Counter-based random numbers for one global batch, drawn on the training device.

Every number is a pure function of (seed, step, draw, global sample index, element index), so

- a rank draws only its own samples, on its own device: nothing is drawn on the host and copied
  over, and no rank draws the other ranks' share of the batch;
- N ranks with batch b get exactly the numbers one process with batch N*b gets (sample i of rank r is
  global sample r*b + i), which keeps data-parallel training equal to single-process training;
- the only state is the step, so a resumed run draws what the uninterrupted run drew.

Two paths, one contract. Large samples (noise maps, mask noise: at least `PER_SAMPLE_GENERATOR`
numbers each) are filled by the device's own generator, seeded per sample from the counters: torch's
generators at full speed, one seeding per sample. Small ones (latents, augmentation parameters) are a
hash computed with integer tensor ops: a seeding per sample would cost more than their numbers. The
hash is a 32-bit integer mixer (xor-shift / multiply, as in MurmurHash3's finaliser) on int64 tensors
holding 32-bit values, with multipliers below 2**31 so that no product overflows; uniforms keep the
top 24 bits, normals come from the Box-Muller transform of two independent uniforms."""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF
_ODD = (0x7FEB352D, 0x2C1B3C6D)  # odd multipliers below 2**31: a 32-bit value times one fits an int64
PER_SAMPLE_GENERATOR = 1024
"""Numbers per sample from which a draw seeds the device generator per sample instead of hashing."""


def mix32(x):
    """A 32-bit value (Python int or int64 tensor of values in [0, 2**32)) -> its hash, same type."""
    for odd in _ODD:
        x = x ^ (x >> 16)
        x = (x * odd) & _MASK
    return x ^ (x >> 15)


class CounterRandom:
    def __init__(self, seed: int, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.seed, self.rank, self.world_size, self.device = seed & _MASK, rank, world_size, torch.device(device)
        self._generator = torch.Generator(self.device)
        self.start_step(0)

    def start_step(self, step: int) -> None:
        """Numbers of training step `step` (the trainer calls this at the start of every step)."""
        self.step, self.draws = step, 0

    def _next_key(self) -> int:
        """A key for the next draw of this step, the same on every rank (host integers only)."""
        self.draws += 1
        return mix32(mix32(mix32(self.seed) ^ (self.step & _MASK)) ^ self.draws)

    def _bits(self, key: int, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
        """int64 (batch, *shape) of 32-bit hashes of (key, global sample index, element index)."""
        first = self.rank * batch
        sample = torch.arange(first, first + batch, device=self.device, dtype=torch.int64)
        element = torch.arange(math.prod(shape), device=self.device, dtype=torch.int64)
        per_sample = mix32(sample ^ key)
        bits = mix32(mix32(per_sample[:, None] ^ element[None]) ^ key)
        return bits.view(batch, *shape)

    def _per_sample(self, key: int, batch: int, shape: tuple[int, ...], fill: str) -> torch.Tensor:
        """(batch, *shape) filled sample by sample by the device generator, seeded from (key, sample)."""
        out = torch.empty((batch, *shape), device=self.device)
        for i in range(batch):
            self._generator.manual_seed((key << 32) | mix32(key ^ (self.rank * batch + i)))
            getattr(out[i], fill)(generator=self._generator)
        return out

    def _uniform24(self, batch: int, shape: tuple[int, ...], offset: int = 0) -> torch.Tensor:
        return ((self._bits(self._next_key(), batch, shape) >> 8) + offset).float() * 2.0**-24

    def rand(self, batch: int, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) float32 (batch, *shape) on the device: this rank's samples of the global batch."""
        if math.prod(shape) >= PER_SAMPLE_GENERATOR:
            return self._per_sample(self._next_key(), batch, shape, "uniform_")
        return self._uniform24(batch, shape)

    def randn(self, batch: int, *shape: int) -> torch.Tensor:
        """Standard normal float32 (batch, *shape) on the device: this rank's samples of the global batch."""
        if math.prod(shape) >= PER_SAMPLE_GENERATOR:
            return self._per_sample(self._next_key(), batch, shape, "normal_")
        u1 = self._uniform24(batch, shape, offset=1)  # (0, 1]: its log is finite
        return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * self._uniform24(batch, shape))
