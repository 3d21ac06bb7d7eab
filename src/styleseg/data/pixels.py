"""The photo value convention, in one place: uint8 0..255 on disk, float in [-1, 1] in the networks
(x = u / 127.5 - 1). Layout is the caller's; these work on any shape."""

from __future__ import annotations

import torch


def to_signed(photos: torch.Tensor) -> torch.Tensor:
    """uint8 (or integer-valued) photos -> float32 in [-1, 1]."""
    return photos.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8, to the nearest value (the inverse of `to_signed` on its values);
    out-of-range values clamp."""
    # +128 then truncation rounds x * 127.5 + 127.5 to nearest; computed in fp32 whatever x's dtype
    return (x.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> the float32 it reads back as after being written as an 8-bit image."""
    return to_signed(to_uint8(x))
