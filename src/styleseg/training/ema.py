"""Exponential moving average of generator weights, with a half-life in kimg."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, images_seen: int, half_life_kimg: float, rampup: float | None) -> float:
    """Per-step decay so that weights halve their influence every `half_life_kimg`."""
    half_life = half_life_kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch / max(half_life, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    # One multi-tensor call for all parameters (as torch.optim's foreach paths): a loop would be a
    # kernel launch per parameter, which on a GPU costs more than the arithmetic.
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - beta)
    buffers = list(ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(model.buffers()))
