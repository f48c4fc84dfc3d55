"""Clicks in a 3-D stack (one per nucleus, plus background clicks) -> 3-D instance masks or
sparse 3-D training labels.

The 3-D counterpart of :mod:`.clicks`: the same seeded watershed, in physical units. The
stack's voxel size (``scale``, (z, y, x), e.g. napari's ``layer.scale``) is required: the
distances to the clicks, the object radius, the smoothing and the neighbourhoods are all
measured in it, so an anisotropic stack (z steps larger than pixels) gets round nuclei,
not flattened or stretched ones. Clicks are (z, y, x) in data coordinates and must lie on a
plane (as napari places them on the current slice).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, segmentation

from .._common import (
    PERCENTILES,
    SPARSE_BACKGROUND,
    SPARSE_OBJECT,
    as_label_dtype,
    background_mask,
    image_kind,
)
from .common import click_threshold, keep_clicked_part, points_inside, warn_outside

__all__ = [
    "Z_TOLERANCE",
    "clicks_to_labels_3d",
    "clicks_to_sparse_labels_3d",
    "estimate_object_radius_3d",
    "is_stack",
]

#: A click's z may be this far (in planes) from a plane and still count as on it.
Z_TOLERANCE = 0.1


# ------------------------------------------------------------------------- input
def is_stack(image) -> bool:
    """Whether ``image`` is a grayscale (z, y, x) stack (what this module converts)."""
    return image_kind(np.shape(image)) == "stack"


def check_voxel_size(scale: Sequence[float] | None) -> np.ndarray:
    """The voxel size (z, y, x) as a float array; ValueError when missing or malformed."""
    if scale is None:
        raise ValueError(
            "clicks in a 3-D stack need the voxel size: pass scale=(z, y, x) in physical "
            "units (the image layer's scale, e.g. (2.0, 0.5, 0.5) um); (1, 1, 1) if the "
            "voxels are cubes"
        )
    values = np.ravel(np.asarray(scale, dtype=float))
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(
            f"scale must give 3 positive voxel sizes (z, y, x) for a stack; got {tuple(values)}"
        )
    return values


def _check_points(points, classes, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(object clicks, background clicks) as int (z, y, x) voxels inside the stack."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or (len(points) and points.shape[1] != 3):
        got = points.shape[1] if points.ndim == 2 else points.shape
        raise ValueError(
            f"clicks on a 3-D stack {shape} must be (N, 3) points (z, y, x); got {got} "
            "coordinates per point. Place the clicks in a Points layer with 3 dimensions (add "
            "it while the stack is shown, so each click keeps its slice), or convert one slice "
            "at a time (that slice and its 2-D clicks)"
        )
    if len(points) and not np.all(np.isfinite(points)):
        raise ValueError("some clicks have NaN or infinite coordinates; remove them")
    if classes is not None:
        classes = np.asarray(classes, dtype=object)
        if classes.shape != (len(points),):
            raise ValueError(
                f"classes must give one class per point ({len(points)}), got shape {classes.shape}"
            )
    between = np.abs(points[:, 0] - np.round(points[:, 0])) > Z_TOLERANCE
    if between.any():
        raise ValueError(
            f"{int(between.sum())} click(s) lie between slices (z = {points[between, 0][:3]}); "
            "place clicks on a slice of the stack (napari does so in the 2-D view), or round "
            "their z to the nearest plane"
        )
    is_bg = background_mask(classes, len(points))
    inside = points_inside(points, shape) if len(points) else np.zeros(0, bool)
    warn_outside(int(np.sum(~inside)), "clicks")
    obj = np.round(points[inside & ~is_bg]).astype(int).reshape(-1, 3)
    bg = np.round(points[inside & is_bg]).astype(int).reshape(-1, 3)
    return obj, bg


def _gray_stack(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"a 3-D stack (z, y, x) is needed; got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    image = image.astype(np.float64, copy=False)
    if not np.all(np.isfinite(image)):
        image = np.nan_to_num(image, nan=float(np.nanmedian(image)))
    lo, hi = np.percentile(image, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def estimate_object_radius_3d(
    clicks: np.ndarray, shape: Sequence[int], *, scale: Sequence[float]
) -> float:
    """Largest plausible object radius (physical units) from the spacing of 3-D clicks.

    0.7 x the median nearest-neighbour distance between clicks (physical, the 2-D rule),
    capped at 1/4 of the stack's smaller in-plane side (z is left out: stacks are often
    thin, with nuclei cut by their first and last plane; the 2-D cap of 1/8 was too tight
    for cropped stacks such as the StarDist test stack, whose nuclei span a quarter of its
    width); a single click gets 1/16 of that side. Never below 2 voxels of the coarsest
    axis.
    """
    spacing = check_voxel_size(scale)
    clicks = np.asarray(clicks, dtype=float).reshape(-1, 3) * spacing
    extent = min(float(shape[1] * spacing[1]), float(shape[2] * spacing[2]))
    floor = 2.0 * float(spacing.max())
    if len(clicks) < 2:
        return max(extent / 16.0, floor)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(clicks).query(clicks, k=2)
    nn = dist[:, 1][dist[:, 1] > 0]
    if len(nn) == 0:
        return max(extent / 16.0, floor)
    return float(np.clip(0.7 * np.median(nn), floor, max(extent / 4.0, floor)))


def _prepare(image, points, classes, scale, max_radius):
    gray = _gray_stack(image)
    obj, bg = _check_points(points, classes, gray.shape)
    spacing = check_voxel_size(scale)
    if max_radius is None:
        max_radius = estimate_object_radius_3d(obj, gray.shape, scale=spacing)
    elif not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number, not {max_radius!r}")
    return gray, obj, bg, spacing, float(max_radius)


# ------------------------------------------------------------------ segmentation
def _box(centre: np.ndarray, half: np.ndarray, shape) -> tuple[slice, ...]:
    return tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(centre, half, shape))


def _ball(centre: np.ndarray, radius: float, spacing: np.ndarray, shape) -> tuple:
    """Voxel indices within ``radius`` (physical) of ``centre``."""
    half = np.floor(radius / spacing).astype(int)
    box = _box(centre, half, shape)
    grids = np.meshgrid(*[(np.arange(s.start, s.stop) - c) * d
                          for s, c, d in zip(box, centre, spacing)], indexing="ij")
    inside = sum(g**2 for g in grids) <= radius**2
    return tuple(np.nonzero(inside)[i] + box[i].start for i in range(3))


def _oriented(gray: np.ndarray, clicks: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Smoothed stack (Gaussian of one finest voxel, in physical units), inverted when the
    clicked voxels are darker than the median."""
    smooth = ndi.gaussian_filter(gray, float(spacing.min()) / spacing)
    if len(clicks) and np.median(smooth[tuple(clicks.T)]) < np.median(smooth):
        smooth = 1.0 - smooth
    return smooth


