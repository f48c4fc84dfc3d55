"""UNeXt (Valanarasu & Patel 2022): a light UNet of convolutional and tokenised-MLP stages.

Layout for ``depth`` D (D down-samplings, D >= 3), channels ``width * (1, 2, 8, ...)``
for the conv stages and ``width * (10, 16)`` for the two MLP stages (the paper's
16-32-128-160-256 at width 16, D 5):

- D-2 conv stages: 3x3 conv-norm-ReLU at the current resolution, then 2x2 max pooling;
- 2 tokenised-MLP stages: a stride-2 3x3 conv makes the tokens ("overlapping patch
  embedding"), then a shifted-MLP block (below) and a per-token LayerNorm;
- the decoder mirrors it: 3x3 conv-norm-ReLU, bilinear 2x up-sampling, *added* to the
  encoder features of that level (cheaper than concatenation), with a shifted-MLP
  block at the two deepest levels; the last up-sampling restores full resolution
  before the 1x1 head.

Shifted-MLP block: ``x + MLP(LN(x))`` where the MLP shifts groups of channels by
-2..2 pixels along the width, mixes channels (1x1), applies a depthwise 3x3 conv and
GELU, shifts along the height and mixes channels again -- an MLP with a local
receptive field, much cheaper than attention. Few full-resolution convolutions make
it the fastest of the architectures here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import UNetConfig, norm_layer
from .base import SegNet, up_to

SHIFT = 2  # channels are split into 2 * SHIFT + 1 groups shifted by -SHIFT..SHIFT px
MLP_WIDTHS = (10, 16)


def _conv_norm_relu(c_in: int, c_out: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none"),
        norm_layer(norm, c_out),
        nn.ReLU(inplace=True),
    )


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of every pixel (token) of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def shift(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Shift channel group ``g`` of ``x`` by ``g - SHIFT`` pixels along ``axis`` (-1 or
    -2), filling with zeros."""
    groups = torch.chunk(x, 2 * SHIFT + 1, dim=1)
    n = x.shape[axis]
    out = []
    for g, part in zip(range(-SHIFT, SHIFT + 1), groups, strict=False):
        pad = (SHIFT, SHIFT, 0, 0) if axis == -1 else (0, 0, SHIFT, SHIFT)
        padded = F.pad(part, pad)
        out.append(padded.narrow(axis, SHIFT - g, n))
    return torch.cat(out, dim=1)


class ShiftedMLP(nn.Module):
    """``x + MLP(LN(x))`` with shifts along the width then the height (see the module notes)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(shift(self.norm(x), -1))
        y = F.gelu(self.dw(y))
        y = self.fc2(shift(y, -2))
        return x + y


class UNeXt(SegNet):
    """UNeXt for ``config.depth`` >= 3 (see the module notes)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        cfg = config
        d = cfg.depth
        if d < 3:
            raise ValueError("arch 'unext' needs depth >= 3 (two MLP stages after the conv stages)")
        conv_mult = [1, 2] + [8 * 2**k for k in range(d - 4)] if d > 3 else [1]
        conv_mult = conv_mult[: d - 2]
        self.chans = [cfg.width * m for m in conv_mult] + [cfg.width * m for m in MLP_WIDTHS]
        ch = self.chans
        self.conv_stages = nn.ModuleList()
        c_prev = cfg.in_channels
        for c in ch[: d - 2]:
            self.conv_stages.append(_conv_norm_relu(c_prev, c, cfg.norm))
            c_prev = c
        self.embed = nn.ModuleList()
        self.enc_mlp = nn.ModuleList()
        self.enc_norm = nn.ModuleList()
        for c in ch[d - 2 :]:
            self.embed.append(_conv_norm_relu(c_prev, c, cfg.norm, stride=2))
            self.enc_mlp.append(ShiftedMLP(c))
            self.enc_norm.append(ChannelLayerNorm(c))
            c_prev = c
        self.drop = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        # decoder: from level d (bottleneck) to level 1, then to full resolution
        targets = [ch[i - 1] for i in range(d - 1, 0, -1)] + [ch[0]]
        self.dec_conv = nn.ModuleList()
        self.dec_mlp = nn.ModuleList()
        for k, c in enumerate(targets):
            self.dec_conv.append(_conv_norm_relu(c_prev, c, cfg.norm))
            deep = k < 2  # the two decoder levels below the bottleneck get MLP blocks
            self.dec_mlp.append(nn.Sequential(ShiftedMLP(c), ChannelLayerNorm(c)) if deep else nn.Identity())
            c_prev = c
        self.head = nn.Conv2d(ch[0], cfg.n_outputs, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        full = x
        skips = []
        for stage in self.conv_stages:
            x = F.max_pool2d(stage(x), 2)
            skips.append(x)
        for k, (embed, mlp, norm) in enumerate(zip(self.embed, self.enc_mlp, self.enc_norm, strict=True)):
            x = norm(mlp(embed(x)))
            if k < len(self.embed) - 1:
                skips.append(x)
        x = self.drop(x)
        for conv, mlp in zip(self.dec_conv, self.dec_mlp, strict=True):
            x = conv(x)
            skip = skips.pop() if skips else full  # the last step restores full resolution
            x = up_to(x, skip)
            if skip is not full:
                x = x + skip
            x = mlp(x)
        return self.head(x)
