"""A small 2-D UNet built from conv-norm-ReLU blocks, for any input size.

The network outputs ``n_classes`` class logits followed by ``n_extra`` extra logits.
For the default nuclei model the classes are background / interior / boundary and the
one extra channel is the object-"centre" logit (per-object normalised distance to the
boundary, see :mod:`napari_segkit.targets`).

Normalisation layers: BatchNorm by default. Measured on a 2-core CPU (batch 8, 128x128,
width 16, depth 3) a training step costs the same with BatchNorm or GroupNorm (~0.3 s),
but at inference BatchNorm uses fixed statistics (an affine map, cheaper than GroupNorm's
per-sample reductions) and tiled prediction then gives the same result whatever the tile
size or batch. GroupNorm (``norm="group"``) is there for batches of 1-2 patches, where
batch statistics get noisy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group", "none")
#: the network architectures ``UNetConfig.arch`` may name (built by :mod:`napari_segkit.nets`)
ARCHITECTURES = ("unet", "resunet", "unetpp", "aspp_unet", "unext")


@dataclass
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (stored in model files).

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grayscale, 3 for RGB models).
    n_classes : int
        Class logits (default model: 0 background, 1 interior, 2 boundary).
    n_extra : int
        Extra regression logits after the class logits (default: 1, the centre channel).
    depth : int
        Number of 2x down-samplings; inputs are padded to a multiple of ``2**depth``.
    width : int
        Channels of the first block; doubled at each level.
    norm : str
        ``"batch"``, ``"group"`` or ``"none"``.
    dropout : float
        Dropout probability in the bottleneck block (0 disables it).
    arch : str
        Network architecture, one of :data:`ARCHITECTURES`: ``"unet"``
        (this module's :class:`UNet`), ``"resunet"``, ``"unetpp"``, ``"aspp_unet"`` or
        ``"unext"``. All share the input / output contract and the ``divisor``. Model
        files written before this option existed load as ``"unet"``.
    deep_supervision : bool
        UNet++ only: during training, heads on every nested decoder output add their
        losses (see :func:`napari_segkit.losses.forward_for_training`).
    """

    in_channels: int = 1
    n_classes: int = 3
    n_extra: int = 1
    depth: int = 3
    width: int = 16
    norm: str = "batch"
    dropout: float = 0.0
    arch: str = "unet"
    deep_supervision: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"UNetConfig.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.deep_supervision and self.arch != "unetpp":
            raise ValueError("UNetConfig.deep_supervision needs arch='unetpp'")
        for name in ("in_channels", "n_classes", "depth", "width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_classes < 2:
            raise ValueError("UNetConfig.n_classes must be >= 2 (background + at least one class)")
        if self.n_extra < 0:
            raise ValueError("UNetConfig.n_extra must be >= 0")
        if self.norm not in NORMS:
            raise ValueError(f"UNetConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError("UNetConfig.dropout must be in [0, 1)")

    @property
    def n_outputs(self) -> int:
        """Channels of the network output (class logits + extra logits)."""
        return self.n_classes + self.n_extra

    @property
    def divisor(self) -> int:
        """Spatial sizes are padded internally to a multiple of this."""
        return 2**self.depth

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown UNetConfig fields {sorted(unknown)}; the model file was written by a "
                "newer napari-segkit: upgrade napari-segkit"
            )
        return cls(**d)


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = 8 if channels % 8 == 0 else 1
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2."""

    def __init__(self, c_in: int, c_out: int, norm: str, dropout: float = 0.0) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
            norm_layer(norm, c_out),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            norm_layer(norm, c_out),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Bilinear 2x up-sampling, 1x1 conv, concatenation with the skip, conv block."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c_in, c_skip, 1)
        self.block = ConvBlock(2 * c_skip, c_out, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([skip, self.reduce(x)], dim=1))


class UNet(nn.Module):
    """2-D UNet: ``forward((N, C, H, W)) -> (N, n_classes + n_extra, H, W)`` for any H, W."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        cfg = self.config
        chans = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([ConvBlock(cfg.in_channels, chans[0], cfg.norm)])
        for i in range(1, cfg.depth + 1):
            drop = cfg.dropout if i == cfg.depth else 0.0
            self.down.append(ConvBlock(chans[i - 1], chans[i], cfg.norm, drop))
        self.up = nn.ModuleList(
            [UpBlock(chans[i + 1], chans[i], chans[i], cfg.norm) for i in reversed(range(cfg.depth))]
        )
        self.head = nn.Conv2d(chans[0], cfg.n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects (N, {self.config.in_channels}, H, W) input, got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.config.divisor)
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)[..., :h, :w]


def pad_to_multiple(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Pad the last two axes (bottom / right) up to a multiple of ``divisor``.

    Reflect padding where the image is large enough, replicate padding otherwise
    (reflect needs the pad to be smaller than the axis).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)

