"""The discriminator mirrors the generator: an input layer per resolution that reads RGB and, once
segmentation exists, the mask at the active class level; blurred down-sampling blocks; minibatch
standard deviation and a dense head at the base resolution.

With `pair_head`, one trunk serves two discriminators (as SemanticGAN's image and pair
discriminators, at the cost of one): samples flagged as pairs read their mask and are scored by the
pair head; the others are scored on the image alone by the image head, so photos without labels keep
teaching the generator after segmentation starts. Before segmentation every sample is an image."""

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

    def forward(self, img, seg, seg_level: int | None, seg_alpha: float, pair=None) -> torch.Tensor:
        """pair: (B,) bool, which samples read their mask (None: all)."""
        x = self.rgb(img)
        if seg is not None and seg_level is not None and seg_alpha > 0:
            mask_features = self.seg[seg_level](seg)
            if pair is not None:
                mask_features = mask_features * pair.view(-1, 1, 1, 1).to(mask_features.dtype)
            x = x + seg_alpha * mask_features
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
    """Minibatch stddev, conv3x3, then a dense head (fc, out): the image head, and with `pair_head`
    a second dense head for (image, mask) pairs."""

    def __init__(self, channels: int, shape: tuple[int, int], mbstd_group: int, pair_head: bool = False):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(channels + 1, channels, 3)
        self.fc = EqualLinear(channels * shape[0] * shape[1], channels)
        self.out = EqualLinear(channels, 1, gain=1.0)
        if pair_head:
            self.pair_fc = EqualLinear(channels * shape[0] * shape[1], channels)
            self.pair_out = EqualLinear(channels, 1, gain=1.0)

    @property
    def has_pair_head(self) -> bool:
        return hasattr(self, "pair_out")

    def forward(self, x: torch.Tensor, group: int | None = None, pair=None) -> torch.Tensor:
        x = lrelu(self.conv(minibatch_stddev(x, group or self.mbstd_group))).flatten(1)
        logits = self.out(lrelu(self.fc(x)))
        if pair is not None and self.has_pair_head:
            logits = torch.where(pair.view(-1, 1), self.pair_out(lrelu(self.pair_fc(x))), logits)
        return logits

    @torch.no_grad()
    def start_pair_head(self) -> None:
        """The pair head starts as a copy of the image head: at the segmentation event (mask input
        still faded out) both score every sample alike, so D's function is unchanged."""
        self.pair_fc.load_state_dict(self.fc.state_dict())
        self.pair_out.load_state_dict(self.out.state_dict())


class Discriminator(nn.Module):
    """D(img, seg) -> (B, 1) realness logits. Growth state is an argument, as in the generator."""

    def __init__(self, cfg: ModelConfig, level_sizes: list[int], pair_head: bool = False):
        super().__init__()
        self.cfg, self.level_sizes = cfg, list(level_sizes)
        self.inputs = nn.ModuleList(InputLayer(cfg.channels(s), level_sizes) for s in range(cfg.num_stages))
        # blocks[s] takes stage s features down to stage s-1; blocks[0] is unused by design (the final block).
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(cfg.channels(s), cfg.channels(s - 1)) for s in range(1, cfg.num_stages)
        )
        self.final = FinalBlock(cfg.channels(0), cfg.base_shape, cfg.mbstd_group, pair_head)

    @staticmethod
    def stage_of(name: str) -> int | None:
        """The resolution stage a parameter belongs to (None: the final block, every stage's)."""
        parts = name.split(".")
        if parts[0] == "inputs":
            return int(parts[1])
        return int(parts[1]) + 1 if parts[0] == "blocks" else None

    def features(self, img: torch.Tensor, stage: int) -> list[torch.Tensor]:
        """D's trunk on an image alone, fully grown at `stage`: the feature maps after the input layer
        and after each block, finest first (a learned perceptual space, e.g. for projection)."""
        return self._trunk(img, None, stage, 1.0, None, 0.0, None)

    def _trunk(self, img, seg, stage: int, alpha: float, seg_level, seg_alpha: float, pair) -> list[torch.Tensor]:
        """Feature maps after the input layer and after each block, finest first. Below the stage
        that fades in, and below every residual stage (model.residual_d_inputs_from), the input
        layer of the stage below reads the pair down-sampled: the fade mixes it with the block's
        output, a residual stage adds its block's output to it (scaled by alpha while it fades in)."""
        first_residual = self.cfg.residual_d_inputs_from
        x = self.inputs[stage](img, seg, seg_level, seg_alpha, pair)
        out = [x]
        for s in range(stage, 0, -1):
            x = self.blocks[s - 1](x)
            residual = first_residual is not None and s >= first_residual
            if residual or (s == stage and alpha < 1):
                img = downsample2(img)
                seg = downsample2(seg) if seg is not None else None
                skip = self.inputs[s - 1](img, seg, seg_level, seg_alpha, pair)
                if residual:
                    x = skip + (alpha if s == stage else 1.0) * x
                else:
                    x = fade(skip, x, alpha)
            out.append(x)
        return out

    def forward(
        self,
        img: torch.Tensor,
        seg: torch.Tensor | None,
        stage: int,
        alpha: float = 1.0,
        seg_level: int | None = None,
        seg_alpha: float = 1.0,
        mbstd_group: int | None = None,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """img (B, 3, H_s, W_s), seg (B, K, H_s, W_s) probabilities or None -> (B, 1).
        mbstd_group overrides the minibatch-stddev group size: it must divide every part of a
        concatenated batch, so real and fake samples never share a group. pair (B,) bool: which
        samples are (image, mask) pairs for the pair head; None: every sample is (one head)."""
        x = self._trunk(img, seg, stage, alpha, seg_level, seg_alpha, pair)[-1]
        return self.final(x, mbstd_group, pair)
