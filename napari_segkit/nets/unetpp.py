"""UNet++ (Zhou et al. 2018): the UNet with nested, dense skip pathways.

Node ``X[i][j]`` (level ``i``, column ``j``) is a conv block on the concatenation of
every earlier node of its level, ``X[i][0..j-1]``, and the up-sampled node below it,
``X[i+1][j-1]`` (bilinear, then a 1x1 conv to the level's width). ``X[i][0]`` is the
encoder, ``X[0][depth]`` feeds the output head. The dense skips bridge the semantic gap
between encoder and decoder features at the cost of more computation at high resolution.

Deep supervision (``UNetConfig(deep_supervision=True)``): every top node
``X[0][1..depth]`` gets its own 1x1 head; training adds the losses of all heads
(:meth:`UNetPlusPlus.forward_with_aux`); prediction uses the last head only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import ConvBlock, UNetConfig, pad_to_multiple
from .base import SegNet, up_to


class UNetPlusPlus(SegNet):
    """UNet++ with ``config.depth`` levels of nested decoders."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        cfg = config
        d = cfg.depth
        chans = [cfg.width * 2**i for i in range(d + 1)]
        self.encoder = nn.ModuleList([ConvBlock(cfg.in_channels, chans[0], cfg.norm)])
        for i in range(1, d + 1):
            self.encoder.append(ConvBlock(chans[i - 1], chans[i], cfg.norm, cfg.dropout if i == d else 0.0))
        # nodes[f"{i}_{j}"] for j >= 1, with the 1x1 conv reducing the node below
        self.nodes = nn.ModuleDict()
        self.reduce = nn.ModuleDict()
        for j in range(1, d + 1):
            for i in range(0, d - j + 1):
                self.reduce[f"{i}_{j}"] = nn.Conv2d(chans[i + 1], chans[i], 1)
                self.nodes[f"{i}_{j}"] = ConvBlock((j + 1) * chans[i], chans[i], cfg.norm)
        n_heads = d if cfg.deep_supervision else 1
        self.heads = nn.ModuleList([nn.Conv2d(chans[0], cfg.n_outputs, 1) for _ in range(n_heads)])

    def _top_nodes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``X[0][1..depth]``."""
        d = self.config.depth
        grid: list[list[torch.Tensor]] = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            grid.append([x])
        for j in range(1, d + 1):
            for i in range(0, d - j + 1):
                below = self.reduce[f"{i}_{j}"](up_to(grid[i + 1][j - 1], grid[i][0]))
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat([*grid[i], below], dim=1)))
        return grid[0][1:]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[-1](self._top_nodes(x)[-1])

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output of the last head and, with deep supervision, of the earlier heads."""
        self._check(x)
        h, w = x.shape[-2:]
        tops = self._top_nodes(pad_to_multiple(x, self.config.divisor))
        main = self.heads[-1](tops[-1])[..., :h, :w]
        if len(self.heads) == 1:
            return main, []
        aux = [head(t)[..., :h, :w] for head, t in zip(self.heads[:-1], tops[:-1], strict=True)]
        return main, aux
