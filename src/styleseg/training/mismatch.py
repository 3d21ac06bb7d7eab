"""Mismatched real pairs for a matching-aware discriminator.

A D that judges (image, mask) pairs can pass a fake whose image and mask are each plausible but do
not match: a garment drawn as a skirt and labelled pants. Showing D real images with a corrupted copy
of their own mask as fakes (GAN-CLS's "real image, wrong text") makes it check that each region's
label fits what the image shows there, and its gradient then asks the same of G."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def relabel_one_class(
    seg: torch.Tensor, u_source: torch.Tensor, u_target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move all of one present non-background class's area to another class, sample by sample.

    seg: (B, K, H, W) class area fractions, K >= 2. u_source: (B, K - 1) and u_target: (B,) uniform
    draws in [0, 1): the source is the present foreground class with the largest draw (each present
    class equally likely, rare ones as often as large ones), the target any other class, background
    included (a region erased). Returns the relabelled masks and a (B,) bool of the samples that had
    a foreground class to move (the others are returned unchanged)."""
    b, k = seg.shape[:2]
    present = seg[:, 1:].flatten(2).amax(2) > 0
    source = torch.where(present, u_source, -1.0).argmax(1) + 1
    step = 1 + (u_target * (k - 1)).long().clamp_max(k - 2)  # 1 .. K-1: never the source itself
    target = (source + step) % k
    changed = present.any(1)
    moved = seg.gather(1, source.view(b, 1, 1, 1).expand(b, 1, *seg.shape[2:]))
    shift = F.one_hot(target, k).to(seg.dtype) - F.one_hot(source, k).to(seg.dtype)
    relabelled = seg + shift.view(b, k, 1, 1) * moved * changed.view(b, 1, 1, 1).to(seg.dtype)
    return relabelled, changed
