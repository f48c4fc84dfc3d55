"""Deprecated: ``napari_segkit.data`` was split up; its names still work from here.

Normalisation moved to :mod:`napari_segkit.normalization` (with ``luminance`` and
``is_brightfield``), patch sampling to :mod:`napari_segkit.sampling` (with
``IGNORE_INDEX``). Reading a name here forwards to its new home with a
``DeprecationWarning``. Nothing inside napari-segkit imports this module.
"""

from . import normalization, sampling
from ._common import moved_names

_HOMES = {
    **{name: normalization for name in normalization.__all__},
    **{name: sampling for name in sampling.__all__},
}
__all__ = sorted(_HOMES)
__getattr__ = moved_names(__name__, _HOMES)
