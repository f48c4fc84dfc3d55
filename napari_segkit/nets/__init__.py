"""Segmentation networks behind ``UNetConfig(arch=...)``: one small module per architecture.

Every network takes a :class:`napari_segkit.model.UNetConfig`, maps ``(N, C, H, W)`` to
``(N, n_classes + n_extra, H, W)`` for any H, W (padded internally to a multiple of
``config.divisor`` and cropped back) and keeps its config as ``.config``, so training,
tiled prediction and model files treat them alike.

| arch | module | what |
| --- | --- | --- |
| ``unet`` | :mod:`napari_segkit.model` | plain UNet (Ronneberger 2015), conv-norm-ReLU blocks |
| ``resunet`` | :mod:`.resunet` | UNet of residual blocks with BatchNorm (Zhang 2018, He 2016) |
| ``unetpp`` | :mod:`.unetpp` | UNet++: nested dense skip paths, optional deep supervision (Zhou 2018) |
| ``aspp_unet`` | :mod:`.aspp_unet` | UNet with a DeepLab atrous spatial pyramid pooling bottleneck (Chen 2017) |
| ``unext`` | :mod:`.unext` | UNeXt: conv stages + tokenised shifted-MLP stages (Valanarasu 2022) |

torchvision (Mask R-CNN and friends) has no CPU build in this environment, so no
detection-based architecture is offered.
"""

from __future__ import annotations

import importlib

from ..model import ARCHITECTURES

#: arch name -> (module, class name); modules are imported on first use.
REGISTRY: dict[str, tuple[str, str]] = {
    "unet": ("napari_segkit.model", "UNet"),
    "resunet": ("napari_segkit.nets.resunet", "ResUNet"),
    "unetpp": ("napari_segkit.nets.unetpp", "UNetPlusPlus"),
    "aspp_unet": ("napari_segkit.nets.aspp_unet", "ASPPUNet"),
    "unext": ("napari_segkit.nets.unext", "UNeXt"),
}
if tuple(REGISTRY) != ARCHITECTURES:  # every architecture UNetConfig accepts has a builder
    raise ImportError(f"nets.REGISTRY {tuple(REGISTRY)} differs from model.ARCHITECTURES")
__all__ = ["ARCHITECTURES", "build_network", "network_class"]


def network_class(arch: str) -> type:
    """The class that builds architecture ``arch``."""
    if arch not in REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    module, name = REGISTRY[arch]
    return getattr(importlib.import_module(module), name)


def build_network(config):
    """A freshly initialised network for ``config`` (a ``UNetConfig``)."""
    return network_class(config.arch)(config)
