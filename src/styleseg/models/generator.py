"""The style-based generator: mapping network z -> w, then a synthesis network from a learned
constant, with per-layer styles (AdaIN) and noise, growing in resolution stage by stage, with an
output head per stage that emits RGB plus segmentation logits at the active class level."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from styleseg.config import ModelConfig
from styleseg.models.layers import (
    AdaIN,
    Blur,
    EqualConv2d,
    EqualLinear,
    NoiseInjection,
    downsample2,
    fade,
    fade_mask,
    lrelu,
    pixel_norm,
    upsample2,
    upsample2_smooth,
)


@dataclass
class GeneratorOutput:
    img: torch.Tensor  # (B, 3, H, W), roughly in [-1, 1]
    seg: torch.Tensor | None  # (B, K, H, W) logits at the active class level, or None before segmentation
    ws: torch.Tensor  # (B, num_ws, w_dim) the styles used


class MappingNetwork(nn.Module):
    """z -> w: pixel-normalised z through an MLP with a reduced learning rate."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=cfg.mapping_lr_mul) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z)
        for layer in self.layers:
            x = lrelu(layer(x))
        return x


class StyledLayer(nn.Module):
    """The epilogue of every synthesis conv: noise, bias, leaky ReLU, AdaIN."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.noise = NoiseInjection(channels)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.adain = AdaIN(channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.adain(lrelu(self.noise(x, noise) + self.bias), w)


class SynthesisBlock(nn.Module):
    """One resolution: (constant | upsample, conv3x3, blur) then conv3x3; two styled layers."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, shape: tuple[int, int] | None):
        super().__init__()
        if shape is not None:  # the first block starts from a learned constant
            # Random, not constant: instance norm of a spatially constant map has no usable gradient.
            self.const = nn.Parameter(torch.randn(1, out_channels, *shape))
        else:
            self.conv0 = EqualConv2d(in_channels, out_channels, 3, bias=False)
            self.blur = Blur(out_channels)
        self.layer0 = StyledLayer(out_channels, w_dim)
        self.conv1 = EqualConv2d(out_channels, out_channels, 3, bias=False)
        self.layer1 = StyledLayer(out_channels, w_dim)

    def forward(self, x, w0, w1, noise0, noise1) -> torch.Tensor:
        if hasattr(self, "const"):
            x = self.const.expand(w0.shape[0], -1, -1, -1)
        else:
            x = self.blur(self.conv0(upsample2(x)))
        x = self.layer0(x, w0, noise0)
        return self.layer1(self.conv1(x), w1, noise1)


class OutputHead(nn.Module):
    """1x1 convs from features to RGB and to segmentation logits, one seg conv per class level.
    Weights start at init_scale of the usual size, so a head first emits a nearly flat grey image
    and uniform class probabilities instead of the saturated colour noise that random projections
    of instance-normalised features give."""

    def __init__(self, channels: int, level_sizes: list[int], init_scale: float = 1.0):
        super().__init__()
        self.rgb = EqualConv2d(channels, 3, 1, gain=1.0, init_scale=init_scale)
        self.seg = nn.ModuleList(EqualConv2d(channels, k, 1, gain=1.0, init_scale=init_scale) for k in level_sizes)

    def forward(self, x: torch.Tensor, seg_level: int | None) -> torch.Tensor:
        rgb = self.rgb(x)
        if seg_level is None:
            return rgb
        return torch.cat([rgb, self.seg[seg_level](x)], dim=1)  # (B, 3 + K, H, W)


