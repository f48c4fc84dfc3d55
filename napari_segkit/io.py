"""Reading and writing images, label images and napari's points / shapes CSV files.

The CSV formats are napari's own (``File > Save Selected Layers`` on a Points or Shapes
layer), so files saved from napari load here as they are and files written here open in
napari:

* points: ``index,axis-0,axis-1[,axis-2...],<feature columns>``
* shapes: ``index,shape-type,vertex-index,axis-0,axis-1[,axis-2...]``

No Qt, no napari imports.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from ._common import as_label_dtype
from .memory_limits import READ_BYTES_PER_PIXEL, format_bytes, memory_budget, tiff_array_info

__all__ = [
    "IMAGE_SUFFIXES",
    "check_image_fits_memory",
    "image_files",
    "image_stem",
    "is_one_image",
    "prediction_inputs",
    "read_image",
    "squeeze_image",
    "tiff_axes",
    "read_labels",
    "write_labels",
    "read_points_csv",
    "write_points_csv",
    "read_shapes_csv",
    "write_shapes_csv",
    "SHAPE_TYPES",
]

#: Shape types napari's Shapes layer knows.
SHAPE_TYPES = ("rectangle", "ellipse", "polygon", "path", "line")

PathLike = str | os.PathLike

#: File endings of the images a folder is read for.
IMAGE_SUFFIXES = (".tif", ".tiff")


# --------------------------------------------------------------------------- TIFF
def read_image(path: PathLike) -> np.ndarray:
    """Read a TIFF image; singleton dimensions are dropped.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is not a readable TIFF.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {str(path)!r}: check the path")
    check_image_fits_memory(path)
    try:
        data = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several kinds for broken files
        raise ValueError(
            f"could not read {str(path)!r} as a TIFF image ({exc}); "
            "save the image as .tif (e.g. from napari or Fiji) and try again"
        ) from exc
    data = np.asarray(data)
    if data.size == 0:
        raise ValueError(
            f"{str(path)!r} holds no image data: the file is damaged, "
            "truncated or empty; save the image again as .tif"
        )
    return squeeze_image(data)


def squeeze_image(data: np.ndarray) -> np.ndarray:
    """Drop singleton axes, but keep two: a 1 x N image stays (1, N), not (N,)."""
    if 1 not in data.shape:
        return data
    keep = [i for i, s in enumerate(data.shape) if s != 1]
    while len(keep) < min(2, data.ndim):  # add back the last singleton axes
        keep = sorted({*keep, max(i for i in range(data.ndim) if i not in keep)})
    return data.reshape([data.shape[i] for i in keep])


def tiff_axes(path: PathLike, shape: tuple[int, ...]) -> str | None:
    """The axis names tifffile gives the first series of a TIFF (``S`` samples, ``C``
    channels, ``Z`` planes, ``Y``, ``X``, ``Q`` unknown...), for the axes :func:`read_image`
    keeps (singletons dropped as there); None when they cannot be told."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, full = series.axes, tuple(series.shape)
    except Exception:  # noqa: BLE001 - no axis names is an answer
        return None
    if len(axes) != len(full):
        return None
    keep = [i for i, s in enumerate(full) if s != 1]
    if len(keep) < 2:
        return None  # singletons were kept (a 1 x N image): plain rows and columns
    named = "".join(axes[i] for i in keep)
    return named if tuple(full[i] for i in keep) == tuple(shape) else None


def check_image_fits_memory(path: PathLike, bytes_per_pixel: int = READ_BYTES_PER_PIXEL,
                            budget: int | None = None) -> None:
    """ValueError, before any pixel is read, when the TIFF at ``path`` plus
    ``bytes_per_pixel`` of work per pixel would not fit the memory budget
    (:func:`napari_segkit.memory_limits.memory_budget` unless ``budget`` is given)."""
    shape, dtype = tiff_array_info(path)
    pixels = int(np.prod(shape, dtype=np.float64))
    need = pixels * (dtype.itemsize + bytes_per_pixel)
    budget = memory_budget() if budget is None else int(budget)
    if need > budget:
        size = " x ".join(str(n) for n in shape)
        raise ValueError(
            f"{str(path)!r} is a {size} {dtype} image: reading and working on it needs about "
            f"{format_bytes(need)}, more than the {format_bytes(budget)} this machine can "
            "give it (half of the free memory). `napari-segkit predict` segments large "
            "TIFFs block by block (choose the block work with --tile-size); for other "
            "steps save it as OME-Zarr (open it with napari_segkit.io_zarr.open_image) "
            "or crop it into smaller images"
        )


def image_files(path: PathLike) -> list[Path]:
    """The ``.tif`` images of a folder, sorted, or ``[path]`` when it is one .tif file;
    ValueError when there is none."""
    folder = Path(path)
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return [folder]
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of .tif images or a .tif image"
                         + ("" if folder.exists() else " (it does not exist)"))
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no .tif images in {folder}")
    return files


def is_one_image(path: PathLike) -> bool:
    """Whether ``path`` names one image (a file, or a ``.zarr`` image, itself a folder)
    rather than a folder of them."""
    path = Path(path)
    return path.suffix.lower() == ".zarr" or path.is_file()


def prediction_inputs(path: PathLike) -> list[Path]:
    """What ``napari-segkit predict --images`` names: one image (a ``.tif`` file or a
    ``.zarr`` folder), or a folder's ``.tif`` files and ``.zarr`` folders, sorted."""
    path = Path(path)
    if is_one_image(path):
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder of images, a .tif file or a .zarr image"
                         + ("" if path.exists() else " (it does not exist)"))
    found = sorted(p for p in path.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES
                   or (p.suffix.lower() == ".zarr" and p.is_dir()))
    if not found:
        raise ValueError(f"no .tif images or .zarr folders in {path}")
    return found


