"""Geometry shared by preparation and training: letterboxing, antialiased resizing, and mask
downsampling that never invents class ids (area fractions, then the majority class)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def parse_resolution(text: str) -> tuple[int, int]:
    """'96x64' -> (96, 64) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"resolution must look like HxW, e.g. 96x64, not '{text}'") from exc
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution must be positive, not '{text}'")
    return h, w


def letterbox_padding(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """Padding (top, bottom, left, right) that gives an h×w source the aspect of out_h×out_w
    with the least padding: only one axis is padded, split evenly."""
    target = out_h / out_w
    if h / w > target:  # too tall: widen
        new_w = round(h / target)
        extra = max(new_w - w, 0)
        return 0, 0, extra // 2, extra - extra // 2
    new_h = round(w * target)
    extra = max(new_h - h, 0)
    return extra // 2, extra - extra // 2, 0, 0


def letterbox_image(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (out_h, out_w, 3) uint8: reflect-pad to the target aspect, then resize
    with an antialiasing filter."""
    top, bottom, left, right = letterbox_padding(img.shape[0], img.shape[1], *out_hw)
    if top or bottom or left or right:
        img = np.pad(img, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    pil = Image.fromarray(img).resize((out_hw[1], out_hw[0]), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(pil)


def area_fractions(mask: np.ndarray, num_classes: int, out_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) class ids -> (K, out_h, out_w) float32 fraction of each output pixel's area per class."""
    present = np.unique(mask)
    onehot = torch.from_numpy(mask[None] == present[:, None, None]).float()[None]  # (1, P, H, W)
    fractions = F.adaptive_avg_pool2d(onehot, out_hw)[0].numpy()  # exact box areas
    out = np.zeros((num_classes, *out_hw), dtype=np.float32)
    out[present] = fractions
    return out


def letterbox_mask(mask: np.ndarray, out_hw: tuple[int, int], num_classes: int) -> np.ndarray:
    """(H, W) uint8 class ids -> (out_h, out_w) uint8: pad with background, then give each output
    pixel the class covering most of its area (never an id absent from the source)."""
    top, bottom, left, right = letterbox_padding(mask.shape[0], mask.shape[1], *out_hw)
    if top or bottom or left or right:
        mask = np.pad(mask, ((top, bottom), (left, right)), mode="constant", constant_values=0)
    return area_fractions(mask, num_classes, out_hw).argmax(0).astype(np.uint8)


def soft_onehot(masks: torch.Tensor, num_classes: int, factor: int = 1) -> torch.Tensor:
    """(B, H, W) int class ids -> (B, K, H/f, W/f) area fractions: one-hot, then box-averaged."""
    onehot = F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, factor) if factor > 1 else onehot


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average (B, C, H, W) by an integer factor (images and soft masks alike)."""
    return F.avg_pool2d(x, factor) if factor > 1 else x
