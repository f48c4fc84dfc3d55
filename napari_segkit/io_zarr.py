"""Big images: OME-Zarr, plain Zarr (formats 2 and 3) and TIFF opened lazily.

:func:`open_image` opens an OME-Zarr image (NGFF 0.1-0.5, also a label image or a
bioformats2raw container), a plain zarr array, or a TIFF file (OME-TIFF, ImageJ,
pyramidal, tiled or striped) as a :class:`LazyImage`: a dask array (nothing is read
until a block is computed) with its physical pixel size and unit, ready for
:func:`napari_segkit.prediction.predict`. Time and channel axes are selected
(``timepoint=``, ``channel=``) or refused with a message that says how to select.
Images of at most :data:`MAX_IN_MEMORY_PIXELS` pixels come back as numpy arrays,
so small images take the fast in-memory path.

Writing (labels into an OME-Zarr image, standalone OME-Zarr) is
:mod:`napari_segkit.io_zarr_write`. No Qt, no napari, no torch imports.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _ngff_write as ngff
from ._tiff_lazy import ngff_unit, tiff_info, tiff_level_array

__all__ = [
    "LazyImage",
    "ImageNotFoundError",
    "open_image",
    "level_transform",
    "ngff_axes",
    "check_axes",
    "guess_axes",
    "MAX_IN_MEMORY_PIXELS",
    "BLOCK_SIZE",
]

PathLike = str | os.PathLike

#: Images with at most this many pixels (z * y * x) are returned as numpy arrays: the
#: in-memory prediction of an 8192 x 8192 image peaks at about 2.7 GB.
MAX_IN_MEMORY_PIXELS = 8192 * 8192
#: Target dask block edge (y, x) of lazily read images: the unit of work of a prediction.
BLOCK_SIZE = 2048
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


class ImageNotFoundError(FileNotFoundError, ValueError):
    """No file or folder at the path given (both a FileNotFoundError and a ValueError)."""


@dataclass(frozen=True)
class LazyImage:
    """An image opened by :func:`open_image`.

    Attributes
    ----------
    data : dask array, or numpy when small
        The selected image, axes ``axes``.
    axes : str
        ``"yx"``, ``"zyx"``, ``"yxc"`` or ``"zyxc"`` (``c`` last: colour samples).
    scale, translate : tuple of float or None
        Physical pixel size / offset per spatial axis (z, y, x as present), when known.
    units : str or None
        NGFF unit name of the spatial axes (e.g. ``"micrometer"``), when known.
    levels : tuple of dask arrays
        Every multiscale level with the same selection (level 0 = full resolution).
    level : int
        The level ``data`` comes from.
    path, kind, zarr_format
        Where it came from; kind is ``"ome-zarr"``, ``"zarr"`` or ``"tiff"``.
    source_axes, source_shape, index
        Axes and shape of the stored array (``tczyx`` letters, ``s`` = colour samples)
        and, per stored axis, the index selected or squeezed away (None = kept).
    channel_names : tuple of str
        Channel names from the file's metadata, if any.
    """

    data: Any
    axes: str
    scale: tuple[float, ...] | None
    units: str | None
    translate: tuple[float, ...] | None
    levels: tuple[Any, ...]
    level: int
    path: str
    kind: str
    zarr_format: int | None
    source_axes: str
    source_shape: tuple[int, ...]
    index: tuple[int | None, ...]
    channel_names: tuple[str, ...] = ()

    @property
    def is_lazy(self) -> bool:
        """True when ``data`` is a dask array (not loaded)."""
        return not isinstance(self.data, np.ndarray)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the colour axis: what label images of this image have."""
        return tuple(self.data.shape[:-1] if self.axes.endswith("c") else self.data.shape)


@dataclass
class _Source:
    """A stored image before axis selection: every level, per-axis transforms."""

    arrays: list  # dask arrays, all stored axes
    axes: str
    scales: list  # per level: tuple per axis, or None
    translations: list
    units: dict  # axis letter -> NGFF unit
    kind: str
    zarr_format: int | None
    channel_names: tuple[str, ...]
    path: str