def image_stem(path: PathLike) -> str:
    """The name outputs are named after: ``a.tif`` -> ``a``, ``b.ome.zarr`` -> ``b``."""
    stem = Path(str(path).rstrip("/")).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def read_labels(path: PathLike) -> np.ndarray:
    """Read an instance label image (TIFF) as uint16 / uint32.

    Raises
    ------
    ValueError
        When the file holds non-integer or negative values.
    """
    data = read_image(path)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise ValueError(
                f"{str(path)!r} holds non-integer values, so it is not a label image; "
                "label images hold 0 for background and 1..N for objects"
            )
        data = data.astype(np.int64)
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.kind not in "iu":
        raise ValueError(f"{str(path)!r} has data type {data.dtype}, not an integer label image")
    return as_label_dtype(data)


def write_labels(path: PathLike, labels: np.ndarray) -> Path:
    """Write an instance label image as a zlib-compressed TIFF (uint16 when it fits, else uint32).

    Returns the path written.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(
                f"labels have data type {labels.dtype}; give an integer array "
                "(0 = background, 1..N = objects)"
            )
    labels = as_label_dtype(labels)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{str(path)!r}: label images are written as TIFF; use a .tif file name")
    tifffile.imwrite(path, labels, compression="zlib")
    return path


# --------------------------------------------------------------------------- CSV helpers
def _read_header(path: PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file {str(path)!r}: check the path")
    try:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not a text CSV file; save the layer as .csv") from exc
    if not header:
        raise ValueError(
            f"{str(path)!r} is empty; save a Points or Shapes layer from napari as .csv"
        )
    return [h.strip() for h in header]


def _csv_kind(header: Sequence[str]) -> str | None:
    """'shapes', 'points' or None, with napari's own rule."""
    names = set(header)
    if {"index", "shape-type", "vertex-index", "axis-0", "axis-1"} <= names:
        return "shapes"
    if {"axis-0", "axis-1"} <= names:
        return "points"
    return None


def _axis_columns(header: Sequence[str]) -> list[str]:
    axes = [h for h in header if h.startswith("axis-")]
    return sorted(
        axes, key=lambda h: int(h.split("-", 1)[1]) if h.split("-", 1)[1].isdigit() else 0
    )


def _read_table(path: PathLike) -> tuple[pd.DataFrame, list[str]]:
    """A napari CSV as text columns (names stripped), and its axis columns in order."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    table.columns = [c.strip() for c in table.columns]
    return table, _axis_columns(table.columns)


def _to_str_column(values: np.ndarray) -> list[str]:
    return ["" if v is None else str(v) for v in values]


# --------------------------------------------------------------------------- points
def read_points_csv(path: PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    """Read a napari points CSV.

    Returns
    -------
    coords : (N, D) float array
        Point coordinates in data (pixel) coordinates, axis order as in the file.
    features : pandas.DataFrame
        One row per point, one column per feature column of the file (e.g. ``class``,
        ``object_id``); integer-looking columns become int, numeric ones float,
        everything else stays text.

    Raises
    ------
    ValueError
        When the file is not a points CSV (e.g. a shapes CSV), or coordinates are not numbers.
    """
    header = _read_header(path)
    kind = _csv_kind(header)
    if kind == "shapes":
        raise ValueError(
            f"{str(path)!r} is a napari shapes CSV (it has shape-type / vertex-index columns), "
            "not a points CSV; load it with read_shapes_csv or as a Shapes layer"
        )
    if kind is None:
        raise ValueError(
            f"{str(path)!r} is not a napari points CSV: its columns {header} lack 'axis-0' and "
            "'axis-1'; save the Points layer from napari (File > Save Selected Layers, .csv)"
        )
    table, axes = _read_table(path)
    try:
        coords = table[axes].to_numpy(dtype=float) if len(table) else np.zeros((0, len(axes)))
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r}: coordinate columns {axes} must hold numbers ({exc})"
        ) from exc
    coords = coords.reshape(len(table), len(axes))
    feature_names = [c for c in table.columns if not c.startswith("axis-")]
    if feature_names and feature_names[0] == "index" and table.columns[0] == "index":
        feature_names = feature_names[1:]
    features = pd.DataFrame({name: _parse_column(table[name]) for name in feature_names})
    features.index = pd.RangeIndex(len(table))
    return coords, features


def _parse_column(values: pd.Series) -> pd.Series:
    """Like napari's reader: int if possible, else float, else text."""
    for dtype in (int, float):
        try:
            return values.astype(dtype)
        except (ValueError, TypeError):
            continue
    # napari writes booleans as 'True' / 'False'
    if len(values) and set(values.unique()) <= {"True", "False"}:
        return values == "True"
    return values.astype(object)


