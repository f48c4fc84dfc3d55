"""napari writers (npe2 ``writers`` contributions): Labels as TIFF or OME-Zarr, tables as CSV.

napari calls each with ``(path, data, meta)``: the layer's data (an array, or a list of
arrays for a multiscale layer) and its state (``scale``, ``translate``, ``units``,
``name``, ``features``, ...). Plain arrays and dicts only: no napari import here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .io_zarr import MAX_IN_MEMORY_PIXELS

__all__ = ["write_labels_tiff", "write_labels_ome_zarr", "write_labels_table_csv"]


def _full_resolution(data: Any, meta: dict) -> Any:
    """Level 0 of a multiscale layer, else the data itself."""
    if meta.get("multiscale") or isinstance(data, list | tuple):
        return data[0]
    return data


def _units(meta: dict) -> Any:
    units = meta.get("units")
    if units is None:
        return None
    return [str(u) for u in (units if isinstance(units, list | tuple) else [units])]


def _with_suffix(path: str, suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    return p if p.suffix.lower() in suffixes else p.with_name(p.name + suffixes[0])


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Labels layer -> zlib TIFF (uint16 when the ids fit, else uint32)."""
    from .io import write_labels

    labels = _full_resolution(data, meta)
    if math.prod(labels.shape) > MAX_IN_MEMORY_PIXELS:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} are too large for one TIFF in memory; "
            "save them as .zarr (OME-Zarr) instead"
        )
    out = write_labels(_with_suffix(path, (".tif", ".tiff")), np.asarray(labels))
    return [str(out)]


def write_labels_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Labels layer -> standalone OME-Zarr label image (multiscale, layer scale and units)."""
    from .io_zarr_write import write_labels_zarr

    labels = _full_resolution(data, meta)
    out = write_labels_zarr(
        _with_suffix(path, (".zarr",)), labels, name=meta.get("name") or None,
        scale=meta.get("scale"), translate=meta.get("translate"), units=_units(meta),
        overwrite=True,
    )  # fmt: skip
    return [str(out)]


def write_labels_table_csv(path: str, data: Any, meta: dict) -> list[str]:
    """Labels layer -> its per-object table (``features``) as CSV.

    A layer without features gets the table measured from its labels (size, centroid,
    in the layer's physical units), block by block for large or multiscale layers.
    """
    import pandas as pd

    features = meta.get("features")
    table = pd.DataFrame(features) if features is not None else pd.DataFrame()
    if table.empty or len(table.columns) == 0:
        table = _measure(_full_resolution(data, meta), meta)
    out = _with_suffix(path, (".csv",))
    table.to_csv(out, index=False)
    return [str(out)]


def _measure(labels: Any, meta: dict):
    from .measure import object_table
    from .measure_blocks import blockwise_object_table

    ndim = labels.ndim
    scale = meta.get("scale")
    units = _units(meta)
    physical = units is not None and any(u not in ("pixel", "pixels") for u in units)
    kwargs = {}
    if physical or (scale is not None and not np.allclose(np.asarray(scale, float), 1.0)):
        kwargs = {"scale": list(scale)[-ndim:] if scale is not None else None,
                  "units": units[-ndim:] if units else None,
                  "translate": list(meta.get("translate") or [0.0] * ndim)[-ndim:]}  # fmt: skip
    if ndim not in (2, 3):
        raise ValueError(f"the table of a {ndim}-D labels layer is not supported; use 2-D or 3-D")
    if isinstance(labels, np.ndarray):
        return object_table(labels, **kwargs)
    return blockwise_object_table(labels, **kwargs)
