"""Mismatched real pairs for a matching-aware discriminator.

A D that judges (image, mask) pairs can pass a fake whose image and mask are each plausible but do
not match: a garment drawn as a skirt and labelled pants. Showing D real images with a corrupted copy
of their own mask as fakes (GAN-CLS's "real image, wrong text") makes it check that each region's
label fits what the image shows there, and its gradient then asks the same of G.

Both corruptions keep the label statistics of real masks, so that D cannot tell a mismatched pair by
its mask alone: 'swap' exchanges two classes the mask already has (the same classes, their areas up
to a swap); 'shuffle' pairs each image with another real image's mask (a real mask in every way, on
the wrong image). A corruption that changes which labels a mask shows (relabelling a class to any
other) would let D learn the labels instead of the match, and G would learn to avoid them; what
each corruption did to a trained model is in docs/results.md."""

from __future__ import annotations

import torch


def swap_two_classes(
    seg: torch.Tensor, u_first: torch.Tensor, u_second: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap the areas of two present non-background classes, sample by sample.

    seg: (B, K, H, W) class area fractions. u_first, u_second: (B, K - 1) uniform draws in [0, 1):
    the first class is the present foreground class with the largest first draw, the second the
    other present one with the largest second draw (each present class equally likely, rare ones as
    often as large ones). Returns the swapped masks and a (B,) bool of the samples with two
    foreground classes to swap (the others are returned unchanged)."""
    b, k = seg.shape[:2]
    present = seg[:, 1:].flatten(2).amax(2) > 0
    first = torch.where(present, u_first, -1.0).argmax(1)
    others = present & (torch.arange(k - 1, device=seg.device) != first[:, None])
    second = torch.where(others, u_second, -1.0).argmax(1)
    changed = others.any(1)
    order = torch.arange(k, device=seg.device).repeat(b, 1)
    rows = torch.arange(b, device=seg.device)
    order[rows, first + 1] = torch.where(changed, second + 1, first + 1)
    order[rows, second + 1] = torch.where(changed, first + 1, second + 1)
    swapped = seg.gather(1, order.view(b, k, 1, 1).expand_as(seg))
    return swapped, changed


def masks_of_others(seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's mask replaced by the previous sample's (the first takes the last's). Returns the
    masks and a (B,) bool, False for a batch of one (its own mask: nothing mismatched)."""
    return seg.roll(1, 0), torch.full((len(seg),), len(seg) > 1, device=seg.device)
