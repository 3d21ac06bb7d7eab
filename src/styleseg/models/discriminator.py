"""The discriminator mirrors the generator: an input layer per resolution that reads RGB and, once
segmentation exists, the mask at the active class level; blurred down-sampling blocks; minibatch
standard deviation and a dense head at the base resolution."""

from __future__ import annotations

import torch
from torch import nn

from styleseg.config import ModelConfig
from styleseg.models.layers import (
    Blur,
    EqualConv2d,
    EqualLinear,
    downsample2,
    fade,
    lrelu,
    minibatch_stddev,
)


class InputLayer(nn.Module):
    """1x1 convs from RGB and from each class level's mask to features; the mask path is scaled by
    seg_alpha so it can fade in without changing D at the moment it is added."""

    def __init__(self, channels: int, level_sizes: list[int]):
        super().__init__()
        self.rgb = EqualConv2d(3, channels, 1)
        self.seg = nn.ModuleList(EqualConv2d(k, channels, 1) for k in level_sizes)

    def forward(self, img, seg, seg_level: int | None, seg_alpha: float) -> torch.Tensor:
        x = self.rgb(img)
        if seg is not None and seg_level is not None and seg_alpha > 0:
            x = x + seg_alpha * self.seg[seg_level](seg)
        return lrelu(x)


class DiscriminatorBlock(nn.Module):
    """conv3x3, blur, conv3x3, 2x average down-sampling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.blur = Blur(in_channels)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blur(lrelu(self.conv0(x)))
        return lrelu(downsample2(self.conv1(x)))


class FinalBlock(nn.Module):
    def __init__(self, channels: int, shape: tuple[int, int], mbstd_group: int):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(channels + 1, channels, 3)
        self.fc = EqualLinear(channels * shape[0] * shape[1], channels)
        self.out = EqualLinear(channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor, group: int | None = None) -> torch.Tensor:
        x = lrelu(self.conv(minibatch_stddev(x, group or self.mbstd_group)))
        return self.out(lrelu(self.fc(x.flatten(1))))


class Discriminator(nn.Module):
    """D(img, seg) -> (B, 1) realness logits. Growth state is an argument, as in the generator."""

    def __init__(self, cfg: ModelConfig, level_sizes: list[int]):
        super().__init__()
        self.cfg, self.level_sizes = cfg, list(level_sizes)
        self.inputs = nn.ModuleList(InputLayer(cfg.channels(s), level_sizes) for s in range(cfg.num_stages))
        # blocks[s] takes stage s features down to stage s-1; blocks[0] is unused by design (the final block).
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(cfg.channels(s), cfg.channels(s - 1)) for s in range(1, cfg.num_stages)
        )
        self.final = FinalBlock(cfg.channels(0), cfg.base_shape, cfg.mbstd_group)

    def forward(
        self,
        img: torch.Tensor,
        seg: torch.Tensor | None,
        stage: int,
        alpha: float = 1.0,
        seg_level: int | None = None,
        seg_alpha: float = 1.0,
        mbstd_group: int | None = None,
    ) -> torch.Tensor:
        """img (B, 3, H_s, W_s), seg (B, K, H_s, W_s) probabilities or None -> (B, 1).
        mbstd_group overrides the minibatch-stddev group size: it must divide every part of a
        concatenated batch, so real and fake samples never share a group."""
        x = self.inputs[stage](img, seg, seg_level, seg_alpha)
        if stage > 0:
            x = self.blocks[stage - 1](x)
            if alpha < 1:
                small_seg = downsample2(seg) if seg is not None else None
                skip = self.inputs[stage - 1](downsample2(img), small_seg, seg_level, seg_alpha)
                x = fade(skip, x, alpha)
        for s in range(stage - 1, 0, -1):
            x = self.blocks[s - 1](x)
        return self.final(x, mbstd_group)
