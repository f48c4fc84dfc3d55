"""Outline keypoints (clicks along each object's boundary) -> closed masks, in 2-D and 3-D.
See :mod:`napari_segkit.annotations` for the conventions."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import draw

from .._common import as_label_dtype, check_scale, label_dtype
from .common import check_shape, is_flat, points_inside, warn_outside

__all__ = ["outline_to_labels"]


def _closed_contour(points: np.ndarray, samples_per_pixel: float = 2.0) -> np.ndarray:
    """A smooth closed curve through ordered points (periodic cubic spline).

    With fewer than 4 distinct points (or when the spline cannot be fitted) the polygon
    through the points is returned.
    """
    from scipy.interpolate import splev, splprep

    keep = np.ones(len(points), bool)
    keep[1:] = np.any(np.abs(np.diff(points, axis=0)) > 1e-9, axis=1)
    pts = points[keep]
    if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    if len(pts) < 4:
        return pts
    closed = np.vstack([pts, pts[:1]])
    perimeter = float(np.sum(np.linalg.norm(np.diff(closed, axis=0), axis=1)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tck, u = splprep(closed.T, s=0, per=True, k=3)
        n = max(64, int(samples_per_pixel * perimeter))
        t = np.unique(np.concatenate([np.linspace(0, 1, n, endpoint=False), u[:-1]]))
        curve = np.stack(splev(t, tck), axis=1)
    except (ValueError, TypeError):
        return pts
    if not np.all(np.isfinite(curve)):
        return pts
    return curve


def _fill_contour(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the smooth closed contour through ``points``; the clicks are inside."""
    mask = np.zeros(shape, bool)
    curve = _closed_contour(points)
    if len(curve) >= 3:
        rr, cc = draw.polygon(curve[:, 0], curve[:, 1], shape=shape)
        mask[rr, cc] = True
        # the curve's own pixels too, so that thin parts and the clicks belong to the object
        rr, cc = draw.polygon_perimeter(curve[:, 0], curve[:, 1], shape=shape)
        mask[rr, cc] = True
    idx = np.round(points).astype(int)
    mask[idx[:, 0], idx[:, 1]] = True
    return ndi.binary_fill_holes(mask)


def _hull_volume(
    points_phys: np.ndarray, scale: np.ndarray, shape: tuple[int, ...]
) -> tuple[tuple, np.ndarray] | None:
    """Voxels inside the convex hull of physical points, within the points' bounding box."""
    from scipy.spatial import Delaunay, QhullError

    idx = points_phys / scale
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(shape))
    try:
        tri = Delaunay(points_phys)
    except (QhullError, ValueError):
        return None
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
    )
    inside = tri.find_simplex(grid.reshape(-1, 3) * scale, tol=1e-6) >= 0
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return sl, inside.reshape(grid.shape[:3])


