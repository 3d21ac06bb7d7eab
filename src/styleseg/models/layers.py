"""Building blocks of StyleGAN (Karras et al. 2019), bottom-up: equalized-learning-rate layers,
blur, noise injection, AdaIN, minibatch standard deviation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class EqualLinear(nn.Module):
    """Linear layer whose weights are stored N(0, 1) and scaled at run time (equalized learning
    rate), so Adam's per-parameter step sizes are the same for every layer."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = LRELU_GAIN,
        lr_mul: float = 1.0,
        bias_init: float | torch.Tensor = 0.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features) + torch.as_tensor(bias_init, dtype=torch.float32) / lr_mul)
        self.scale = gain * lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate ('same' padding). init_scale < 1 starts the layer
    with smaller weights than the equalized N(0, 1), which also makes its relative learning rate larger."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        gain: float = LRELU_GAIN,
        bias: bool = True,
        init_scale: float = 1.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) * init_scale)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    @property
    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    @torch.no_grad()
    def set_effective(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Set the weight the layer applies (not the stored one): used by function-preserving growth."""
        self.weight.copy_(weight / self.scale)
        if bias is not None:
            self.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class Blur(nn.Module):
    """Depthwise [1, 2, 1] ⊗ [1, 2, 1] low-pass filter, applied around resampling to avoid aliasing."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=self.channels)


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned per-channel strength (initially 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise  # noise: (B, 1, H, W)


class AdaIN(nn.Module):
    """Adaptive instance normalisation: normalise each feature map, then scale and shift it with a
    style computed from w by a learned affine layer."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        bias = torch.cat([torch.ones(channels), torch.zeros(channels)])  # start as identity style
        self.affine = EqualLinear(w_dim, 2 * channels, gain=1.0, bias_init=bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, shift = self.affine(w)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return F.instance_norm(x, eps=1e-8) * scale + shift


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append the average standard deviation over groups of samples as one more feature map, so D
    can see a lack of variety in a batch (Karras et al. 2018)."""
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:  # the batch must split evenly into groups
        g -= 1
    # Groups are runs of consecutive samples, so a batch split across ranks keeps its groups.
    y = x.reshape(-1, g, c, h, w)
    y = (y - y.mean(1, keepdim=True)).square().mean(1).add(1e-8).sqrt()  # (B/g, C, H, W)
    y = y.mean(dim=(1, 2, 3)).repeat_interleave(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)  # (B, 1, H, W)
    return torch.cat([x, y], dim=1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def upsample2_smooth(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 (the [1, 3, 3, 1] filter of StyleGAN2's skip outputs): a residual head refines a
    smooth picture instead of first having to undo nearest-neighbour blocks."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def fade(skip: torch.Tensor, out: torch.Tensor, alpha: float) -> torch.Tensor:
    """The one place where a growing part fades in: alpha 0 gives the old path, 1 the new one."""
    if alpha >= 1:
        return out
    return torch.lerp(skip, out, alpha)


def fade_mask(skip: torch.Tensor, out: torch.Tensor, alpha: float) -> torch.Tensor:
    """A mask while a new resolution fades in: the mix of the two heads' class *probabilities*, as
    log-probabilities (their softmax is the mix); images fade with `fade`.

    Not a lerp of logits: a trained head's logits are ~40x larger than a new head's (measured at
    viton128's growth), so a logit lerp lets the old head decide every pixel until alpha is ~1, the
    new head learns nothing while it fades in, and the masks break when the old head drops out."""
    if alpha >= 1:
        return out
    wide = torch.promote_types(out.dtype, torch.float32)  # probabilities in at least fp32 under autocast
    old, new = skip.to(wide).log_softmax(1), out.to(wide).log_softmax(1)
    if alpha <= 0:
        return old.to(out.dtype)
    # log((1 - alpha) e^old + alpha e^new) around the larger of the two: the log's argument is at
    # least min(alpha, 1 - alpha), so no tiny probability is rounded into it (two runs that round
    # differently stay close), and alpha enters only through a lerp, as in `fade`, so that it stays
    # symbolic under torch.compile (math.log(alpha) would recompile at every step).
    top = torch.maximum(old, new)
    return (top + torch.lerp((old - top).exp(), (new - top).exp(), alpha).log()).to(out.dtype)
