"""Per-step statistics summed where they were computed (on the training device), so that a step
never waits for the host; `means` reads them all in one transfer."""

from __future__ import annotations

import torch


class StepStatistics:
    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.first_step = 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for name, value in stats.items():
            self.sums[name] = self.sums[name] + value.float() if name in self.sums else value.float()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        values = torch.stack(list(self.sums.values())).cpu().tolist()
        return {name: v / self.counts[name] for name, v in zip(self.sums, values)}

    def reset(self, step: int) -> None:
        self.sums, self.counts, self.first_step = {}, {}, step