# --------------------------------------------------------------------------- open
def open_image(
    source: PathLike | Any,
    level: int = 0,
    *,
    channel: int | str | None = None,
    timepoint: int | None = None,
    axes: str | None = None,
    block_size: int = BLOCK_SIZE,
    max_in_memory_pixels: int = MAX_IN_MEMORY_PIXELS,
) -> LazyImage:
    """Open an OME-Zarr / Zarr image or a TIFF file without reading its pixels.

    Parameters
    ----------
    source : path, URL, zarr.Group or zarr.Array
        A ``.zarr`` folder (an OME-Zarr image, a label image under ``labels/``, a
        bioformats2raw container or a plain array), or a ``.tif`` file.
    level : int
        Multiscale level (0 = full resolution).
    channel : int, str or None
        Channel index or name to segment; ``"rgb"`` reads a 3- or 4-channel axis as
        colour. Needed when the image has several channels (colour TIFFs need none).
    timepoint : int or None
        Time index; needed when the image has several time points.
    axes : str, optional
        Axis letters of the stored array (``t c z y x``, ``s`` = colour samples), for
        plain arrays without metadata or to override it, e.g. ``"tczyx"``.
    block_size : int
        Dask block edge in y and x (rounded to whole storage chunks).
    max_in_memory_pixels : int
        Selected images with at most this many pixels are read into a numpy array;
        0 keeps every image lazy.

    Raises
    ------
    ImageNotFoundError
        When nothing exists at the path.
    ValueError
        For an unsupported file, a zarr group without an image, a level out of range,
        or time / channel axes without a choice.
    """
    src = _open_source(source, axes, block_size)
    if not 0 <= level < len(src.arrays):
        raise ValueError(
            f"{src.path!r} has {len(src.arrays)} level(s) (0..{len(src.arrays) - 1}); "
            f"level {level} does not exist"
        )
    return _select(src, level, channel, timepoint, max_in_memory_pixels)


