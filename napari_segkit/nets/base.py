"""What every network shares: input check, padding to the divisor, cropping back."""

from __future__ import annotations

import torch
from torch import nn

from ..model import UNetConfig, pad_to_multiple


class SegNet(nn.Module):
    """Base class: ``forward`` checks the input, pads it to ``config.divisor``, runs
    :meth:`forward_padded` and crops the output back to the input size."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects (N, {self.config.in_channels}, H, W) input, "
                f"got {tuple(x.shape)}"
            )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h, w = x.shape[-2:]
        return self.forward_padded(pad_to_multiple(x, self.config.divisor))[..., :h, :w]


def up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``like``."""
    return nn.functional.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
