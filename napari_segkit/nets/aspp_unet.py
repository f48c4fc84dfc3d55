"""UNet with a DeepLab-style atrous spatial pyramid pooling (ASPP) bottleneck.

The deepest UNet block is replaced by ASPP (Chen et al. 2017, DeepLab v3): parallel
branches see the bottleneck features at several receptive fields -- a 1x1 conv, 3x3
convs dilated by ``ASPP_RATES`` and the image-level mean (global average pooling,
broadcast back) -- concatenated and fused by a 1x1 conv. At ``depth`` 4 the bottleneck
is at 1/16 resolution, so rates 1, 2, 4, 6 reach about 200 px around a pixel: context
for nuclei larger than the plain UNet's receptive field, at little cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import ConvBlock, UNetConfig, UpBlock, norm_layer
from .base import SegNet

#: Dilation rates of the 3x3 ASPP branches (at the bottleneck's resolution).
ASPP_RATES = (2, 4, 6)


def _conv_norm_relu(c_in: int, c_out: int, norm: str, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=pad, dilation=dilation, bias=norm == "none"),
        norm_layer(norm, c_out),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """1x1 branch, dilated 3x3 branches, image-pooling branch; concatenated, 1x1 fused."""

    def __init__(self, c_in: int, c_out: int, norm: str, rates=ASPP_RATES, dropout: float = 0.0) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_norm_relu(c_in, c_out, norm)])
        self.branches.extend(_conv_norm_relu(c_in, c_out, norm, 3, r) for r in rates)
        # image pooling: no norm (a batch of one pooled vector per image has no spatial
        # statistics to normalise)
        self.pool = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        self.fuse = _conv_norm_relu(c_out * (len(rates) + 2), c_out, norm)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pool(x.mean(dim=(-2, -1), keepdim=True))
        outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return self.drop(self.fuse(torch.cat(outs, dim=1)))


class ASPPUNet(SegNet):
    """The plain UNet encoder / decoder around an :class:`ASPP` bottleneck."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        cfg = config
        chans = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([ConvBlock(cfg.in_channels, chans[0], cfg.norm)])
        for i in range(1, cfg.depth):
            self.down.append(ConvBlock(chans[i - 1], chans[i], cfg.norm))
        self.bottleneck = ASPP(chans[cfg.depth - 1], chans[cfg.depth], cfg.norm, dropout=cfg.dropout)
        self.up = nn.ModuleList(
            [UpBlock(chans[i + 1], chans[i], chans[i], cfg.norm) for i in reversed(range(cfg.depth))]
        )
        self.head = nn.Conv2d(chans[0], cfg.n_outputs, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        x = self.bottleneck(F.max_pool2d(x, 2))
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)
