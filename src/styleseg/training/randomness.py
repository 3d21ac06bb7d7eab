"""Random numbers for one global batch, sliced per rank.

Every rank draws the whole global batch from the same seeded stream and keeps its own slice, so N
ranks with batch b compute exactly what one process with batch N*b computes, and every rank
consumes the stream identically (their RNG states never diverge)."""

from __future__ import annotations

import torch


class BatchRandom:
    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)

    def _slice(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        return x[self.rank * batch : (self.rank + 1) * batch].to(self.device)

    def randn(self, batch: int, *shape: int) -> torch.Tensor:
        """Normal samples (batch, *shape): this rank's slice of (world_size * batch, *shape)."""
        return self._slice(torch.randn(self.world_size * batch, *shape), batch)

    def rand(self, batch: int, *shape: int) -> torch.Tensor:
        return self._slice(torch.rand(self.world_size * batch, *shape), batch)

    def scalar(self) -> float:
        """One uniform number, the same on every rank."""
        return float(torch.rand(()))

    def randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, ()))
