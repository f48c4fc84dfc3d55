"""Per-object measurements (size, position, intensity, match to ground truth) as tables.

Tables are pandas DataFrames with a ``label`` column first, ready for a napari Labels
layer's ``features`` and for CSV export.

Column names
------------
``label``
    Object id in the label image.
``centroid-0``, ``centroid-1`` [, ``centroid-2``]
    Centroid in data pixels (row, col) [(plane, row, col)], as napari data coordinates.
``centroid_y_<u>``, ``centroid_x_<u>`` [, ``centroid_z_<u>``]
    Centroid in physical (world) units: ``pixel * scale + translate``. Only present
    when ``scale`` or ``units`` is given. ``<u>`` is the unit name (``um`` for
    "um" / "µm" / "micron" / "micrometer"), or ``scaled`` when no unit was given.
``area_px`` (2-D) / ``volume_vox`` (3-D)
    Size in pixels / voxels.
``area_<u>2`` / ``volume_<u>3``
    Size in physical units (e.g. ``area_um2``), when ``scale`` or ``units`` is given.
``equivalent_diameter_px`` [, ``equivalent_diameter_<u>``]
    Diameter of the disk (sphere) with the same area (volume).
``mean_intensity``, ``integrated_intensity``
    Mean and sum of the image over the object (RGB: of the mean of the channels).
    Only present when ``image`` is given.
``best_iou``, ``matched_gt``, ``status``
    Only with ``gt``: best IoU with any ground-truth object, id of the ground-truth
    object matched one-to-one at ``iou_threshold`` (0 = none), and ``"matched"`` or
    ``"false positive"``. :func:`missed_objects` lists ground-truth objects
    with no match (status ``"missed"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

from ._common import check_scale
from .metrics import (
    InstanceMatch,
    as_labels,
    compact_labels,
    evaluate_instances,
    match_instances,
)

_UNIT_ALIASES = {
    "um": "um",
    "µm": "um",
    "μm": "um",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometre": "um",
    "micrometers": "um",
    "micrometres": "um",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "nanometers": "nm",
    "mm": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
    "millimeters": "mm",
    "m": "m",
    "meter": "m",
    "metre": "m",
}
_NO_UNIT = {"", "pixel", "pixels", "px", "none"}


def unit_name(units) -> str | None:
    """Short unit name for column names ("um" for "µm" / "micron" / ...), or None.

    ``units`` may be a string or one string per axis (napari ``layer.units``); all axes
    must then share one unit. "pixel" (napari's default) means no unit.
    """
    if units is None:
        return None
    if not isinstance(units, str):
        names = {str(u).strip() for u in units}
        if len(names) > 1:
            raise ValueError(
                f"axes have different units {sorted(names)}; give one unit for all axes"
            )
        units = names.pop() if names else ""
    key = str(units).strip()
    low = key.lower()
    if low in _NO_UNIT:
        return None
    name = _UNIT_ALIASES.get(key, _UNIT_ALIASES.get(low, low))
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def axis_names(ndim: int) -> tuple[str, ...]:
    """Names of the spatial axes in column names: ``z, y, x`` (last ``ndim``)."""
    return ("z", "y", "x")[-ndim:] if ndim <= 3 else tuple(f"axis{i}" for i in range(ndim))


def _prepare_image(image, shape: tuple[int, ...]) -> np.ndarray:
    img = np.asarray(image)
    if img.shape == shape:
        return img.astype(np.float64, copy=False)
    if img.ndim == len(shape) + 1 and img.shape[:-1] == shape:
        return img[..., :3].astype(np.float64).mean(axis=-1)  # RGB(A): mean of colours
    raise ValueError(
        f"image shape {img.shape} does not match labels shape {shape}; "
        "measure the labels of this image (RGB images: (H, W, 3))"
    )


def column_names(ndim: int, physical: str | None, with_image: bool, with_gt: bool) -> list[str]:
    """The columns of an object table, in order (shared with block-wise tables)."""
    size = "area" if ndim == 2 else "volume"
    px = "px" if ndim == 2 else "vox"
    cols = ["label"] + [f"centroid-{i}" for i in range(ndim)]
    if physical is not None:
        cols += [f"centroid_{a}_{physical}" for a in axis_names(ndim)]
    cols.append(f"{size}_{px}")
    if physical is not None:
        power = "" if physical == "scaled" else str(ndim)
        cols.append(f"{size}_{physical}{power}")
    cols.append("equivalent_diameter_px")
    if physical is not None:
        cols.append(f"equivalent_diameter_{physical}")
    if with_image:
        cols += ["mean_intensity", "integrated_intensity"]
    if with_gt:
        cols += ["best_iou", "matched_gt", "status"]
    return cols


def equivalent_diameter(size: np.ndarray, ndim: int) -> np.ndarray:
    """Diameter of the disc (2-D) or ball (3-D) of the same area / volume."""
    size = np.asarray(size, dtype=np.float64)
    if ndim == 2:
        return 2.0 * np.sqrt(size / math.pi)
    return np.cbrt(6.0 * size / math.pi)


def check_translate(translate: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Last ``ndim`` entries of a napari ``translate`` (any finite values)."""
    values = tuple(float(t) for t in np.ravel(np.asarray(translate, dtype=float)))
    if len(values) < ndim or not all(math.isfinite(v) for v in values):
        raise ValueError(f"translate {values} must hold {ndim} finite offsets, one per axis")
    return values[-ndim:]


def geometry_columns(label_ids: np.ndarray, centroids: np.ndarray, size_px: np.ndarray,
                     spacing: np.ndarray, offset: np.ndarray, physical: str | None) -> dict:
    """The label, centroid, size and equivalent-diameter columns of an object table, from
    each object's id, centroid ``(N, ndim)`` and size in pixels / voxels (shared by the
    in-memory and the block-wise tables)."""
    ndim = centroids.shape[1]
    data: dict[str, np.ndarray] = {"label": np.asarray(label_ids, dtype=np.int64)}
    for i in range(ndim):
        data[f"centroid-{i}"] = centroids[:, i]
    if physical is not None:
        for i, a in enumerate(axis_names(ndim)):
            data[f"centroid_{a}_{physical}"] = centroids[:, i] * spacing[i] + offset[i]
    size_name = "area" if ndim == 2 else "volume"
    data[f"{size_name}_{'px' if ndim == 2 else 'vox'}"] = size_px.astype(np.int64)
    size_phys = size_px * float(np.prod(spacing))
    if physical is not None:
        data[f"{size_name}_{physical}{'' if physical == 'scaled' else ndim}"] = size_phys
    data["equivalent_diameter_px"] = equivalent_diameter(size_px, ndim)
    if physical is not None:
        data[f"equivalent_diameter_{physical}"] = equivalent_diameter(size_phys, ndim)
    return data


def object_table(
    labels,
    image=None,
    *,
    scale: Sequence[float] | None = None,
    units=None,
    translate: Sequence[float] | None = None,
    gt=None,
    iou_threshold: float = 0.5,
    match: InstanceMatch | None = None,
) -> pd.DataFrame:
    """One row per object of ``labels``: position, size, intensity and match status.

    Parameters
    ----------
    labels : array of int (H, W) or (Z, Y, X)
        Instance labels, 0 = background.
    image : array, optional
        Intensity image of the same shape, or (H, W, 3) RGB (the mean of the colours
        is measured).
    scale : sequence of float, optional
        Pixel spacing per axis (napari ``layer.scale``).
    units : str or sequence of str, optional
        Unit of ``scale`` (e.g. "um"); names the physical columns.
    translate : sequence of float, optional
        Offset added to physical centroids (napari ``layer.translate``).
    gt : array of int, optional
        Ground-truth instance labels: adds ``best_iou``, ``matched_gt``, ``status``.
    iou_threshold : float
        IoU a pair needs to count as matched.
    match : InstanceMatch, optional
        A precomputed ``match_instances(gt, labels, iou_threshold)`` to reuse.

    Returns
    -------
    pandas.DataFrame
        Columns as in the module docstring; empty (with those columns) when there are
        no objects. Rows sorted by label.
    """
    labels = as_labels(labels, "labels")
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2-D or 3-D, got shape {labels.shape}")
    ndim = labels.ndim
    physical = None
    if scale is not None or units is not None:
        physical = unit_name(units) or "scaled"
    spacing = np.asarray(check_scale(scale, ndim))
    offset = np.zeros(ndim) if translate is None else np.asarray(check_translate(translate, ndim))
    img = None if image is None else _prepare_image(image, labels.shape)
    if gt is not None and match is None:
        match = match_instances(gt, labels, iou_threshold)
    cols = column_names(ndim, physical, img is not None, match is not None)

    props = ["label", "centroid", "area"] + (["intensity_mean"] if img is not None else [])
    table = regionprops_table(labels, intensity_image=img, properties=props)
    size_px = np.asarray(table["area"], dtype=np.float64)
    centroids = np.stack([np.asarray(table[f"centroid-{i}"], dtype=np.float64)
                          for i in range(ndim)], axis=1)  # fmt: skip
    data = geometry_columns(np.asarray(table["label"], dtype=np.int64), centroids, size_px,
                            spacing, offset, physical)
    if img is not None:
        mean = np.asarray(table["intensity_mean"], dtype=np.float64)
        data["mean_intensity"] = mean
        data["integrated_intensity"] = mean * size_px
    if match is not None:
        to_gt = {p: g for g, p, _ in match.pairs}
        ids = data["label"]
        data["best_iou"] = np.array([match.pred_best_iou.get(int(i), 0.0) for i in ids], float)
        data["matched_gt"] = np.array([to_gt.get(int(i), 0) for i in ids], dtype=np.int64)
        data["status"] = np.array(
            ["matched" if int(i) in to_gt else "false positive" for i in ids], dtype=object
        )
    return pd.DataFrame(data, columns=cols)


def missed_objects(
    gt,
    pred,
    image=None,
    *,
    scale: Sequence[float] | None = None,
    units=None,
    translate: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
    match: InstanceMatch | None = None,
) -> pd.DataFrame:
    """Ground-truth objects that no predicted object matched (false negatives).

    Same columns as ``object_table(pred, ..., gt=gt)``; ``label`` is the ground-truth
    id, ``best_iou`` its best IoU with any prediction, ``matched_gt`` 0 and
    ``status`` ``"missed"``.
    """
    gt = as_labels(gt, "ground truth")
    if match is None:
        match = match_instances(gt, pred, iou_threshold)
    missed = np.asarray(match.missed_gt, dtype=np.int64)
    keep = np.isin(gt, missed)
    table = object_table(
        np.where(keep, gt, 0), image, scale=scale, units=units, translate=translate
    )
    table["best_iou"] = np.array(
        [match.gt_best_iou.get(int(i), 0.0) for i in table["label"]], dtype=float
    )
    table["matched_gt"] = np.zeros(len(table), dtype=np.int64)
    table["status"] = np.array(["missed"] * len(table), dtype=object)
    return table


def summary_table(
    labels,
    image=None,
    *,
    scale: Sequence[float] | None = None,
    units=None,
    gt=None,
    iou_threshold: float = 0.5,
) -> pd.DataFrame:
    """One-row summary: object count, size statistics and, with ``gt``, the scores.

    Columns: ``n_objects``, ``total_<size>``, ``mean_<size>``, ``median_<size>`` for
    the pixel size column and (when scaled) the physical size column, ``mean_intensity``
    (mean over objects) with an image, and the keys of
    :func:`napari_segkit.metrics.evaluate_instances` with ``gt``.
    """
    table = object_table(labels, image, scale=scale, units=units)
    ndim = np.asarray(labels).ndim
    size_cols = [c for c in table.columns if c.startswith("area_" if ndim == 2 else "volume_")]
    row: dict[str, object] = {"n_objects": len(table)}
    for c in size_cols:
        values = table[c].to_numpy(dtype=float)
        row[f"total_{c}"] = float(values.sum())
        row[f"mean_{c}"] = float(values.mean()) if len(values) else math.nan
        row[f"median_{c}"] = float(np.median(values)) if len(values) else math.nan
    if "mean_intensity" in table:
        row["mean_intensity"] = float(table["mean_intensity"].mean()) if len(table) else math.nan
    if gt is not None:
        row.update(evaluate_instances(gt, labels, iou_threshold))
    return pd.DataFrame([row])


def count_by_class(
    instances, semantic, class_names: Sequence[str] | dict | None = None
) -> pd.DataFrame:
    """Count objects per class; each object takes the most frequent class under it.

    Parameters
    ----------
    instances : array of int
        Instance labels.
    semantic : array of int, same shape
        Class per pixel.
    class_names : sequence or dict, optional
        Name of each class id.

    Returns
    -------
    DataFrame with columns ``class_id``, ``class_name``, ``count`` (classes with no
    object are left out, except those named in ``class_names``).
    """
    inst = as_labels(instances, "instances")
    sem = as_labels(semantic, "semantic labels")
    if inst.shape != sem.shape:
        raise ValueError(f"instance shape {inst.shape} and semantic shape {sem.shape} differ")
    ids, idx = compact_labels(inst)
    names = (
        dict(enumerate(class_names))
        if isinstance(class_names, Sequence)
        else (dict(class_names) if class_names else {})
    )
    counts: dict[int, int] = {int(k): 0 for k in names}
    if ids.size:
        k = int(sem.max()) + 1
        fg = idx > 0
        joint = np.bincount(
            (idx[fg] - 1) * k + sem.ravel()[fg].astype(np.int64), minlength=ids.size * k
        ).reshape(ids.size, k)
        for c in np.argmax(joint, axis=1):
            counts[int(c)] = counts.get(int(c), 0) + 1
    rows = [
        {"class_id": c, "class_name": str(names.get(c, c)), "count": n}
        for c, n in sorted(counts.items())
    ]
    return pd.DataFrame(rows, columns=["class_id", "class_name", "count"])