def _open_source(source: Any, axes: str | None, block_size: int) -> _Source:
    import zarr

    if isinstance(source, zarr.Group | zarr.Array):
        return _zarr_source(source, str(getattr(source, "store_path", source)), axes, block_size)
    text = os.fspath(source)
    is_url = "://" in text
    path = Path(text)
    if not is_url and not path.exists():
        raise ImageNotFoundError(f"no image at {text!r}: check the path")
    if not is_url and path.is_file():
        if path.name in ("zarr.json", ".zattrs", ".zgroup", ".zarray"):
            path, text = path.parent, str(path.parent)
        elif path.suffix.lower() in TIFF_SUFFIXES:
            return _tiff_source(path, axes, block_size)
        else:
            raise ValueError(
                f"{text!r} is neither a TIFF file nor a zarr folder; "
                "give a .tif file or an OME-Zarr (.zarr) folder"
            )
    try:
        node = zarr.open(store=text, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        raise ValueError(
            f"{text!r} is not a zarr store (no zarr.json / .zgroup / .zarray); "
            "give an OME-Zarr folder or a .tif file"
        ) from exc
    return _zarr_source(node, text, axes, block_size)


def _dask_chunks(axes: str, shape, storage, block_size: int) -> tuple[int, ...]:
    out = []
    for a, n, s in zip(axes, shape, storage):
        if a in "yx":
            c = s if s >= block_size else max(1, block_size // s) * s
        elif a == "s":
            c = n
        elif a == "z":
            c = s
        else:
            c = 1
        out.append(max(1, min(int(c), int(n))))
    return tuple(out)


def check_axes(axes: str, ndim: int, path: str) -> str:
    """``axes`` in lower case, checked: ``ndim`` distinct letters from ``tczyxs``."""
    axes = axes.lower()
    if len(axes) != ndim or len(set(axes)) != ndim or not set(axes) <= set("tczyxs"):
        raise ValueError(
            f"axes {axes!r} do not fit {path!r}: give {ndim} distinct letters from "
            "t (time), c (channel), z, y, x, s (colour samples), e.g. "
            f"{'tczyx'[-ndim:]!r}"
        )
    return axes


def guess_axes(shape: tuple[int, ...], path: str) -> str:
    """Axes of a plain array (no metadata), by the same rule as prediction's image kinds."""
    ndim = len(shape)
    if ndim == 2:
        return "yx"
    if ndim == 3:
        return "yxs" if shape[-1] in (3, 4) and shape[0] > 4 else "zyx"
    if ndim == 4 and shape[-1] in (3, 4):
        return "zyxs"
    raise ValueError(
        f"{path!r} holds a {ndim}-D array of shape {shape} without axis metadata; "
        "say what its axes are with axes=, e.g. 'tczyx' or 'czyx'"
    )


# --------------------------------------------------------------------------- zarr
def _zarr_source(node: Any, path: str, axes: str | None, block_size: int) -> _Source:
    import dask.array as da
    import zarr

    if isinstance(node, zarr.Array):
        ax = check_axes(axes, node.ndim, path) if axes else guess_axes(node.shape, path)
        arr = da.from_zarr(node, chunks=_dask_chunks(ax, node.shape, node.chunks, block_size))
        return _Source([arr], ax, [None], [None], {}, "zarr", node.metadata.zarr_format, (), path)
    group, attrs, path = _image_group(node, path)
    fmt = group.metadata.zarr_format
    ms = attrs["multiscales"][0]
    arrays = [group[ds["path"]] for ds in ms["datasets"]]
    names, units = ngff_axes(ms.get("axes"), arrays[0].ndim, path)
    ax = check_axes(axes, arrays[0].ndim, path) if axes else names
    scales, translations = [], []
    for k in range(len(arrays)):
        scale, translate = level_transform(ms, k)
        scales.append(scale)
        translations.append(translate)
    dask_arrays = [
        da.from_zarr(a, chunks=_dask_chunks(ax, a.shape, a.chunks, block_size)) for a in arrays
    ]
    omero = attrs.get("omero", {}) if isinstance(attrs.get("omero"), dict) else {}
    channels = tuple(str(c.get("label", "")) for c in omero.get("channels", []))
    channels = channels if any(channels) else ()
    return _Source(dask_arrays, ax, scales, translations, units, "ome-zarr", fmt, channels, path)


def _image_group(group: Any, path: str) -> tuple[Any, dict, str]:
    attrs = ngff.read_ome_attrs(group)
    if "multiscales" not in attrs and "bioformats2raw.layout" in attrs and "0" in group:
        group, path = group["0"], f"{path}/0"  # the first series of a bioformats2raw container
        attrs = ngff.read_ome_attrs(group)
    if "multiscales" in attrs:
        return group, attrs, path
    if "plate" in attrs or "well" in attrs:
        raise ValueError(
            f"{path!r} is a high-content screening {'plate' if 'plate' in attrs else 'well'}; "
            "open one field of view, e.g. <plate>.zarr/A/1/0"
        )
    if "labels" in attrs:
        names = ", ".join(map(str, attrs["labels"])) or "none yet"
        raise ValueError(
            f"{path!r} is the labels group of an image; open one label image in it ({names})"
        )
    arrays = sorted(group.array_keys())
    hint = (
        f"open one of its arrays, e.g. {path.rstrip('/')}/{arrays[0]}"
        if arrays
        else "it holds no array"
    )
    raise ValueError(
        f"{path!r} is a zarr group without an image (no OME-NGFF 'multiscales' metadata); {hint}"
    )


def ngff_axes(axes_meta: Any, ndim: int, path: str) -> tuple[str, dict]:
    """Axis letters and spatial units (letter -> NGFF unit) from NGFF ``axes`` metadata."""
    if not axes_meta:  # NGFF 0.1 / 0.2: always t, c, z, y, x
        return "tczyx"[-ndim:], {}
    letters, units = [], {}
    for entry in axes_meta:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        name, kind = str(entry.get("name", "")).lower(), entry.get("type")
        letter = {"time": "t", "channel": "c"}.get(kind, name[:1] if len(name) == 1 else name)
        letters.append(letter)
        unit = ngff_unit(entry.get("unit"))
        if kind in (None, "space") and unit and letter in "zyx":
            units[letter] = unit
    if len(letters) != ndim:
        raise ValueError(f"{path!r}: {len(letters)} axes in the metadata for a {ndim}-D array")
    if any(len(a) != 1 for a in letters):
        odd = [a for a in letters if len(a) != 1]
        raise ValueError(
            f"{path!r} has axes {odd} this reader does not know; give the axes as letters "
            "with axes=, e.g. 'czyx'"
        )
    return "".join(letters), units


def level_transform(multiscale: dict, level: int) -> tuple[tuple | None, tuple | None]:
    """Per-axis scale and translation of one level (dataset then multiscale transforms)."""
    ds = multiscale["datasets"][level]
    scale = translate = None
    for transforms in (ds.get("coordinateTransformations"),
                       multiscale.get("coordinateTransformations")):  # fmt: skip
        for t in transforms or []:
            if t.get("type") == "scale" and "scale" in t:
                s = np.asarray(t["scale"], dtype=float)
                scale = s if scale is None else scale * s
                translate = None if translate is None else translate * s
            elif t.get("type") == "translation" and "translation" in t:
                tr = np.asarray(t["translation"], dtype=float)
                translate = tr if translate is None else translate + tr
    return (None if scale is None else tuple(float(v) for v in scale),
            None if translate is None else tuple(float(v) for v in translate))  # fmt: skip


# --------------------------------------------------------------------------- tiff
def _tiff_source(path: Path, axes: str | None, block_size: int) -> _Source:
    try:
        info = tiff_info(path)
    except Exception as exc:  # tifffile raises several kinds for broken files
        raise ValueError(f"could not read {str(path)!r} as a TIFF file ({exc})") from exc
    ax = check_axes(axes, len(info.shapes[0]), str(path)) if axes else info.axes
    arrays, scales = [], []
    for k, shape in enumerate(info.shapes):
        chunks = _dask_chunks(ax, shape, info.storage_chunks[k], block_size)
        arrays.append(tiff_level_array(path, k, info, chunks))
        if info.spacing:
            ratio = {a: info.shapes[0][i] / shape[i] for i, a in enumerate(ax)}
            scales.append(tuple(info.spacing.get(a, 1.0) * ratio[a] for a in ax))
        else:
            scales.append(None)
    return _Source(arrays, ax, scales, [None] * len(arrays), info.units, "tiff", None,
                   info.channel_names, str(path))  # fmt: skip


# --------------------------------------------------------------------------- selection
def _channel_index(channel: int | str, size: int, names: tuple[str, ...], path: str) -> int:
    if isinstance(channel, str) and not channel.lstrip("-").isdigit():
        if channel not in names:
            raise ValueError(
                f"{path!r} has no channel named {channel!r}; its channels are "
                f"{', '.join(names) if names else f'0..{size - 1} (unnamed)'}"
            )
        return names.index(channel)
    index = int(channel)
    if not 0 <= index < size:
        raise ValueError(f"channel {index} does not exist in {path!r}: it has channels 0..{size - 1}")
    return index


def _select(src: _Source, level: int, channel, timepoint, max_pixels: int) -> LazyImage:
    arr, path = src.arrays[level], src.path
    shape = tuple(int(n) for n in arr.shape)
    index: list[int | None] = [None] * len(shape)
    colour = None  # the axis kept as colour samples
    for i, (a, n) in enumerate(zip(src.axes, shape)):
        if a == "t" and n > 1:
            if timepoint is None:
                raise ValueError(
                    f"{path!r} has {n} time points; choose one with timepoint=, 0..{n - 1}"
                )
            if not 0 <= int(timepoint) < n:
                raise ValueError(f"time point {timepoint} does not exist: {path!r} has 0..{n - 1}")
            index[i] = int(timepoint)
        elif a in "cs" and n > 1:
            if channel is None and a == "s" and n in (3, 4):
                colour = i
            elif channel is None:
                names = f" ({', '.join(src.channel_names)})" if src.channel_names else ""
                raise ValueError(
                    f"{path!r} has {n} channels{names}; choose one with channel=N "
                    "or, for a colour image, channel='rgb'"
                )
            elif channel == "rgb":
                if n not in (3, 4):
                    raise ValueError(f"channel='rgb' needs 3 or 4 channels; {path!r} has {n}")
                colour = i
            else:
                index[i] = _channel_index(channel, n, src.channel_names, path)
        elif n == 1:
            index[i] = 0
        elif a not in "zyx":
            raise ValueError(
                f"{path!r} has an axis {a!r} of length {n} that is neither time, channel nor "
                "space; give the axes with axes=, e.g. 'tczyx'"
            )
    kept = [i for i in range(len(shape)) if index[i] is None and i != colour]
    kept_axes = "".join(src.axes[i] for i in kept)
    if kept_axes not in ("yx", "zyx"):
        raise ValueError(
            f"{path!r}: after selecting time and channel the axes are {kept_axes!r} "
            f"(shape {tuple(shape[i] for i in kept)}); expected y, x or z, y, x"
        )

    def pick(a):
        a = a[tuple(slice(None) if j is None else j for j in index)]
        if colour is not None:  # move the colour axis last
            pos = sum(1 for j in range(colour) if index[j] is None)
            a = a.transpose([*[p for p in range(a.ndim) if p != pos], pos])
        return a

    levels = tuple(pick(a) for a in src.arrays)
    data = levels[level]
    if math.prod(shape[i] for i in kept) <= max_pixels:
        data = np.asarray(data.compute())
    scale = _spatial(src.scales[level], kept)
    translate = _spatial(src.translations[level], kept)
    units = {src.units[src.axes[i]] for i in kept if src.axes[i] in src.units}
    return LazyImage(
        data=data, axes=kept_axes + ("c" if colour is not None else ""), scale=scale,
        units=units.pop() if len(units) == 1 else None, translate=translate, levels=levels,
        level=level, path=path, kind=src.kind, zarr_format=src.zarr_format,
        source_axes=src.axes, source_shape=shape, index=tuple(index),
        channel_names=src.channel_names,
    )  # fmt: skip


def _spatial(values, kept) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(values[i]) for i in kept)

