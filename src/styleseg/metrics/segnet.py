"""The reference segmentation network: a residual U-Net with atrous context pooling, in plain torch.

Encoder: a stem and four stages of two residual blocks (He et al. 2016), each later stage halving
the resolution and doubling the width. Bottleneck: atrous spatial pyramid pooling (DeepLab v3:
parallel 3x3 convolutions at dilations 1, 2, 4 plus image-level pooling) for person-scale context.
Decoder: U-Net style, bilinear up-sampling, concatenation with the encoder's features, one residual
block per level. Inputs of any size whose sides are divisible by 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout)
    )


class ResBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (projected when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, stride), nn.ReLU(inplace=True), _conv_bn(cout, cout))
        self.skip = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: dilations (1, 2, 4) and a global branch, fused by a 1x1 conv."""

    def __init__(self, cin: int, cout: int, dilations=(1, 2, 4)):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(_conv_bn(cin, cout, dilation=d), nn.ReLU(inplace=True)) for d in dilations]
        )
        self.pool = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(cout * (len(dilations) + 1), cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[2:])
        return self.fuse(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class ResUNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 24):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(_conv_bn(3, w[0]), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList(
            [
                nn.Sequential(ResBlock(w[max(i - 1, 0)], w[i], stride=1 if i == 0 else 2), ResBlock(w[i], w[i]))
                for i in range(4)
            ]
        )
        self.context = ASPP(w[3], w[3])
        self.dec = nn.ModuleList([ResBlock(w[i + 1] + w[i], w[i]) for i in range(3)])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], self.stem(x)
        for stage in self.enc:
            x = stage(x)
            feats.append(x)
        feats[-1] = self.context(feats[-1])
        return feats

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 8*width) pooled bottleneck features: the in-domain embedding for Fréchet distances."""
        return self.encode(x)[-1].float().mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, K, H, W) logits; H and W divisible by 8."""
        feats = self.encode(x)
        y = feats[-1]
        for i in (2, 1, 0):
            y = F.interpolate(y, size=feats[i].shape[2:], mode="bilinear", align_corners=False)
            y = self.dec[i](torch.cat([y, feats[i]], dim=1))
        return self.head(y)
