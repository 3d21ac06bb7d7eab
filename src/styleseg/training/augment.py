"""Adaptive discriminator augmentation (Karras et al. 2020), for images with mask channels.

Geometric operations move RGB and mask channels together; colour operations touch RGB only. Every
operation runs per sample with probability p, on real and fake inputs alike, and p follows an
overfitting signal r_t = E[sign(D(real))] toward a target. Written with plain torch (affine_grid +
grid_sample) because the mask channels must share each sample's exact transform and stay
differentiable for G.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from styleseg.config import AugmentConfig
from styleseg.training.randomness import CounterRandom

_OPERATIONS = ("xflip", "translate", "scale", "rotate", "aniso", "brightness", "contrast", "saturation")


@functools.lru_cache(maxsize=8)
def _strength_row(strengths: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """(8,) the operations' strengths on the device, made once per configuration and device."""
    return torch.tensor(strengths, device=device)


def affine_theta(flip, shift, scale, angle, aniso, h: int, w: int) -> torch.Tensor:
    """(B, 2, 3) affine_grid's theta for: mirror (flip = -1), translate by `shift` (B, 2) of the
    image's width and height, scale, rotate by `angle`, stretch x by `aniso` and y by 1 / aniso (the
    transform x -> F T S R A x in pixels, F the mirror, T the shift), in affine_grid's normalised
    coordinates. Written out rather than multiplied as 3x3 matrices: a handful of element-wise
    operations instead of dozens of small ones."""
    c, s = torch.cos(angle), torch.sin(angle)
    a00 = scale * flip * c * aniso
    a01 = -scale * flip * s / aniso
    a10 = scale * s * aniso
    a11 = scale * c / aniso
    # normalised x spans w pixels and y spans h: off-diagonal terms pick up the aspect ratio
    row0 = torch.stack([a00, a01 * (h / w), 2 * flip * shift[:, 0]], dim=1)
    row1 = torch.stack([a10 * (w / h), a11, 2 * shift[:, 1]], dim=1)
    return torch.stack([row0, row1], dim=1)


