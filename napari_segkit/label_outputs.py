"""Where and how the label images of a file prediction are written: TIFF or OME-Zarr.

The CLI's ``predict --labels-format`` and :func:`napari_segkit.workflows.predict_folder`
choose per image (:func:`labels_format_for`): ``"auto"`` writes OME-Zarr for images
predicted block by block (``.zarr`` images, big TIFFs) and zlib TIFF for small images
predicted in memory; ``"zarr"`` / ``"tif"`` always one of them. Outputs are
``<stem>_instances`` / ``<stem>_semantic`` with the suffix of the format
(:func:`label_paths`). :func:`write_label_image` writes one label image (numpy, or a
disk-backed zarr array streamed chunk by chunk) to a path whose suffix says the format;
OME-Zarr outputs are standalone multiscale label images with the source's scale and
units (:func:`napari_segkit.io_zarr_write.write_labels_zarr`).

``--labels-into-source`` writes them into the source OME-Zarr image's ``labels/`` group
instead (names :data:`LABEL_NAMES`); :func:`check_labels_into_source` refuses, before any
work, sources that are not OME-Zarr, are read-only, or already hold labels of those names
(they are never overwritten). No Qt, no napari, no torch imports.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LABELS_FORMATS",
    "LABEL_NAMES",
    "OUTPUT_TILE",
    "check_label_options",
    "check_labels_format",
    "check_labels_into_source",
    "label_paths",
    "labels_format_for",
    "path_format",
    "source_geometry",
    "write_label_image",
]

#: Values of ``--labels-format`` / ``labels_format=``.
LABELS_FORMATS = ("auto", "tif", "zarr")
#: Names of the label images of a prediction (file name endings, ``labels/`` groups).
LABEL_NAMES = ("instances", "semantic")
#: Edge of the tiles of the label TIFFs written from zarr arrays.
OUTPUT_TILE = 512
_SUFFIX = {"tif": ".tif", "zarr": ".zarr"}


def check_labels_format(labels_format: str) -> str:
    """``labels_format`` when it is one of :data:`LABELS_FORMATS`, else ValueError."""
    if labels_format not in LABELS_FORMATS:
        raise ValueError(f"labels_format must be one of {', '.join(LABELS_FORMATS)}, "
                         f"got {labels_format!r}")
    return labels_format


def labels_format_for(labels_format: str, blockwise: bool) -> str:
    """``"tif"`` or ``"zarr"``: the format of the labels of one image; ``"auto"`` gives
    OME-Zarr to images predicted block by block, TIFF to images predicted in memory."""
    if check_labels_format(labels_format) == "auto":
        return "zarr" if blockwise else "tif"
    return labels_format


def label_paths(out: str | os.PathLike, stem: str, fmt: str) -> tuple[Path, Path]:
    """``out/<stem>_instances.<ext>`` and ``out/<stem>_semantic.<ext>`` of format ``fmt``
    (``"tif"`` or ``"zarr"``)."""
    if fmt not in _SUFFIX:
        raise ValueError(f"label files are 'tif' or 'zarr', got {fmt!r}")
    return tuple(Path(out) / f"{stem}_{name}{_SUFFIX[fmt]}" for name in LABEL_NAMES)  # type: ignore[return-value]


def path_format(path: str | os.PathLike) -> str:
    """``"zarr"`` for a ``.zarr`` path, ``"tif"`` for ``.tif`` / ``.tiff``, else ValueError."""
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in (".tif", ".tiff"):
        return "tif"
    raise ValueError(f"{str(path)!r}: label images are written as .tif (zlib TIFF) or .zarr "
                     "(OME-Zarr); give a path ending in one of them")


def write_label_image(
    path: str | os.PathLike,
    labels: Any,
    *,
    dtype: Any = None,
    scale: Sequence[float] | None = None,
    units: Any = None,
    translate: Sequence[float] | None = None,
    zarr_format: int = 2,
) -> Path:
    """Write one label image to ``path``, in the format its suffix says.

    Parameters
    ----------
    path
        ``.tif`` / ``.tiff``: a zlib TIFF (tiled and written a row of tiles at a time
        when ``labels`` is not numpy); ``.zarr``: a standalone multiscale OME-Zarr label
        image, replaced when it exists.
    labels
        (Z,) Y, X integer labels: numpy, or a zarr / dask array read a chunk at a time.
    dtype
        Data type to store (e.g. :func:`napari_segkit._common.label_dtype` of the largest
        id); default: uint16 when the ids fit (numpy), else as given.
    scale, units, translate
        Physical pixel size, unit and offset per spatial axis (OME-Zarr only).
    zarr_format
        2 (OME-NGFF 0.4) or 3 (0.5).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    import dask.array as da

    from .io import write_labels
    from .io_zarr_write import write_labels_zarr

    path = Path(path)
    fmt = path_format(path)
    in_memory = isinstance(labels, np.ndarray)
    if fmt == "tif":
        if in_memory:
            return write_labels(path, labels if dtype is None else labels.astype(dtype))
        _write_tiled_tiff(path, labels, dtype or labels.dtype)
        return path
    if in_memory:
        data = labels if dtype is None else labels.astype(dtype)
    else:
        data = labels if isinstance(labels, da.Array) else da.from_zarr(
            labels, chunks=(2 * OUTPUT_TILE,) * labels.ndim)
        data = data if dtype is None else data.astype(dtype)
    return write_labels_zarr(path, data, name=path.stem, scale=scale, units=units,
                             translate=translate, zarr_format=zarr_format, overwrite=True)


