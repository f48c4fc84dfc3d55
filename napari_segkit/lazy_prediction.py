"""Prediction of an image that is not in memory (a dask, zarr or multiscale layer):
block by block at full resolution, into multiscale labels on disk, with a block-wise
per-object table. What the Predict dock runs for such layers.

:func:`is_blockwise_input` says which images go this way: 2-D (gray or colour) arrays
that are not numpy arrays. :func:`predict_lazy` reads the image one block (plus
context) at a time (:func:`napari_segkit.predict_blocks.predict_blocks_to_zarr`), writes
instances and semantic labels as multiscale OME-Zarr label images in a temporary folder
(removed when Python exits), opens their levels as dask arrays (napari shows them as
multiscale Labels, reading only what is on screen) and sums the per-object table block
by block (:func:`napari_segkit.measure_blocks.blockwise_object_table`). Nothing ever
holds the whole image, its probabilities or its labels. No Qt, no napari imports.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._common import ProgressCallback, StopFlag
from .predict_blocks import predict_blocks_to_zarr

__all__ = ["LazyPrediction", "is_blockwise_input", "predict_lazy"]

#: Dask block edge of images handed over as other array-likes (zarr arrays...).
READ_BLOCK = 2048


def is_blockwise_input(data: Any) -> bool:
    """True for a 2-D image (H, W) or (H, W, 3|4) that is lazy (dask, zarr or another
    array-like, not a numpy array): it is predicted block by block."""
    if isinstance(data, np.ndarray) or not hasattr(data, "shape"):
        return False
    shape = tuple(data.shape)
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))


@dataclass
class LazyPrediction:
    """Result of :func:`predict_lazy`: label levels (dask, level 0 = full resolution),
    the per-object table, the number of pixels of each class and where the files are."""

    instances: list
    semantic: list
    table: pd.DataFrame
    class_pixels: np.ndarray
    folder: Path
    summary: dict[str, Any] = field(default_factory=dict)


def _as_dask(data: Any) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    chunks = (READ_BLOCK, READ_BLOCK) + ((-1,) if data.ndim == 3 else ())
    return da.from_array(data, chunks=chunks, asarray=False, fancy=False)


def _remove_later(folder: Path) -> None:
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def predict_lazy(
    model: Any,
    data: Any,
    *,
    scale: tuple[float, ...] | None = None,
    units: str | None = None,
    translate: tuple[float, ...] | None = None,
    tile_size: int = 256,
    tta: bool = False,
    device: Any = None,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    work_dir: str | os.PathLike | None = None,
    block: int | None = None,
    **postprocess: Any,
) -> LazyPrediction:
    """Predict a lazy 2-D image block by block (see the module notes).

    ``scale`` / ``units`` / ``translate``: the image's geometry (y, x), written into the
    label files and used by the table. ``work_dir``: where the label folder goes
    (default: the temporary folder; removed at exit either way). ``progress(done, total)``
    follows tiles; ``stop`` raises :class:`~napari_segkit._common.Cancelled`.
    ``postprocess``: as in :func:`napari_segkit.predict_blocks.predict_file_blockwise`.
    """
    import dask
    import dask.array as da

    from .io_zarr import open_image
    from .io_zarr_write import write_labels_zarr
    from .measure_blocks import blockwise_object_table

    if not is_blockwise_input(data):
        raise ValueError(f"an image of shape {tuple(np.shape(data))} is not a lazy 2-D "
                         "image; predict it with napari_segkit.predict")
    image = _as_dask(data)
    folder = Path(tempfile.mkdtemp(prefix="segkit-prediction-", dir=work_dir))
    _remove_later(folder)
    try:
        done = predict_blocks_to_zarr(
            model, image, folder / "blocks", rgb=image.ndim == 3, tile_size=tile_size,
            tta=tta, device=device, block=block, progress=progress, stop=stop,
            **postprocess)  # fmt: skip
        levels = {}
        for name, array in (("instances", done.instances), ("semantic", done.semantic)):
            path = write_labels_zarr(
                folder / f"{name}.zarr", da.from_zarr(array, chunks=(done.block, done.block)),
                name=name, scale=scale, units=units, translate=translate)  # fmt: skip
            levels[name] = list(open_image(path, max_in_memory_pixels=0).levels)
        shutil.rmtree(folder / "blocks", ignore_errors=True)  # the pyramids hold the labels
        with dask.config.set(scheduler="synchronous"):  # one block in memory at a time
            table = blockwise_object_table(levels["instances"][0].rechunk(done.block), image,
                                           scale=scale, units=units, translate=translate)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return LazyPrediction(levels["instances"], levels["semantic"], table, done.class_pixels,
                          folder)
