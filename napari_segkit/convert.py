"""Deprecated: ``napari_segkit.convert`` is :mod:`napari_segkit.annotations.modes` now.

Its names (``convert_points``, ``convert_shapes``, ``MODES``, ...) still work from here
(with a ``DeprecationWarning``), and from :mod:`napari_segkit.annotations`. Nothing
inside napari-segkit imports this module.
"""

from __future__ import annotations

import warnings
from typing import Any

from .annotations import modes

__all__ = list(modes.__all__)


def __getattr__(name: str) -> Any:
    if name not in modes.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"napari_segkit.convert.{name} is deprecated; import it from napari_segkit.annotations",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(modes, name)