def augment(
    img: torch.Tensor,
    seg: torch.Tensor | None,
    p: float,
    cfg: AugmentConfig,
    rand: CounterRandom,
    mirror: torch.Tensor | None = None,
    second_derivative: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """img (B, 3, H, W) in [-1, 1], seg (B, K, H, W) probabilities -> augmented copies.
    `mirror` (K,) maps each class channel to its mirror image's (left <-> right); a flipped sample's
    mask channels are permuted by it, so a left arm seen in a mirror is a right arm.
    `second_derivative`: the caller will differentiate a gradient w.r.t. img/seg again (R1)."""
    b, _, h, w = img.shape
    dev = img.device
    if p <= 0:
        return img, seg
    # Two draws for the whole batch: whether each operation applies (and the flip's coin), and the
    # operations' parameters (a draw costs a dozen device operations whatever its size).
    u = rand.rand(b, 10)  # 8 gates (geometry, colour), the flip's coin, the rotation
    n = rand.randn(b, 7)  # translate x and y, scale, aniso, brightness, contrast, saturation
    on = (u[:, :8] < p * _strength_row(tuple(getattr(cfg, op) for op in _OPERATIONS), dev)).to(n.dtype)
    flip = 1 - 2 * (on[:, 0] * (u[:, 8] < 0.5).to(n.dtype))
    shift = on[:, 1:2] * n[:, 0:2] * 0.125
    scale = torch.exp2(on[:, 2] * n[:, 2] * 0.2)
    angle = on[:, 3] * (u[:, 9] * 2 - 1) * math.pi
    aniso = torch.exp2(on[:, 4] * n[:, 3] * 0.2)
    theta = affine_theta(flip, shift, scale, angle, aniso, h, w).to(img.dtype)
    x = img if seg is None else torch.cat([img, seg.to(img.dtype)], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if second_derivative and x.device.type != "cpu":
        # CUDA's grid_sample has no second derivative (the CPU one has): there the same sampling is done
        # with gathers, only where one is asked for (every G step would pay for it otherwise).
        x = sample_bilinear_reflect(x, grid)
    else:
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    img, seg = x[:, :3], (x[:, 3:] if seg is not None else None)
    if seg is not None and mirror is not None:
        flipped = (flip < 0)[:, None, None, None]
        seg = torch.where(flipped, seg[:, mirror], seg)
    # Colour, RGB only.
    bright = on[:, 5] * n[:, 4] * 0.2
    img = img + bright.to(img.dtype)[:, None, None, None]
    contrast = torch.exp2(on[:, 6] * n[:, 5] * 0.5)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * contrast.to(img.dtype)[:, None, None, None] + mean
    sat = torch.exp2(on[:, 7] * n[:, 6])
    luma = img.mean(dim=1, keepdim=True)
    img = torch.lerp(luma, img, sat.to(img.dtype)[:, None, None, None])
    return img, seg


def _reflect(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates reflected into [-0.5, size - 0.5] and clipped to [0, size - 1], as grid_sample's
    reflection padding does with align_corners=False."""
    span = float(size)
    dist = (coord + 0.5).abs()
    flips = torch.floor(dist / span)
    extra = torch.fmod(dist, span)
    coord = torch.where(flips % 2 == 0, extra - 0.5, span - extra - 0.5)
    return coord.clamp(0, size - 1)


def sample_bilinear_reflect(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(x, grid, "bilinear", "reflection", align_corners=False) from gathers and arithmetic,
    so that it can be differentiated twice on every device."""
    b, c, h, w = x.shape
    ix = _reflect(((grid[..., 0] + 1) * w - 1) / 2, w)  # (B, Ho, Wo)
    iy = _reflect(((grid[..., 1] + 1) * h - 1) / 2, h)
    x0, y0 = ix.detach().floor(), iy.detach().floor()
    wx, wy = ix - x0, iy - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)  # clamped corners carry weight 0
    flat = x.reshape(b, c, h * w)

    def corner(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy * w + xx).reshape(b, 1, -1).expand(b, c, -1)
        return flat.gather(2, idx).reshape(b, c, *yy.shape[1:])

    wx, wy = wx[:, None].to(x.dtype), wy[:, None].to(x.dtype)
    top = corner(y0, x0) * (1 - wx) + corner(y0, x1) * wx
    bottom = corner(y1, x0) * (1 - wx) + corner(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


class AdaController:
    """Keeps p and adjusts it from the sign of D's outputs on real data."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg
        self.p = float(cfg.fixed_p) if cfg.fixed_p is not None else 0.0
        self.sign_sum = 0.0
        self.count = 0
        self.last_rt = 0.0

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Adds up signs on the logits' device: the host reads them only when p is adjusted, every
        `interval` steps (as StyleGAN2-ADA does), not in every step."""
        self.sign_sum = self.sign_sum + torch.sign(real_logits.detach()).sum().double()
        self.count += real_logits.numel()

    def maybe_adjust(self, step: int, global_batch: int, all_reduce=None) -> None:
        """Every `interval` steps move p toward the target; all_reduce sums (sign_sum, count) over ranks."""
        if not self.cfg.enabled or self.cfg.fixed_p is not None or (step + 1) % self.cfg.interval:
            return
        sign_sum = torch.as_tensor(self.sign_sum, dtype=torch.float64)
        stats = torch.stack([sign_sum, torch.tensor(float(self.count), dtype=torch.float64, device=sign_sum.device)])
        if all_reduce is not None:
            stats = all_reduce(stats)
        stats = stats.cpu()
        self.last_rt = float(stats[0] / max(float(stats[1]), 1))
        step_size = global_batch * self.cfg.interval / (self.cfg.adjust_kimg * 1000)
        self.p = min(max(self.p + math.copysign(step_size, self.last_rt - self.cfg.target), 0.0), 1.0)
        self.sign_sum, self.count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sign_sum": float(self.sign_sum), "count": self.count, "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.sign_sum = float(state["p"]), float(state["sign_sum"])
        self.count, self.last_rt = int(state["count"]), float(state["last_rt"])