class Generator(nn.Module):
    """G(z) -> (image, segmentation logits). Growth state (stage, alpha, seg_level) is an argument."""

    def __init__(self, cfg: ModelConfig, level_sizes: list[int]):
        super().__init__()
        self.cfg, self.level_sizes = cfg, list(level_sizes)
        self.num_ws = 2 * cfg.num_stages
        self.mapping = MappingNetwork(cfg)
        self.blocks = nn.ModuleList()
        self.heads = nn.ModuleList()
        for s in range(cfg.num_stages):
            in_ch = cfg.channels(max(s - 1, 0))
            self.blocks.append(SynthesisBlock(in_ch, cfg.channels(s), cfg.w_dim, cfg.base_shape if s == 0 else None))
            self.heads.append(OutputHead(cfg.channels(s), level_sizes, cfg.head_init_scale))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    @staticmethod
    def stage_of(name: str) -> int | None:
        """The resolution stage a parameter or buffer belongs to (None: every stage's, e.g. mapping)."""
        parts = name.split(".")
        return int(parts[1]) if parts[0] in ("blocks", "heads") else None

    def make_noise(
        self, batch: int, stage: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> list[torch.Tensor]:
        """Per-layer noise maps (B, 1, H, W) for stages up to `stage`."""
        device = device or self.w_avg.device
        noise = []
        for s in range(stage + 1):
            h, w = self.cfg.stage_shape(s)
            noise += [torch.randn(batch, 1, h, w, generator=generator, device=device) for _ in range(2)]
        return noise

    def styles(
        self,
        z: torch.Tensor,
        psi: float | torch.Tensor = 1.0,
        mix_z: torch.Tensor | None = None,
        mix_cut: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), with optional style mixing and truncation. Layers from
        `mix_cut` on take mix_z's style: one cut for the batch (an int) or one per sample (a (B,) tensor;
        a cut of num_ws mixes nothing). A tensor cut keeps a compiled graph the same whatever the cut.
        psi: one truncation for the batch, or one per sample (a (B,) tensor)."""
        ws = self.mapping(z)[:, None].repeat(1, self.num_ws, 1)
        if mix_z is not None and mix_cut is not None:
            layer = torch.arange(self.num_ws, device=ws.device)
            cut = torch.as_tensor(mix_cut, device=ws.device).reshape(-1, 1)  # (B or 1, 1)
            ws = torch.where((layer >= cut)[..., None], self.mapping(mix_z)[:, None], ws)
        if isinstance(psi, torch.Tensor) or psi != 1.0:
            cutoff = self.cfg.truncation_cutoff or self.num_ws
            weight = psi.to(ws).view(-1, 1, 1) if isinstance(psi, torch.Tensor) else psi
            ws[:, :cutoff] = self.w_avg.to(ws.dtype).lerp(ws[:, :cutoff], weight)
        return ws

    @torch.no_grad()
    def update_w_avg(self, w_mean: torch.Tensor) -> None:
        """Track the average w for the truncation trick (w_mean: the batch mean, all ranks reduced)."""
        self.w_avg.lerp_(w_mean.float(), 1 - self.cfg.w_avg_beta)

    def synthesis(
        self,
        ws: torch.Tensor,
        stage: int,
        alpha: float = 1.0,
        seg_level: int | None = None,
        noise: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws (B, num_ws, w_dim) -> img (B, 3, H_s, W_s), seg logits (B, K, H_s, W_s) or None."""
        if noise is None:
            noise = self.make_noise(ws.shape[0], stage, device=ws.device)
        first_residual = self.cfg.residual_heads_from
        x = out = skip = None
        for s in range(stage + 1):
            x = self.blocks[s](x, ws[:, 2 * s], ws[:, 2 * s + 1], noise[2 * s], noise[2 * s + 1])
            if first_residual is not None and first_residual <= s:  # adds to the stage below; fades by scaling
                added = self.heads[s](x, seg_level)
                if self.cfg.residual_detail_only:
                    added = added - upsample2_smooth(downsample2(added))
                out = upsample2_smooth(out) + (alpha if s == stage else 1.0) * added
            elif s == stage or (first_residual is not None and s + 1 == first_residual):
                out = self.heads[s](x, seg_level)
            elif s == stage - 1 and alpha < 1:
                skip = upsample2(self.heads[s](x, seg_level))
        img, seg = out[:, :3], (out[:, 3:] if seg_level is not None else None)
        if skip is not None:
            img = fade(skip[:, :3], img, alpha)
            seg = fade_mask(skip[:, 3:], seg, alpha) if seg is not None else None
        return img, seg

    def forward(
        self,
        z: torch.Tensor,
        stage: int,
        alpha: float = 1.0,
        seg_level: int | None = None,
        psi: float = 1.0,
        noise: list[torch.Tensor] | None = None,
        mix_z: torch.Tensor | None = None,
        mix_cut: int | torch.Tensor | None = None,
    ) -> GeneratorOutput:
        """Mapping, then synthesis. Randomness (z, noise, mixing) comes from the caller, so that a
        sample is a pure function of its seed and data-parallel ranks can slice one global batch."""
        ws = self.styles(z, psi, mix_z, mix_cut)
        img, seg = self.synthesis(ws, stage, alpha, seg_level, noise)
        return GeneratorOutput(img, seg, ws)
