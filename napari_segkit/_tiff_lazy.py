"""TIFF files as lazy dask arrays, and their physical pixel size (OME-TIFF, ImageJ, TIFF tags).

Pixels are read on demand, region by region: contiguous uncompressed data through a
memory map, everything else (tiled, striped, compressed, pyramid levels) through
tifffile's zarr store. The dask graph holds only the file path, so it pickles for the
distributed scheduler; each process opens a file once (cached).

No Qt, no napari imports.
"""

from __future__ import annotations

import functools
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

__all__ = ["TiffInfo", "tiff_info", "tiff_level_array", "ngff_unit"]

# NGFF (UDUNITS-2) names of the length units microscopy files use
_UNIT_NAMES = {
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
    "microns": "micrometer", "micrometer": "micrometer", "micrometre": "micrometer",
    "\\u00b5m": "micrometer", "nm": "nanometer", "nanometer": "nanometer",
    "nanometre": "nanometer", "mm": "millimeter", "millimeter": "millimeter",
    "millimetre": "millimeter", "cm": "centimeter", "centimeter": "centimeter",
    "m": "meter", "meter": "meter", "metre": "meter", "å": "angstrom", "angstrom": "angstrom",
    "pm": "picometer", "picometer": "picometer", "inch": "inch",
}  # fmt: skip
_NO_UNIT = {"", "pixel", "pixels", "px", "none", "dimensionless"}

# tifffile axis letters -> ours (t, c, z, y, x; s = colour samples of one pixel)
_TIFF_AXES = {"T": "t", "C": "c", "Z": "z", "Y": "y", "X": "x", "S": "s"}


def ngff_unit(unit: Any) -> str | None:
    """The OME-NGFF (UDUNITS-2) name of a length unit ("µm" -> "micrometer"); None for pixels."""
    if unit is None:
        return None
    text = str(unit).strip()
    if text.lower() in _NO_UNIT:
        return None
    return _UNIT_NAMES.get(text, _UNIT_NAMES.get(text.lower(), text))


@dataclass(frozen=True)
class TiffInfo:
    """What :func:`tiff_info` finds in a TIFF file (first series)."""

    axes: str  # ours, one letter per dimension of ``shapes[0]``
    shapes: tuple[tuple[int, ...], ...]  # one per pyramid level
    dtype: np.dtype
    storage_chunks: tuple[tuple[int, ...], ...]  # per level
    spacing: dict[str, float]  # physical pixel size of level 0 per axis letter
    units: dict[str, str]
    channel_names: tuple[str, ...]


def _axes_letters(tiff_axes: str) -> str:
    """tifffile's axes -> ours; an unnamed stack axis (I, Q) is z when there is no Z."""
    letters = [_TIFF_AXES.get(a, a.lower()) for a in tiff_axes]
    stack = [i for i, a in enumerate(tiff_axes) if a in "IQ"]
    if len(stack) == 1 and "Z" not in tiff_axes:
        letters[stack[0]] = "z"
    return "".join(letters)


def tiff_info(path: str | os.PathLike) -> TiffInfo:
    """Axes, level shapes, dtype, storage chunks and physical pixel size of a TIFF file."""
    path = os.fspath(path)
    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        axes = _axes_letters(series.axes)
        shapes = tuple(tuple(int(n) for n in level.shape) for level in series.levels)
        dtype = np.dtype(series.dtype)
        spacing, units, names = _physical_size(tf, axes)
    chunks = tuple(_storage_chunks(path, level) for level in range(len(shapes)))
    return TiffInfo(axes, shapes, dtype, chunks, spacing, units, names)


def _storage_chunks(path: str, level: int) -> tuple[int, ...]:
    arr = _open_level(path, os.stat(path).st_mtime_ns, level)
    if isinstance(arr, np.ndarray):  # memory map: any chunking is cheap
        return (1,) * arr.ndim
    return tuple(int(c) for c in arr.chunks)


