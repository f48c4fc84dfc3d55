"""Small helpers shared by the core modules (no Qt, no napari)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_label_dtype(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as uint16 when its largest id fits, else uint32.

    Negative values are rejected: label images hold 0 for background and 1..N.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return labels.astype(np.uint16)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(
            f"label image has negative values (min {lo}); use 0 for background and 1..N for objects"
        )
    dtype = np.uint16 if hi < np.iinfo(np.uint16).max else np.uint32
    if hi > np.iinfo(np.uint32).max:
        dtype = np.uint64
    return labels.astype(dtype, copy=False)


def check_scale(scale: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Validate a per-axis pixel spacing (napari ``layer.scale``); ``None`` means 1 per axis.

    A scale with more entries than ``ndim`` keeps its last ``ndim`` entries (napari puts
    leading axes such as time or channel first).
    """
    if scale is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in np.ravel(np.asarray(scale, dtype=float)))
    if len(values) < ndim:
        raise ValueError(
            f"scale {values} has {len(values)} entries but the data has {ndim} dimensions; "
            "give one spacing per axis, e.g. (z, y, x)"
        )
    values = values[-ndim:]
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale {values} must be positive finite spacings, one per axis")
    return values