def _write_tiled_tiff(path: Path, array: Any, dtype: Any) -> None:
    """Write a 2-D (zarr) array as a tiled zlib TIFF, one row of tiles at a time."""
    import tifffile

    height, width = array.shape
    t = OUTPUT_TILE

    def tiles():
        for y in range(0, height, t):
            strip = np.asarray(array[y:y + t]).astype(dtype, copy=False)
            for x in range(0, width, t):
                part = strip[:, x:x + t]
                if part.shape != (t, t):
                    part = np.pad(part, ((0, t - part.shape[0]), (0, t - part.shape[1])))
                yield np.ascontiguousarray(part)

    tifffile.imwrite(path, tiles(), shape=(height, width), dtype=np.dtype(dtype),
                     tile=(t, t), compression="zlib")


# --------------------------------------------------------------------------- into the source
def check_labels_into_source(path: str | os.PathLike) -> Any:
    """The source image opened (lazily) when the labels of a prediction may be written
    into its ``labels/`` group; ValueError with what to do otherwise.

    Refused: a source that is not an OME-Zarr image (a TIFF, a plain zarr array), one
    that is read-only (no write permission, or no write bit at all), and one that
    already holds labels named ``instances`` or ``semantic`` (never overwritten).
    """
    from .io_zarr import open_image

    name = Path(path).name
    instead = ("leave out --labels-into-source (labels_into_source) to write "
               "<stem>_instances / <stem>_semantic files to --out")
    image = open_image(path, max_in_memory_pixels=0)
    if image.kind != "ome-zarr":
        what = "a TIFF file" if image.kind == "tiff" else "a plain zarr array"
        raise ValueError(f"{name} is {what}, not an OME-Zarr image: it has no labels/ group "
                         f"to write into; {instead}")
    root = Path(image.path)
    labels = root / "labels"
    for folder in (root, labels):
        if folder.exists() and not _writable(folder):
            raise ValueError(f"{name}: {folder} is read-only, so no labels can be written "
                             f"into it; make it writable, or {instead}")
    existing = [n for n in LABEL_NAMES if (labels / n).exists()]
    if existing:
        listed = " and ".join(f"{labels / n}" for n in existing)
        raise ValueError(f"{name} already has labels {' and '.join(map(repr, existing))} "
                         f"({listed}); napari-segkit never overwrites them: move or delete "
                         f"them first, or {instead}")
    return image


def _writable(folder: Path) -> bool:
    """Writable by this process, and not marked read-only (no write bit at all, which
    also keeps root, who may write anywhere, from writing into protected data)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & (
        stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def check_label_options(files: Sequence[str | os.PathLike], labels_format: str,
                        labels_into_source: bool) -> None:
    """Check ``labels_format`` and, with ``labels_into_source``, every source
    (:func:`check_labels_into_source`) before any image is predicted."""
    check_labels_format(labels_format)
    if not labels_into_source:
        return
    if labels_format == "tif":
        raise ValueError("--labels-into-source (labels_into_source) writes OME-Zarr labels "
                         "into the .zarr images; it does not go with --labels-format tif")
    for path in files:
        check_labels_into_source(path)


def source_geometry(path: str | os.PathLike, shape: Sequence[int]) -> dict[str, Any]:
    """Scale, units and translation of the image file ``path`` (read from its metadata,
    no pixels read) for OME-Zarr labels of ``shape``; empty when the file says none or
    its spatial shape differs (another axis order was asked for)."""
    from .io_zarr import open_image

    try:
        image = open_image(path, max_in_memory_pixels=0)
    except ValueError:  # several channels / time points: the layout was given otherwise
        return {}
    if image.spatial_shape != tuple(shape):
        return {}
    return {"scale": image.scale, "units": image.units, "translate": image.translate}
