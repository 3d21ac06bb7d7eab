"""GAN losses and regularisers as pure functions of logits and inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator side of the non-saturating logistic loss."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the batch of the squared gradient norm of D on real inputs (all channels)."""
    # allow_unused: the mask input is unused while D's segmentation input is faded out (seg_alpha 0).
    grads = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True, allow_unused=True)
    return sum(g.float().square().flatten(1).sum(1) for g in grads if g is not None).mean()


def d_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, drift: float = 1e-3) -> torch.Tensor:
    """WGAN critic loss with the small drift term of progressive GAN keeping logits near 0."""
    return fake_logits.mean() - real_logits.mean() + drift * real_logits.square().mean()


def g_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def gradient_penalty(mixed_logits: torch.Tensor, mixed_inputs: list[torch.Tensor]) -> torch.Tensor:
    """WGAN-GP: (|grad D(x_hat)| - 1)^2 at random interpolates x_hat of real and fake inputs."""
    grads = torch.autograd.grad(mixed_logits.sum(), mixed_inputs, create_graph=True, allow_unused=True)
    norm = torch.sqrt(sum(g.float().square().flatten(1).sum(1) for g in grads if g is not None) + 1e-12)
    return (norm - 1).square().mean()