def _interpolated_volume(
    points: np.ndarray, scale: np.ndarray, shape: tuple[int, ...]
) -> tuple[tuple, np.ndarray]:
    """Per annotated slice a smooth contour; slices between them by linear interpolation
    of the signed distance (in physical units) of the two neighbouring contours."""
    z = np.round(points[:, 0]).astype(int)
    planes = np.unique(z)
    lo = np.maximum(np.floor(points[:, 1:].min(axis=0)).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(points[:, 1:].max(axis=0)).astype(int) + 3, np.asarray(shape[1:]))
    sub = tuple(int(x) for x in hi - lo)
    masks, sdf = {}, {}
    for p in planes:
        m = _fill_contour(points[z == p, 1:] - lo, sub)
        masks[p] = m
        sdf[p] = ndi.distance_transform_edt(m, sampling=scale[1:]) - ndi.distance_transform_edt(
            ~m, sampling=scale[1:]
        )
    vol = np.zeros((planes[-1] - planes[0] + 1, *sub), bool)
    for a, b in zip(planes[:-1], planes[1:], strict=True):
        for k in range(a, b + 1):
            t = (k - a) / (b - a)
            vol[k - planes[0]] = ((1 - t) * sdf[a] + t * sdf[b]) > 0
    for p in planes:
        vol[p - planes[0]] |= masks[p]
    sl = (slice(int(planes[0]), int(planes[-1]) + 1), slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    return sl, vol


def outline_to_labels(
    points: np.ndarray,
    object_ids: np.ndarray | Sequence[int] | None,
    shape: Sequence[int],
    *,
    scale: Sequence[float] | None = None,
) -> np.ndarray:
    """Fill objects outlined by keypoints (clicks along each object's boundary).

    Parameters
    ----------
    points : (N, 2) or (N, 3) array
        Keypoints in data coordinates, (row, col) or (z, row, col). Within one object the
        order of the points is the order along the outline (click order).
    object_ids : (N,) array of int, optional
        Which object each point belongs to (the Points layer's ``object_id`` feature);
        None means all points outline one object.
    shape : tuple
        Output shape: (rows, cols), or (planes, rows, cols) for 3-D points.
    scale : tuple, optional
        Pixel spacing per axis (napari ``layer.scale``); used in 3-D, where physical
        coordinates are ``index * scale``.

    Returns
    -------
    labels : ndarray
        Objects get ids 1..K in increasing ``object_id`` order; later ids win on overlap.

    Notes
    -----
    2-D: a periodic cubic spline through the clicks (``splprep(per=True)``), filled; with
    fewer than 4 points the polygon through them. The clicked pixels always belong to the
    object.

    3-D: when every annotated slice of an object (points on integer z) holds at least 3
    points, each slice gets its spline contour and the slices in between are filled by
    linearly interpolating the contours' signed distance maps (physical units). Otherwise
    (points spread over slices, or off the slice grid) the object is the convex hull of
    its points in physical space. An object whose points all lie on one slice is filled
    in that slice only. Holes are filled, so each object is a closed solid.
    """
    shape = check_shape(shape)
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(
            f"points must be an (N, 2) or (N, 3) array of coordinates; got shape {points.shape}"
        )
    if points.shape[1] != len(shape):
        raise ValueError(
            f"points have {points.shape[1]} coordinates but the output shape {shape} has "
            f"{len(shape)} dimensions; give (row, col) points for a 2-D image and (z, row, col) "
            "points for a 3-D stack"
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("some points have NaN or infinite coordinates; remove them")
    if object_ids is None:
        object_ids = np.zeros(len(points), int)
    object_ids = np.asarray(object_ids)
    if object_ids.shape != (len(points),):
        raise ValueError(
            f"object_ids must give one id per point ({len(points)}), got shape {object_ids.shape}"
        )
    spacing = np.asarray(check_scale(scale, len(shape)))
    inside = points_inside(points, shape)
    warn_outside(int(np.sum(~inside)), "outline points")
    points, object_ids = points[inside], object_ids[inside]
    uniq = np.unique(object_ids)
    labels = np.zeros(shape, dtype=label_dtype(len(uniq)))
    for label, oid in enumerate(uniq, start=1):
        pts = points[object_ids == oid]
        distinct = np.unique(pts, axis=0)
        if len(distinct) < 3:
            raise ValueError(
                f"object {_id_text(oid)} has {len(distinct)} distinct outline points; click at least 3 "
                "points along its boundary (or delete them)"
            )
        if len(shape) == 2:
            _check_area(pts, oid)
            labels[_fill_contour(pts, shape)] = label
            continue
        sl, vol = _object_volume(pts, spacing, shape, oid)
        local = np.round(pts).astype(int) - [s.start for s in sl]
        vol[tuple(local.T)] = True  # the keypoints belong to the object
        vol = ndi.binary_fill_holes(_connect_components(vol))
        labels[sl][vol] = label
    return as_label_dtype(labels)


def _check_area(points: np.ndarray, oid) -> None:
    """Refuse an outline in one plane whose points lie on a line (it encloses no area)."""
    if is_flat(points):
        raise ValueError(
            f"object {oid!r} has zero area: its outline points lie on a line; click points "
            "around the object's boundary (or delete them)"
        )


def _connect_components(mask: np.ndarray) -> np.ndarray:
    """Join stray pieces (e.g. keypoint voxels just outside a hull) to the largest piece.

    Each smaller piece is linked to its nearest voxel of the largest piece by an axis-aligned
    staircase path, so the result is one face-connected object.
    """
    comps, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    main = int(np.argmax(sizes))
    _, nearest = ndi.distance_transform_edt(comps != main, return_indices=True)
    out = mask.copy()
    for k in range(1, n + 1):
        if k == main:
            continue
        start = np.argwhere(comps == k)[0]
        goal = nearest[(slice(None), *start)]
        pos = start.copy()
        for axis in range(mask.ndim):
            step = 1 if goal[axis] >= pos[axis] else -1
            while pos[axis] != goal[axis]:
                pos[axis] += step
                out[tuple(pos)] = True
    return out


def _object_volume(
    pts: np.ndarray, spacing: np.ndarray, shape: tuple, oid
) -> tuple[tuple, np.ndarray]:
    """Dispatch between slice interpolation, single-slice contour and convex hull."""
    z = pts[:, 0]
    on_grid = np.allclose(z, np.round(z), atol=1e-3)
    planes, counts = np.unique(np.round(z), return_counts=True)
    if on_grid and len(planes) == 1:
        _check_area(pts[:, 1:], oid)
        p = int(planes[0])
        lo = np.maximum(np.floor(pts[:, 1:].min(axis=0)).astype(int) - 2, 0)
        hi = np.minimum(np.ceil(pts[:, 1:].max(axis=0)).astype(int) + 3, np.asarray(shape[1:]))
        m = _fill_contour(pts[:, 1:] - lo, tuple(int(x) for x in hi - lo))
        return (slice(p, p + 1), slice(lo[0], hi[0]), slice(lo[1], hi[1])), m[None]
    if on_grid and np.all(counts >= 3):
        return _interpolated_volume(pts, spacing, shape)
    hull = _hull_volume(pts * spacing, spacing, shape)
    if hull is None:  # all points on one (tilted or off-grid) plane: round to slices
        rounded = pts.copy()
        rounded[:, 0] = np.round(rounded[:, 0])
        if np.unique(rounded[:, 0]).size == 1:
            return _object_volume(rounded, spacing, shape, oid)
        raise ValueError(
            f"object {_id_text(oid)}: its outline points lie on one plane across slices, so they enclose "
            "no volume; add points on other slices"
        )
    return hull


def _id_text(oid) -> str:
    """An object id as a user wrote it (7, 'cell 3'), not numpy's repr (np.int64(7))."""
    value = oid.item() if isinstance(oid, np.generic) else oid
    return repr(value) if isinstance(value, str) else str(value)