def write_points_csv(
    path: PathLike, coords: np.ndarray, features: pd.DataFrame | dict | None = None
) -> Path:
    """Write points as napari's points CSV (``index,axis-0,...,<features>``).

    Returns the path written.
    """
    path = Path(path)
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(
            f"coords must be an (N, D) array with D >= 2 (row, col[, ...]); got shape {coords.shape}"
        )
    if features is None:
        features = pd.DataFrame(index=range(len(coords)))
    features = pd.DataFrame(features)
    if len(features) != len(coords):
        raise ValueError(
            f"features have {len(features)} rows but there are {len(coords)} points; give one row per point"
        )
    bad = [c for c in features.columns if str(c) == "index" or str(c).startswith("axis-")]
    if bad:
        raise ValueError(f"feature names {bad} clash with napari's coordinate columns; rename them")
    header = ["index", *[f"axis-{i}" for i in range(coords.shape[1])], *map(str, features.columns)]
    columns = [_to_str_column(np.asarray(features[c], dtype=object)) for c in features.columns]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        for i, row in enumerate(coords):
            writer.writerow([i, *(repr(float(v)) for v in row), *(col[i] for col in columns)])
    return path


# --------------------------------------------------------------------------- shapes
def read_shapes_csv(path: PathLike) -> list[tuple[str, np.ndarray]]:
    """Read a napari shapes CSV into ``[(shape_type, vertices (N, D)), ...]``.

    Shapes keep the order of their ``index``; vertices the order of ``vertex-index``.

    Raises
    ------
    ValueError
        When the file is not a shapes CSV (e.g. a points CSV) or is malformed.
    """
    header = _read_header(path)
    kind = _csv_kind(header)
    if kind != "shapes":
        what = (
            "a napari points CSV"
            if kind == "points"
            else f"not a napari shapes CSV (columns {header})"
        )
        raise ValueError(
            f"{str(path)!r} is {what}; a shapes CSV has the columns "
            "index,shape-type,vertex-index,axis-0,axis-1 (save a Shapes layer from napari as .csv)"
        )
    table, axes = _read_table(path)
    try:
        index = table["index"].astype(int).to_numpy()
        vertex_index = table["vertex-index"].astype(int).to_numpy()
        coords = table[axes].to_numpy(dtype=float).reshape(len(table), len(axes))
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r}: index, vertex-index and axis columns must hold numbers ({exc})"
        ) from exc
    types = table["shape-type"].str.strip().str.lower().to_numpy()
    shapes: list[tuple[str, np.ndarray]] = []
    # napari groups consecutive rows with the same index into one shape
    if len(table) == 0:
        return shapes
    starts = np.concatenate([[0], np.nonzero(np.diff(index))[0] + 1, [len(table)]])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        shape_type = str(types[a])
        if shape_type not in SHAPE_TYPES:
            raise ValueError(
                f"{str(path)!r}: shape {index[a]} has unknown shape-type {shape_type!r}; "
                f"expected one of {', '.join(SHAPE_TYPES)}"
            )
        order = np.argsort(vertex_index[a:b], kind="stable")
        shapes.append((shape_type, coords[a:b][order]))
    return shapes


def write_shapes_csv(path: PathLike, shapes: Sequence) -> Path:
    """Write shapes as napari's shapes CSV.

    ``shapes`` is a list of ``(shape_type, vertices)`` pairs, or of vertex arrays (then
    each is a ``polygon``). Returns the path written.
    """
    path = Path(path)
    items: list[tuple[str, np.ndarray]] = []
    for i, shape in enumerate(shapes):
        if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[0], str):
            shape_type, verts = shape
        else:
            shape_type, verts = "polygon", shape
        shape_type = shape_type.lower()
        if shape_type not in SHAPE_TYPES:
            raise ValueError(
                f"shape {i}: unknown shape type {shape_type!r}; use one of {SHAPE_TYPES}"
            )
        verts = np.asarray(verts, dtype=float)
        if verts.ndim != 2 or verts.shape[1] < 2 or len(verts) == 0:
            raise ValueError(
                f"shape {i}: vertices must be an (N, D) array with D >= 2; got shape {verts.shape}"
            )
        items.append((shape_type, verts))
    ndim = max((v.shape[1] for _, v in items), default=2)
    header = ["index", "shape-type", "vertex-index", *[f"axis-{i}" for i in range(ndim)]]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        for i, (shape_type, verts) in enumerate(items):
            if verts.shape[1] < ndim:  # pad lower-dimensional shapes with leading zeros
                verts = np.concatenate(
                    [np.zeros((len(verts), ndim - verts.shape[1])), verts], axis=1
                )
            for j, v in enumerate(verts):
                writer.writerow([i, shape_type, j, *(repr(float(x)) for x in v)])
    return path
