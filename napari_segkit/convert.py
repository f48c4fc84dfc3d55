"""Deprecated: ``napari_segkit.convert`` is :mod:`napari_segkit.annotations.modes` now.

Its names (``convert_points``, ``convert_shapes``, ``MODES``, ...) still work from here,
with a ``DeprecationWarning``; import them from :mod:`napari_segkit.annotations`.
Nothing inside napari-segkit imports this module.
"""

from . import annotations
from ._common import moved_names
from .annotations import modes

__all__ = list(modes.__all__)
__getattr__ = moved_names(__name__, dict.fromkeys(modes.__all__, annotations))