# --------------------------------------------------------------------------- physical size
def _physical_size(tf: tifffile.TiffFile, axes: str):
    spacing: dict[str, float] = {}
    units: dict[str, str] = {}
    names: tuple[str, ...] = ()
    if tf.is_ome and tf.ome_metadata:
        spacing, units, names = _ome_physical_size(tf.ome_metadata)
    elif tf.is_imagej and tf.imagej_metadata:
        spacing, units = _imagej_physical_size(tf)
    else:
        spacing, units = _tag_physical_size(tf.pages[0])
    keep = {a for a in axes if a in "zyx"}
    spacing = {a: v for a, v in spacing.items() if a in keep and math.isfinite(v) and v > 0}
    units = {a: u for a, u in units.items() if a in spacing}
    return spacing, units, names


def _ome_physical_size(xml: str):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}, {}, ()
    ns = re.match(r"\{.*\}", root.tag)
    prefix = ns.group(0) if ns else ""
    pixels = root.find(f"{prefix}Image/{prefix}Pixels")
    if pixels is None:
        return {}, {}, ()
    spacing, units = {}, {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if value is None:
            continue
        spacing[axis.lower()] = float(value)
        unit = ngff_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))  # OME default: µm
        if unit:
            units[axis.lower()] = unit
    names = tuple(ch.get("Name", "") for ch in pixels.findall(f"{prefix}Channel"))
    return spacing, units, names if any(names) else ()


def _imagej_physical_size(tf: tifffile.TiffFile):
    meta = tf.imagej_metadata or {}
    unit = ngff_unit(meta.get("unit"))
    if unit is None:  # uncalibrated ImageJ image: its resolution is in pixels
        return {}, {}
    spacing = _resolution_spacing(tf.pages[0])
    if "spacing" in meta:
        spacing["z"] = float(meta["spacing"])
    return spacing, dict.fromkeys(spacing, unit)


def _resolution_spacing(page) -> dict[str, float]:
    try:
        xres, yres = page.resolution
    except (TypeError, ValueError):
        return {}
    out = {}
    if yres and yres > 0:
        out["y"] = 1.0 / float(yres)
    if xres and xres > 0:
        out["x"] = 1.0 / float(xres)
    return out


def _tag_physical_size(page):
    """Plain TIFF: only a centimetre resolution unit is a calibration (inch means dpi)."""
    if int(getattr(page, "resolutionunit", 1)) != 3:  # RESUNIT.CENTIMETER
        return {}, {}
    spacing = {a: v * 1e4 for a, v in _resolution_spacing(page).items()}  # cm -> um
    return spacing, dict.fromkeys(spacing, "micrometer")


# --------------------------------------------------------------------------- lazy pixels
@functools.lru_cache(maxsize=16)
def _open_level(path: str, mtime_ns: int, level: int) -> Any:
    """A sliceable array of one pyramid level (memory map or zarr array); cached per process."""
    import zarr

    tf = tifffile.TiffFile(path)  # stays open while cached: the zarr store reads from it
    series = tf.series[0]
    if level == 0 and series.dataoffset is not None:
        tf.close()
        return tifffile.memmap(path, series=0, mode="r")
    return zarr.open_array(series.aszarr(level=level), mode="r")


class TiffLevelReader:
    """Picklable ``shape`` / ``dtype`` / ``__getitem__`` view of one TIFF level for dask."""

    def __init__(self, path: str, level: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.level, self.shape, self.dtype = path, level, shape, np.dtype(dtype)
        self.mtime_ns = os.stat(path).st_mtime_ns
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(_open_level(self.path, self.mtime_ns, self.level)[key])


def tiff_level_array(path: str | os.PathLike, level: int, info: TiffInfo, chunks: tuple) -> Any:
    """One pyramid level of a TIFF file as a dask array with the given chunks."""
    import dask.array as da
    from dask.base import tokenize

    path = os.fspath(path)
    reader = TiffLevelReader(path, level, info.shapes[level], info.dtype)
    name = "tiff-" + tokenize(path, reader.mtime_ns, level, chunks)
    meta = np.empty((0,) * reader.ndim, dtype=info.dtype)
    return da.from_array(reader, chunks=chunks, name=name, lock=False, asarray=False, meta=meta)
