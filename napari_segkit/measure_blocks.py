"""The per-object table of label images too large for memory, block by block.

:func:`blockwise_object_table` gives the same table as
:func:`napari_segkit.measure.object_table` (without the ground-truth columns) for a
dask label image: every block contributes per-label sums (pixel count, coordinate
sums, intensity sum), and the sums of each label are added over the blocks, so
objects cut by block borders are measured whole. Only one row per object is ever in
memory. Read the labels back from the file they were written to (e.g.
``open_image("<image>.zarr/labels/instances").data``) rather than passing a
prediction's graph, so that the prediction does not run a second time.

No Qt, no napari imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._common import check_scale
from .measure import check_translate, column_names, geometry_columns, unit_name

__all__ = ["blockwise_object_table", "BLOCK"]

#: Block edge used for numpy inputs.
BLOCK = 2048


def _block_sums(labels: np.ndarray, image: np.ndarray | None, offset: Sequence[int]):
    """Per-label pixel count, coordinate sums (global) and intensity sum of one block."""
    flat = labels.ravel()
    fg = flat != 0
    if not fg.any():
        return None
    ids, inverse = np.unique(flat[fg], return_inverse=True)
    n = len(ids)
    count = np.bincount(inverse, minlength=n).astype(np.float64)
    coords = np.indices(labels.shape, dtype=np.float64).reshape(labels.ndim, -1)[:, fg]
    sums = [np.bincount(inverse, weights=c, minlength=n) + o * count
            for c, o in zip(coords, offset)]  # fmt: skip
    columns = [count, *sums]
    if image is not None:
        columns.append(np.bincount(inverse, weights=image.ravel()[fg].astype(np.float64), minlength=n))
    return ids.astype(np.int64), np.stack(columns, axis=1)


def _intensity(image: Any, shape: tuple[int, ...]) -> Any:
    import dask.array as da

    img = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    if tuple(img.shape) == shape:
        return img.astype(np.float64)
    if img.ndim == len(shape) + 1 and tuple(img.shape[:-1]) == shape:
        return img[..., :3].astype(np.float64).mean(axis=-1)  # RGB(A): mean of colours
    raise ValueError(
        f"image shape {tuple(img.shape)} does not match labels shape {shape}; "
        "measure the labels of this image (RGB images: (H, W, 3))"
    )


def blockwise_object_table(
    labels: Any,
    image: Any = None,
    *,
    scale: Sequence[float] | None = None,
    units: Any = None,
    translate: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per object of a (dask) label image, computed block by block.

    Parameters and columns as in :func:`napari_segkit.measure.object_table` (no
    ``gt``): ``label``, ``centroid-i``, physical centroids when ``scale`` or ``units``
    is given, ``area_px`` / ``volume_vox`` and their physical versions, equivalent
    diameters, and ``mean_intensity`` / ``integrated_intensity`` with ``image``.
    ``labels`` may be a numpy or dask array of integers; ``image`` is rechunked to the
    labels' blocks.
    """
    import dask
    import dask.array as da

    if not isinstance(labels, da.Array):
        labels = da.from_array(np.asarray(labels), chunks=BLOCK)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels have data type {labels.dtype}; give integer labels")
    ndim = labels.ndim
    if ndim not in (2, 3):
        raise ValueError(f"labels must be 2-D or 3-D, got shape {labels.shape}")
    physical = None
    if scale is not None or units is not None:
        physical = unit_name(units) or "scaled"
    spacing = np.asarray(check_scale(scale, ndim))
    offset = np.zeros(ndim) if translate is None else np.asarray(check_translate(translate, ndim))
    img = None
    if image is not None:
        img = _intensity(image, tuple(labels.shape)).rechunk(labels.chunks)
    starts = [np.cumsum((0, *c))[:-1] for c in labels.chunks]
    parts = []
    for idx in np.ndindex(*labels.numblocks):
        corner = [int(starts[d][i]) for d, i in enumerate(idx)]
        block_img = None if img is None else img.blocks[idx]
        parts.append(dask.delayed(_block_sums)(labels.blocks[idx], block_img, corner))
    results = [r for r in dask.compute(*parts) if r is not None]

    cols = column_names(ndim, physical, img is not None, False)
    if not results:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols}).astype({"label": np.int64})
    ids = np.concatenate([r[0] for r in results])
    sums = np.concatenate([r[1] for r in results])
    label_ids, inverse = np.unique(ids, return_inverse=True)
    total = np.stack([np.bincount(inverse, weights=sums[:, j], minlength=len(label_ids))
                      for j in range(sums.shape[1])], axis=1)  # fmt: skip
    size_px = total[:, 0]
    data = geometry_columns(label_ids, total[:, 1:1 + ndim] / size_px[:, None], size_px,
                            spacing, offset, physical)
    if img is not None:
        data["mean_intensity"] = total[:, 1 + ndim] / size_px
        data["integrated_intensity"] = total[:, 1 + ndim]
    return pd.DataFrame(data, columns=cols)
