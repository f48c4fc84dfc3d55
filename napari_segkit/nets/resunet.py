"""Residual UNet (ResUNet): the UNet layout with residual blocks and BatchNorm.

Each block is ``conv3x3-norm-ReLU-conv3x3-norm`` added to a shortcut (identity, or a
1x1 conv-norm projection when the channel count changes), then ReLU (He et al. 2016);
encoder and decoder are built of such blocks (Zhang et al. 2018, "Road extraction by
deep residual U-Net"). Down-sampling by 2x2 max pooling and bilinear up-sampling, as in
the plain UNet, so the two differ only in the blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import UNetConfig, norm_layer
from .base import SegNet, up_to


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with norm, added to a (projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        self.norm1 = norm_layer(norm, c_out)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        self.norm2 = norm_layer(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=bias), norm_layer(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(self.drop(y)))
        return F.relu(y + self.shortcut(x), inplace=True)


class ResUNet(SegNet):
    """UNet of :class:`ResidualBlock` s (same widths, depth and outputs as ``UNet``)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        cfg = config
        chans = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([ResidualBlock(cfg.in_channels, chans[0], cfg.norm)])
        for i in range(1, cfg.depth + 1):
            drop = cfg.dropout if i == cfg.depth else 0.0
            self.down.append(ResidualBlock(chans[i - 1], chans[i], cfg.norm, drop))
        self.reduce = nn.ModuleList(
            [nn.Conv2d(chans[i + 1], chans[i], 1) for i in reversed(range(cfg.depth))]
        )
        self.up = nn.ModuleList(
            [ResidualBlock(2 * chans[i], chans[i], cfg.norm) for i in reversed(range(cfg.depth))]
        )
        self.head = nn.Conv2d(chans[0], cfg.n_outputs, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        x = skips.pop()
        for reduce, block in zip(self.reduce, self.up, strict=True):
            skip = skips.pop()
            x = block(torch.cat([skip, reduce(up_to(x, skip))], dim=1))
        return self.head(x)
