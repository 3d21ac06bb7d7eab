"""Geometry shared by preparation and training: fitting a photo and its mask to the target aspect
(the same operation on both, so they stay one picture), antialiased resizing, and mask downsampling
that never invents class ids (area fractions, then the majority class).

Fit rules (`--fit`):
- `pad-edge` (default): pad the short axis, split evenly, by repeating the edge row/column; the
  image repeats its edge pixels and the mask its edge labels, so whatever the pad shows is labelled
  as what it continues. (Reflect-padding the photo while padding the mask with background, as
  styleseg once did, labelled mirrored people as background.)
- `crop`: cut the long axis to the aspect, centred; nothing is invented, border content is lost.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from styleseg.options import FIT_MODES


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


def crop_box(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the centred crop of an h×w source to the aspect of out_h×out_w."""
    target = out_h / out_w
    if h / w > target:  # too tall: cut rows
        new_h = min(round(w * target), h)
        y0 = (h - new_h) // 2
        return y0, y0 + new_h, 0, w
    new_w = min(round(h / target), w)
    x0 = (w - new_w) // 2
    return 0, h, x0, x0 + new_w


def fit_aspect(array: np.ndarray, out_hw: tuple[int, int], fit: str = "pad-edge") -> np.ndarray:
    """(H, W, ...) -> the same picture at the aspect of out_hw, by the fit rule (see module doc).
    Images and masks go through this one function, so they get the same geometry."""
    h, w = array.shape[:2]
    if fit == "crop":
        y0, y1, x0, x1 = crop_box(h, w, *out_hw)
        return array[y0:y1, x0:x1]
    if fit != "pad-edge":
        raise ValueError(f"fit must be one of {FIT_MODES}, not '{fit}'")
    top, bottom, left, right = letterbox_padding(h, w, *out_hw)
    if top or bottom or left or right:
        pad = ((top, bottom), (left, right)) + ((0, 0),) * (array.ndim - 2)
        array = np.pad(array, pad, mode="edge")
    return array


def letterbox_image(img: np.ndarray, out_hw: tuple[int, int], fit: str = "pad-edge") -> np.ndarray:
    """(H, W, 3) uint8 -> (out_h, out_w, 3) uint8: fit to the target aspect, then resize with an
    antialiasing filter."""
    img = np.ascontiguousarray(fit_aspect(img, out_hw, fit))
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


def letterbox_mask(mask: np.ndarray, out_hw: tuple[int, int], num_classes: int, fit: str = "pad-edge") -> np.ndarray:
    """(H, W) uint8 class ids -> (out_h, out_w) uint8: fit to the target aspect exactly as the image
    is, then give each output pixel the class covering most of its area (never an id absent from the
    source)."""
    mask = fit_aspect(mask, out_hw, fit)
    return area_fractions(mask, num_classes, out_hw).argmax(0).astype(np.uint8)


def soft_onehot(masks: torch.Tensor, num_classes: int, factor: int = 1) -> torch.Tensor:
    """(B, H, W) int class ids -> (B, K, H/f, W/f) area fractions: one-hot, then box-averaged."""
    onehot = F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, factor) if factor > 1 else onehot


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average (B, C, H, W) by an integer factor (images and soft masks alike)."""
    return F.avg_pool2d(x, factor) if factor > 1 else x
