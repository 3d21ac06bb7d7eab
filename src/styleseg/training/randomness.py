"""Counter-based random numbers for one global batch, drawn on the training device.

Every number is a pure function of (seed, step, draw, global sample index, element index), so

- a rank draws only its own samples, on its own device: nothing is drawn on the host and copied
  over, and no rank draws the other ranks' share of the batch;
- N ranks with batch b get exactly the numbers one process with batch N*b gets (sample i of rank r is
  global sample r*b + i), which keeps data-parallel training equal to single-process training;
- the only state is the step, so a resumed run draws what the uninterrupted run drew.

Two paths, one contract. On a CPU, large samples (noise maps, mask noise: at least
`PER_SAMPLE_GENERATOR` numbers each) are filled by the CPU's own generator, seeded per sample from the
counters: torch's generator at full speed, one seeding per sample. Small ones (latents, augmentation
parameters), and every draw on an accelerator, are a hash computed with integer tensor ops: a seeding
per sample would cost more than their numbers on a CPU, and on a GPU a loop over the samples is two
kernel launches per sample where the hash is about fifteen per draw, whatever its size. The
hash numbers an element by its position in the global batch (sample * numbers per sample + element),
spreads that counter with an odd multiplier, adds the draw's key and mixes the sum with a 32-bit
integer mixer (xor-shift / multiply, as in MurmurHash3's finaliser), on int64 tensors holding 32-bit
values with multipliers below 2**31, so that no product overflows.
Uniforms keep the top 24 bits; normals are the inverse error function of one centred uniform, which
never reaches +-1, so every normal is finite (|z| < 5.4)."""

from __future__ import annotations

import math

import torch

from styleseg.seedhash import MASK32, mix32

_SPREAD = 0x61C88647  # odd, below 2**31 (the golden ratio's 32-bit Weyl step, negated)
PER_SAMPLE_GENERATOR = 1024
"""On a CPU: numbers per sample from which a draw seeds the generator per sample instead of hashing."""


def per_sample_threshold(device: torch.device) -> float:
    """Numbers per sample from which draws on `device` seed its generator per sample: on a CPU from
    `PER_SAMPLE_GENERATOR`, on an accelerator never (the hash's launches do not grow with the batch)."""
    return PER_SAMPLE_GENERATOR if device.type == "cpu" else math.inf


class CounterRandom:
    def __init__(
        self,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        per_sample_from: float | None = None,
    ):
        self.seed, self.rank, self.world_size, self.device = seed & MASK32, rank, world_size, torch.device(device)
        self._generator = torch.Generator(self.device)
        self.per_sample_from = per_sample_threshold(self.device) if per_sample_from is None else per_sample_from
        """Numbers per sample from which a draw seeds the generator per sample (infinite: never)."""
        self.start_step(0)

    def start_step(self, step: int) -> None:
        """Numbers of training step `step` (the trainer calls this at the start of every step)."""
        self.step, self.draws = step, 0

    def _next_key(self) -> int:
        """A key for the next draw of this step, the same on every rank (host integers only)."""
        self.draws += 1
        return mix32(mix32(mix32(self.seed) ^ (self.step & MASK32)) ^ self.draws)

    def _bits(self, key: int, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
        """int64 (batch, *shape) of 32-bit hashes of (key, global sample index, element index)."""
        per = math.prod(shape)
        first, end = self.rank * batch * per, (self.rank + 1) * batch * per
        counter = torch.arange(first, end, device=self.device, dtype=torch.int64)
        x = ((counter & MASK32) * _SPREAD + key) & MASK32
        if end > 2**32:  # counters past 32 bits (a global batch of billions of numbers): mix in the rest
            x = mix32(x) ^ (counter >> 32)
        return mix32(x).view(batch, *shape)

    def _per_sample(self, key: int, batch: int, shape: tuple[int, ...], fill: str) -> torch.Tensor:
        """(batch, *shape) filled sample by sample by the device generator, seeded from (key, sample)."""
        out = torch.empty((batch, *shape), device=self.device)
        for i in range(batch):
            self._generator.manual_seed((key << 32) | mix32(key ^ (self.rank * batch + i)))
            getattr(out[i], fill)(generator=self._generator)
        return out

    def _top24(self, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
        """float32 (batch, *shape) of whole numbers in [0, 2**24), exact in float32."""
        return (self._bits(self._next_key(), batch, shape) >> 8).float()

    def rand(self, batch: int, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) float32 (batch, *shape) on the device: this rank's samples of the global batch."""
        if math.prod(shape) >= self.per_sample_from:
            return self._per_sample(self._next_key(), batch, shape, "uniform_")
        return self._top24(batch, shape) * 2.0**-24

    def randn(self, batch: int, *shape: int) -> torch.Tensor:
        """Standard normal float32 (batch, *shape) on the device: this rank's samples of the global batch."""
        if math.prod(shape) >= self.per_sample_from:
            return self._per_sample(self._next_key(), batch, shape, "normal_")
        # k in [0, 2**24) -> (2k + 1) / 2**24 - 1: symmetric in (-1, 1), each value exact in float32
        centred = self._top24(batch, shape) * 2.0**-23 + (2.0**-24 - 1)
        return torch.erfinv(centred) * math.sqrt(2)
