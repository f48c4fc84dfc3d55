"""Label images (and images) written as OME-Zarr, streamed block by block.

:func:`add_labels` writes label images into an OME-Zarr image's ``labels/`` group
(same axes, scale and zarr format as the image, one time point at a time if need be);
:func:`write_labels_zarr` / :func:`write_image_zarr` write standalone OME-Zarr;
:func:`save_labels` picks the right one for a prediction. Writing streams chunk by
chunk (blosc-zstd, multiscale levels made from the level written before), so memory
stays at a few chunks whatever the image size. Images are opened with
:func:`napari_segkit.io_zarr.open_image`. No Qt, no napari, no torch imports.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _ngff_write as ngff
from ._common import as_label_dtype
from ._tiff_lazy import ngff_unit
from .io import write_labels
from .io_zarr import LazyImage, check_axes, guess_axes, level_transform, ngff_axes, open_image

__all__ = ["add_labels", "write_labels_zarr", "write_image_zarr", "save_labels"]

PathLike = str | os.PathLike
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")


def _label_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"label name {name!r}: use letters, digits, '_', '-', '.' or spaces "
            "(it becomes a folder name), e.g. 'instances'"
        )
    return name


def _as_label_array(labels: Any, chunks: Sequence[int] | None = None) -> Any:
    """Labels as a dask array of an integer type (numpy: uint16 when it fits, else uint32)."""
    import dask.array as da

    if isinstance(labels, da.Array):
        kind = labels.dtype.kind
        if kind == "b":
            return labels.astype(np.uint8)
        if kind not in "iu":
            raise ValueError(
                f"labels have data type {labels.dtype}; give integer labels "
                "(0 = background, 1..N = objects)"
            )
        return labels
    arr = np.asarray(labels)
    if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"labels have data type {arr.dtype}; give integer labels")
    arr = as_label_dtype(arr)
    return da.from_array(arr, chunks=tuple(chunks) if chunks else "auto")


def _color_list(colors: Mapping[int, Sequence[int]] | None) -> list[dict] | None:
    if not colors:
        return None
    out = []
    for value, rgba in colors.items():
        rgba = [int(round(c)) for c in rgba]
        if len(rgba) == 3:
            rgba.append(255)
        if len(rgba) != 4 or not all(0 <= c <= 255 for c in rgba):
            raise ValueError(f"colour of label {value}: give (r, g, b[, a]) in 0..255, got {rgba}")
        out.append({"label-value": int(value), "rgba": rgba})
    return out


def _image_label_attrs(zarr_format: int, colors, properties, source: bool) -> dict:
    meta: dict[str, Any] = {}
    if zarr_format == 2:
        meta["version"] = "0.4"
    if source:
        meta["source"] = {"image": "../../"}
    color_list = _color_list(colors)
    if color_list:
        meta["colors"] = color_list
    if properties:
        meta["properties"] = [{"label-value": int(k), **dict(v)} for k, v in properties.items()]
    return {"image-label": meta}


def _unit_arg(units: Any, axes: str) -> str | dict | None:
    """One NGFF unit, a unit per space axis, or None, from a str or per-axis sequence."""
    if units is None or isinstance(units, str):
        return ngff_unit(units)
    values = [ngff_unit(str(u)) for u in units]
    space = [a for a in axes if a in "zyx"]
    values = values[-len(space):] if len(values) >= len(space) else values
    per_axis = {a: u for a, u in zip(space, values) if u}
    if len(set(per_axis.values())) <= 1:
        return next(iter(per_axis.values()), None)
    return per_axis


def _default_axes(ndim: int) -> str:
    if not 2 <= ndim <= 5:
        raise ValueError(f"labels must have 2 to 5 dimensions (y, x last), got {ndim}")
    return {2: "yx", 3: "zyx", 4: "tzyx", 5: "tczyx"}[ndim]


def _full(values, axes: str, spatial: str, what: str) -> tuple[float, ...]:
    """A per-spatial-axis scale / translate (or one per axis) -> one value per axis."""
    fill = 1.0 if what == "scale" else 0.0
    if values is None:
        return (fill,) * len(axes)
    values = tuple(float(v) for v in np.ravel(np.asarray(values, dtype=float)))
    if len(values) == len(axes):
        return ngff.check_scale_values(values, len(axes), what)
    if len(values) >= len(spatial):  # napari puts leading axes first: keep the last ones
        tail = dict(zip(spatial, values[-len(spatial):]))
        return ngff.check_scale_values([tail.get(a, fill) for a in axes], len(axes), what)
    raise ValueError(f"{what} {values} needs one value per axis of {axes!r}")


# --------------------------------------------------------------------------- into an image
def add_labels(
    image: LazyImage | PathLike,
    labels: Mapping[str, Any],
    *,
    colors: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
    properties: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    progress=None,
) -> dict[str, Path]:
    """Write label images into an OME-Zarr image: ``<image>/labels/<name>/``.

    Parameters
    ----------
    image : LazyImage or path
        The OME-Zarr image the labels belong to, as opened by :func:`open_image`
        (its level and time point say where the labels go).
    labels : mapping of name -> (z,) y, x integer array (numpy or dask)
        E.g. ``{"instances": result.instances, "semantic": result.semantic}``; all are
        computed in one pass, so a shared dask graph (a prediction) runs once.
    colors, properties : per name, mapping of label value -> RGBA / properties
        Optional ``image-label`` metadata.
    chunks : per-axis chunk shape of the stored arrays (default: see _ngff_write).
    n_levels : int, optional
        Multiscale levels (default: as many as the image has from ``image.level`` on).
    progress : callable(done, total), optional
        Called as level-0 tasks finish (local dask schedulers).

    The labels keep the image's axes with ``c`` of size 1, its scale, translation,
    units and zarr format. For an image with several time points only the selected
    time point is written; the others (of earlier runs) are kept.

    Returns
    -------
    dict of name -> path of each label image.
    """
    import zarr

    if not isinstance(image, LazyImage):
        image = open_image(image, channel=0, max_in_memory_pixels=0)
    if image.kind != "ome-zarr":
        raise ValueError(
            f"{image.path!r} is a {image.kind} image, not an OME-Zarr image; write the labels "
            "with write_labels_zarr or save_labels (a standalone OME-Zarr or TIFF)"
        )
    if not labels:
        raise ValueError("no labels to write: give a mapping of name -> label array")
    group = zarr.open_group(image.path, mode="r+")
    fmt = group.metadata.zarr_format
    ms = ngff.read_ome_attrs(group)["multiscales"][0]
    axes = image.source_axes
    scale, translate = level_transform(ms, image.level)
    _, units = ngff_axes(ms.get("axes"), len(axes), image.path)
    full_shape = tuple(1 if a in "cs" else n for a, n in zip(axes, image.source_shape))
    lead = tuple(
        slice(0, 1) if a in "cs" else (slice(None) if i is None else slice(i, i + 1))
        for a, i in zip(axes[:-2], image.index[:-2])
    )
    partial = any(sl != slice(None) and n > 1 for sl, n in zip(lead, full_shape))
    chunks = tuple(chunks) if chunks else ngff.default_chunks(axes, full_shape)
    levels = n_levels or max(1, len(image.levels) - image.level)
    # where the (z,) y, x labels sit among the stored axes: new axes elsewhere
    spatial_positions = [i for i, (a, idx) in enumerate(zip(axes, image.index))
                         if idx is None and a not in "cs"]  # fmt: skip
    expand = tuple(slice(None) if i in spatial_positions else None for i in range(len(axes)))
    labels_group = group.require_group("labels")
    jobs = []
    for name, lab in labels.items():
        _label_name(name)
        data = _as_label_array(lab, [chunks[i] for i in spatial_positions])
        if tuple(data.shape) != image.spatial_shape:
            raise ValueError(
                f"labels {name!r} have shape {tuple(data.shape)} but the image (level "
                f"{image.level}) is {image.spatial_shape}; give labels of the image opened"
            )
        sub = (labels_group.require_group(name) if partial
               else labels_group.create_group(name, overwrite=True))  # fmt: skip
        jobs.append(ngff.PyramidJob(
            group=sub, data=data[expand], axes=axes, full_shape=full_shape, chunks=chunks,
            scale=scale or (1.0,) * len(axes), translate=translate or (0.0,) * len(axes),
            unit=units or None, n_levels=levels, name=name, method="mode", lead_region=lead,
            extra_attrs=_image_label_attrs(fmt, (colors or {}).get(name),
                                           (properties or {}).get(name), source=True),
        ))  # fmt: skip
    ngff.write_pyramids(jobs, keep_existing=partial, progress=progress)
    names = list(ngff.read_ome_attrs(labels_group).get("labels", []))
    names += [n for n in labels if n not in names]
    ngff.update_ome_attrs(labels_group, {"labels": names})
    return {name: Path(image.path) / "labels" / name for name in labels}


# --------------------------------------------------------------------------- standalone
def _new_group(path: Path, zarr_format: int, overwrite: bool) -> Any:
    import zarr

    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 (OME-NGFF 0.4) or 3 (0.5), got {zarr_format}")
    if path.exists():
        if not overwrite:
            raise ValueError(f"{str(path)!r} exists; choose another path or pass overwrite=True")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return zarr.open_group(str(path), mode="w", zarr_format=zarr_format)


def _standalone_job(path, data, *, axes, scale, units, translate, zarr_format, chunks,
                    n_levels, name, method, overwrite, extra=None) -> ngff.PyramidJob:  # fmt: skip
    spatial = "".join(a for a in axes if a in "zyx")
    if len(axes) != data.ndim or not axes.endswith("yx"):
        raise ValueError(f"axes {axes!r} do not fit a {data.ndim}-D array ending in y, x")
    group = _new_group(Path(path), zarr_format, overwrite)
    chunks = tuple(chunks) if chunks else ngff.default_chunks(axes, data.shape)
    return ngff.PyramidJob(
        group=group, data=data, axes=axes, full_shape=tuple(data.shape), chunks=chunks,
        scale=_full(scale, axes, spatial, "scale"), translate=_full(translate, axes, spatial, "translate"),
        unit=_unit_arg(units, axes), n_levels=n_levels or ngff.auto_levels(data.shape),
        name=name, method=method, extra_attrs=extra or {},
    )  # fmt: skip


def write_labels_zarr(
    path: PathLike,
    labels: Any,
    *,
    name: str | None = None,
    axes: str | None = None,
    scale: Sequence[float] | None = None,
    units: Any = None,
    translate: Sequence[float] | None = None,
    zarr_format: int = 2,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    colors: Mapping[int, Sequence[int]] | None = None,
    properties: Mapping[int, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    progress=None,
) -> Path:
    """Write one label image as a standalone OME-Zarr (multiscale, ``image-label``).

    ``axes`` default to ``yx`` / ``zyx`` / ``tzyx`` / ``tczyx`` by dimension; ``scale``
    and ``translate`` give one value per axis or per spatial axis (napari layer
    ``scale``); ``units`` a unit name or one per axis (napari ``layer.units``).
    ``zarr_format`` 2 writes OME-NGFF 0.4 (widest support), 3 writes 0.5.
    Returns the path written.
    """
    data = _as_label_array(labels)
    axes = (axes or _default_axes(data.ndim)).lower()
    job = _standalone_job(
        path, data, axes=axes, scale=scale, units=units, translate=translate,
        zarr_format=zarr_format, chunks=chunks, n_levels=n_levels,
        name=name or Path(path).stem, method="mode", overwrite=overwrite,
        extra=_image_label_attrs(zarr_format, colors, properties, source=False),
    )  # fmt: skip
    ngff.write_pyramids([job], keep_existing=False, progress=progress)
    return Path(path)


def write_image_zarr(
    path: PathLike,
    data: Any,
    *,
    axes: str | None = None,
    scale: Sequence[float] | None = None,
    units: Any = None,
    translate: Sequence[float] | None = None,
    zarr_format: int = 2,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    name: str = "image",
    overwrite: bool = False,
    progress=None,
) -> Path:
    """Write an image (numpy or dask) as an OME-Zarr image with a mean-downsampled pyramid.

    ``axes`` as in :func:`open_image` (default by shape: ``yx``, ``zyx``, ``yxs``);
    colour samples (``s``) are stored as a leading channel axis ``c``, as NGFF asks.
    Returns the path written.
    """
    import dask.array as da

    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks="auto")
    if data.dtype.kind not in "uif" or data.dtype.itemsize > 8:
        raise ValueError(f"image data type {data.dtype} cannot be stored; give numbers")
    axes = check_axes(axes, data.ndim, str(path)) if axes else guess_axes(data.shape, str(path))
    if "s" in axes:  # NGFF: channels before space
        pos = axes.index("s")
        data = da.moveaxis(data, pos, 0)
        axes = "c" + axes.replace("s", "")
    order = sorted(range(len(axes)), key=lambda i: "tczyx".index(axes[i]))
    if order != list(range(len(axes))):
        data, axes = data.transpose(order), "".join(axes[i] for i in order)
    job = _standalone_job(
        path, data, axes=axes, scale=scale, units=units, translate=translate,
        zarr_format=zarr_format, chunks=chunks, n_levels=n_levels, name=name,
        method="mean", overwrite=overwrite,
    )  # fmt: skip
    ngff.write_pyramids([job], keep_existing=False, progress=progress)
    return Path(path)


# --------------------------------------------------------------------------- prediction outputs
def save_labels(
    image: LazyImage,
    labels: Mapping[str, Any],
    out_dir: PathLike | None = None,
    *,
    stem: str | None = None,
    into_source: bool = True,
    colors: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
    progress=None,
) -> dict[str, Path]:
    """Save the label images of a prediction where they belong.

    * OME-Zarr source and ``into_source``: into the image's ``labels/`` group
      (:func:`add_labels`);
    * lazy (big) source otherwise: ``<out_dir>/<stem>_<name>.zarr`` each, standalone
      OME-Zarr with the image's scale and units, all computed in one pass;
    * in-memory (small) source: ``<out_dir>/<stem>_<name>.tif`` (zlib TIFF).

    Returns a dict of name -> path written.
    """
    import dask.array as da

    if image.kind == "ome-zarr" and into_source:
        return add_labels(image, labels, colors=colors, progress=progress)
    if out_dir is None:
        raise ValueError("give out_dir: the folder for the label files")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or re.sub(r"\.ome$", "", Path(image.path.rstrip("/")).stem)
    lazy = image.is_lazy or any(isinstance(v, da.Array) for v in labels.values())
    paths = {}
    if not lazy:
        for name, lab in labels.items():
            paths[name] = write_labels(out / f"{stem}_{_label_name(name)}.tif", lab)
        return paths
    spatial = image.axes.rstrip("c")
    jobs = []
    for name, lab in labels.items():
        paths[name] = out / f"{stem}_{_label_name(name)}.zarr"
        data = _as_label_array(lab)
        jobs.append(_standalone_job(
            paths[name], data, axes=spatial, scale=image.scale, units=image.units,
            translate=image.translate, zarr_format=image.zarr_format or 2, chunks=None,
            n_levels=None, name=name, method="mode", overwrite=True,
            extra=_image_label_attrs(image.zarr_format or 2, (colors or {}).get(name), None,
                                     source=False),
        ))  # fmt: skip
    ngff.write_pyramids(jobs, keep_existing=False, progress=progress)
    return paths