def _click_thresholds(smooth, clicks, radius: float, spacing) -> np.ndarray:
    """One threshold per click: midpoint between the click's level (median within a
    quarter radius) and the local background (median below Otsu within 1.5 radii), at
    most the local Otsu threshold (the 2-D rule of :mod:`.clicks`, in physical units)."""
    out = np.empty(len(clicks))
    window = np.ceil(1.5 * radius / spacing).astype(int) + 1
    core = np.ceil(0.25 * radius / spacing).astype(int)
    for i, c in enumerate(clicks):
        out[i] = click_threshold(smooth[_box(c, window, smooth.shape)],
                                 smooth[_box(c, core, smooth.shape)])
    return out


def _segment(gray, obj, bg, spacing, max_radius) -> dict:
    """Seeded 3-D watershed from the clicks (see :func:`clicks_to_labels_3d`)."""
    shape = gray.shape
    smooth = _oriented(gray, obj, spacing)
    seeds = np.zeros(shape, np.int32)
    n = len(obj)
    if n == 0:
        inf = np.full(shape, np.inf)
        return {"labels": seeds, "smooth": smooth, "dist": inf, "pixel_threshold": inf,
                "landscape": -smooth, "seeds": seeds}
    seeds[tuple(obj.T)] = np.arange(1, n + 1)
    dist, index = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
    owner = seeds[tuple(index)]
    del index
    pixel_threshold = _click_thresholds(smooth, obj, max_radius, spacing)[owner - 1]
    foreground = (smooth > pixel_threshold) & (dist <= max_radius)
    markers = seeds.copy()
    for c in bg:  # background clicks seed a background basin
        markers[_ball(c, 2.0 * float(spacing.min()), spacing, shape)] = n + 1
    markers[tuple(obj.T)] = np.arange(1, n + 1)
    mask = foreground | (markers > 0)
    contrast = max(float(np.ptp(smooth[mask])), 1e-6)
    landscape = -smooth / contrast + dist / max_radius
    labels = segmentation.watershed(landscape, markers, mask=mask)
    labels[labels == n + 1] = 0
    return {"labels": keep_clicked_part(labels, seeds, n), "smooth": smooth, "dist": dist,
            "pixel_threshold": pixel_threshold, "landscape": landscape, "seeds": seeds}


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour of another non-zero label."""
    out = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        o = np.moveaxis(out, axis, 0)
        differ = (a[:-1] != a[1:]) & (a[:-1] > 0) & (a[1:] > 0)
        o[:-1] |= differ
        o[1:] |= differ
    return out


# ------------------------------------------------------------------------ public
def clicks_to_labels_3d(
    image: np.ndarray,
    points: np.ndarray,
    *,
    scale: Sequence[float] | None,
    classes: Sequence[str] | np.ndarray | None = None,
    max_radius: float | None = None,
) -> np.ndarray:
    """One click per nucleus in a (z, y, x) stack -> 3-D instance masks.

    Parameters
    ----------
    image : (Z, Y, X) array
        Grayscale stack; objects bright on dark, or dark on bright (inverted when the
        clicked voxels are darker than the median).
    points : (N, 3) array
        Clicks (z, y, x) in data coordinates; z must be on a plane (within
        :data:`Z_TOLERANCE`).
    scale : (z, y, x) voxel size, required (physical units, e.g. um).
    classes : class per click; ``"background"`` marks background clicks.
    max_radius : largest object radius, physical units; default
        :func:`estimate_object_radius_3d`.

    Returns
    -------
    labels : uint16 (Z, Y, X); object click ``i`` (object clicks only, in order) -> ``i + 1``.

    Notes
    -----
    The 2-D rule of :func:`napari_segkit.annotations.clicks_to_labels` in physical units:
    each click gets its own threshold from its neighbourhood; a voxel is foreground when it
    is brighter than the threshold of its nearest click (physical distance) and within
    ``max_radius`` of it; a watershed seeded by the clicks on inverted intensity plus
    distance to the nearest click splits the foreground; each object keeps the 3-D
    component holding its click, with holes filled.
    """
    gray, obj, bg, spacing, max_radius = _prepare(image, points, classes, scale, max_radius)
    return as_label_dtype(_segment(gray, obj, bg, spacing, max_radius)["labels"])


def clicks_to_sparse_labels_3d(
    image: np.ndarray,
    points: np.ndarray,
    *,
    scale: Sequence[float] | None,
    classes: Sequence[str] | np.ndarray | None = None,
    max_radius: float | None = None,
) -> np.ndarray:
    """3-D clicks -> sparse training labels (uint8 (Z, Y, X)): object / background / ignore.

    Parameters are those of :func:`clicks_to_labels_3d`. With ``R`` the object radius, as
    in 2-D (:func:`napari_segkit.annotations.clicks_to_sparse_labels`), in physical units:
    **object** = a ball of ``0.3 R`` around each object click intersected with its mask;
    **background** = a ball of ``0.3 R`` around background clicks, watershed lines between
    neighbouring clicks within ``1.5 R``, voxels within ``R`` of a click darker than its
    threshold and more than 2 voxels from every mask, and clearly dark regions farther
    than ``R`` from every click (eroded by 2 voxels); everything else is ignored.
    """
    gray, obj, bg, spacing, max_radius = _prepare(image, points, classes, scale, max_radius)
    shape = gray.shape
    res = _segment(gray, obj, bg, spacing, max_radius)
    labels, smooth, dist = res["labels"], res["smooth"], res["dist"]
    core = 0.3 * max_radius
    background = np.zeros(shape, bool)
    for c in bg:
        background[_ball(c, core, spacing, shape)] = True
    otsu = filters.threshold_otsu(smooth) if np.ptp(smooth) > 0 else float(smooth.max()) + 1
    if len(obj):
        if len(obj) > 1:
            near_clicks = dist <= 1.5 * max_radius
            # (skimage's watershed_line=True is very slow in 3-D: mark the voxels on each
            # side of the basins' face boundaries instead)
            basins = segmentation.watershed(res["landscape"], res["seeds"], mask=near_clicks)
            background |= _boundaries(basins) & near_clicks
        near = ndi.binary_dilation(labels > 0, iterations=2)
        background |= (dist <= max_radius) & (smooth < res["pixel_threshold"]) & ~near
        inside = labels > 0
        dark_level = min(otsu, float(np.median(res["pixel_threshold"][inside])) if inside.any()
                         else otsu)
        background |= ndi.binary_erosion((smooth < dark_level) & (dist > max_radius), iterations=2)
    elif len(bg):
        background |= ndi.binary_erosion(smooth < otsu, iterations=2)
    sparse = np.zeros(shape, np.uint8)
    sparse[background] = SPARSE_BACKGROUND
    for i, c in enumerate(obj, start=1):
        ball = _ball(c, core, spacing, shape)
        keep = labels[ball] == i
        sparse[tuple(axis[keep] for axis in ball)] = SPARSE_OBJECT
    if len(bg):
        sparse[tuple(bg.T)] = SPARSE_BACKGROUND
    if len(obj):
        sparse[tuple(obj.T)] = SPARSE_OBJECT
    return sparse
