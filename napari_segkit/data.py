"""Deprecated: ``napari_segkit.data`` was split up; its names still work from here.

Normalisation moved to :mod:`napari_segkit.normalization` (with ``luminance`` and
``is_brightfield``), patch sampling to :mod:`napari_segkit.sampling` (with
``IGNORE_INDEX``). Reading a name here forwards to its new home with a
``DeprecationWarning``. Nothing inside napari-segkit imports this module.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import normalization, sampling

_HOMES = {
    **{name: normalization for name in normalization.__all__},
    **{name: sampling for name in sampling.__all__},
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"napari_segkit.data.{name} is deprecated; import it from {home.__name__}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(home, name)
