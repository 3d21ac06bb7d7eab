"""Turning seeds into (image, mask) pairs: each sample is a pure function of its seed, so any
sample can be regenerated alone, whatever batch it was generated in.

A seed is any integer in [0, 2**63). PyTorch's CPU generator (mt19937) keeps only the low 32 bits of
the number it is seeded with, so seeds 2**32 apart would draw the same latent: `torch_seed` gives it a
seed below 2**32 unchanged (every such sample keeps the latent it always had) and hashes a larger one
onto 32 bits (both halves mixed). Distinct large seeds then collide only as random 32-bit numbers do:
about one pair in a run of 90,000 pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from styleseg.data.pixels import to_uint8
from styleseg.models.generator import Generator, GeneratorOutput
from styleseg.models.layers import upsample2_smooth
from styleseg.seedhash import seed_hash

LARGE_SEED_SALT = 0x9E3779B9
"""Mixed into the hash of large seeds (keeps it apart from the stream's other hashes of a seed)."""


def torch_seed(seed: int) -> int:
    """The number PyTorch's generator is seeded with for sample seed `seed`: the seed itself below
    2**32, else its 32-bit hash."""
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"a sample seed must be in [0, 2**63), not {seed}")
    return seed if seed < 2**32 else seed_hash(seed, LARGE_SEED_SALT)


def seed_latents(
    G: Generator, seeds: Sequence[int], stage: int, device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """z (B, z_dim) and per-layer noise for each seed, drawn from a generator seeded by it alone."""
    zs, noises = [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(torch_seed(seed))
        zs.append(torch.randn(1, G.cfg.z_dim, generator=gen))
        noises.append(G.make_noise(1, stage, generator=gen, device=torch.device("cpu")))
    z = torch.cat(zs).to(device)
    noise = [torch.cat([n[i] for n in noises]).to(device) for i in range(len(noises[0]))]
    return z, noise


def seed_z(G: Generator, seeds: Sequence[int], device: torch.device) -> torch.Tensor:
    """z (B, z_dim) of each seed alone: the same z as `seed_latents` (its first draw), without noise."""
    z = [torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(torch_seed(seed))) for seed in seeds]
    return torch.cat(z).to(device)


def to_uint8_images(img: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    return to_uint8(img).permute(0, 2, 3, 1).cpu().numpy()


def to_class_ids(seg: torch.Tensor) -> np.ndarray:
    """(B, K, H, W) logits -> (B, H, W) uint8 class ids (argmax)."""
    return seg.argmax(1).to(torch.uint8).cpu().numpy()


def upsample_pair(img: torch.Tensor, seg: torch.Tensor | None, times: int):
    """Image and mask logits up-sampled bilinearly `times` times by 2 (the argmax comes after)."""
    for _ in range(times):
        img = upsample2_smooth(img)
        seg = upsample2_smooth(seg) if seg is not None else None
    return img, seg


@torch.no_grad()
def synthesize(
    G: Generator,
    seeds: Sequence[int],
    stage: int,
    alpha: float,
    seg_level: int | None,
    psi: float | torch.Tensor = 1.0,
    device: torch.device | None = None,
    ws: torch.Tensor | None = None,
) -> GeneratorOutput:
    """Samples for `seeds` at a growth state (psi: one truncation, or one per seed); `ws` replaces
    the mapped styles when given."""
    device = device or G.w_avg.device
    z, noise = seed_latents(G, seeds, stage, device)
    if ws is None:
        ws = G.styles(z, psi)
    img, seg = G.synthesis(ws, stage, alpha, seg_level, noise)
    return GeneratorOutput(img, seg, ws)
