"""Clicks (one per object, plus background clicks) -> instance masks or sparse training
labels, for 2-D gray or RGB images; (z, y, x) stacks go to :mod:`.clicks3d`. See
:mod:`napari_segkit.annotations` for the conventions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, filters, segmentation

from .._common import (
    SPARSE_BACKGROUND,
    SPARSE_OBJECT,
    as_label_dtype,
    background_mask,
    check_scale,
    image_kind,
)
from .clicks3d import clicks_to_labels_3d, clicks_to_sparse_labels_3d, is_stack
from .common import grayscale, points_inside, warn_outside

__all__ = ["clicks_to_labels", "clicks_to_sparse_labels", "estimate_object_radius"]


def _split_clicks(
    image: np.ndarray, points: np.ndarray, classes, scale, max_radius: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Validate click input; return (gray image, object clicks, background clicks, spacing,
    object radius: ``max_radius`` or :func:`estimate_object_radius`)."""
    image = np.asarray(image)
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or (len(points) and points.shape[1] not in (2, 3)):
        raise ValueError(f"points must be an (N, 2) array of (row, col); got shape {points.shape}")
    if image_kind(image.shape) not in ("gray", "rgb") or (len(points) and points.shape[1] == 3):
        raise ValueError(
            f"clicks are converted in 2-D only (image shape {image.shape}); for a 3-D stack "
            "convert one slice at a time, or outline 3-D objects with outline_to_labels"
        )
    gray = grayscale(image)
    spacing = np.asarray(check_scale(scale, 2))
    if classes is not None:
        classes = np.asarray(classes, dtype=object)
        if classes.shape != (len(points),):
            raise ValueError(
                f"classes must give one class per point ({len(points)}), got shape {classes.shape}"
            )
    is_bg = background_mask(classes, len(points))
    if len(points) and not np.all(np.isfinite(points)):
        raise ValueError("some clicks have NaN or infinite coordinates; remove them")
    inside = points_inside(points, gray.shape) if len(points) else np.zeros(0, bool)
    warn_outside(int(np.sum(~inside)), "clicks")
    obj = np.round(points[inside & ~is_bg]).astype(int).reshape(-1, 2)
    bg = np.round(points[inside & is_bg]).astype(int).reshape(-1, 2)
    if max_radius is None:
        max_radius = estimate_object_radius(obj, gray.shape, scale=spacing)
    elif not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number, not {max_radius!r}")
    return gray, obj, bg, spacing, float(max_radius)


def estimate_object_radius(
    clicks: np.ndarray, shape: Sequence[int], *, scale: Sequence[float] | None = None
) -> float:
    """Largest plausible object radius (physical units) from the spacing of the clicks.

    0.7 x the median nearest-neighbour distance between clicks (neighbouring objects
    cannot overlap), capped at 1/8 of the image's smaller side; a single click gets
    1/16 of the smaller side. Never below 2 pixels.
    """
    spacing = np.asarray(check_scale(scale, 2))
    clicks = np.asarray(clicks, dtype=float).reshape(-1, 2) * spacing
    extent = min(s * d for s, d in zip(shape[:2], spacing, strict=True))
    floor = 2.0 * float(spacing.max())
    if len(clicks) < 2:
        return max(extent / 16.0, floor)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(clicks).query(clicks, k=2)
    nn = dist[:, 1]
    nn = nn[nn > 0]
    if len(nn) == 0:
        return max(extent / 16.0, floor)
    return float(np.clip(0.7 * np.median(nn), floor, max(extent / 8.0, floor)))


def _oriented(gray: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Smoothed image, inverted when the clicked objects are darker than the image median."""
    smooth = filters.gaussian(gray, sigma=1.0)
    if len(clicks) and np.median(smooth[clicks[:, 0], clicks[:, 1]]) < np.median(smooth):
        smooth = 1.0 - smooth
    return smooth


def _click_thresholds(smooth: np.ndarray, clicks: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """One intensity threshold per click, from its own neighbourhood.

    Midpoint between the click's level (median over a disk of a quarter of the radius)
    and the local background (median of the pixels below Otsu in a window of 1.5 radii),
    never above the local Otsu threshold.
    """
    h, w = smooth.shape
    out = np.empty(len(clicks))
    for i, (r, c) in enumerate(clicks):
        wr, wc = (np.ceil(1.5 * radius_px)).astype(int) + 1
        win = smooth[max(0, r - wr) : r + wr + 1, max(0, c - wc) : c + wc + 1]
        cr, cc = (np.ceil(0.25 * radius_px)).astype(int)
        core = smooth[max(0, r - cr) : r + cr + 1, max(0, c - cc) : c + cc + 1]
        level = float(np.median(core))
        if np.ptp(win) < 1e-6:
            out[i] = level - 1e-6
            continue
        otsu = filters.threshold_otsu(win)
        below = win[win <= otsu]
        background = float(np.median(below)) if below.size else float(win.min())
        out[i] = min(otsu, 0.5 * (level + background))
    return out


def _click_segmentation(
    gray: np.ndarray, obj: np.ndarray, bg: np.ndarray, spacing: np.ndarray, max_radius: float
) -> dict:
    """Seeded watershed from clicks.

    Returns a dict with ``labels``, ``smooth`` (oriented, smoothed image), ``dist`` (physical
    distance to the nearest object click), ``pixel_threshold`` (threshold of the nearest
    click per pixel), ``landscape`` and ``seeds``.
    """
    shape = gray.shape
    smooth = _oriented(gray, obj)
    seeds = np.zeros(shape, np.int32)
    n = len(obj)
    if n == 0:
        inf = np.full(shape, np.inf)
        return {
            "labels": seeds,
            "smooth": smooth,
            "dist": inf,
            "pixel_threshold": inf,
            "landscape": -smooth,
            "seeds": seeds,
        }
    seeds[obj[:, 0], obj[:, 1]] = np.arange(1, n + 1)
    # nearest click per pixel (physical distance), and its threshold
    dist, (ir, ic) = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
    owner = seeds[ir, ic]
    radius_px = max_radius / spacing
    thresholds = _click_thresholds(smooth, obj, radius_px)
    pixel_threshold = thresholds[owner - 1]
    foreground = (smooth > pixel_threshold) & (dist <= max_radius)
    markers = seeds.copy()
    for r, c in bg:  # background clicks seed a background basin
        rr, cc = draw.disk((r, c), 2, shape=shape)
        markers[rr, cc] = n + 1
    markers[obj[:, 0], obj[:, 1]] = np.arange(1, n + 1)
    mask = foreground | (markers > 0)
    # landscape: inverted intensity plus distance to the nearest click, both normalised, so
    # that a click in a dim or textured part of an object is not flooded by a brighter
    # neighbour's basin (watershed on intensity alone lets bright basins run over dim ones)
    contrast = max(float(np.ptp(smooth[mask])), 1e-6)
    landscape = -smooth / contrast + dist / max_radius
    labels = segmentation.watershed(landscape, markers, mask=mask)
    labels[labels == n + 1] = 0
    return {
        "labels": _clean_instances(labels, seeds, n),
        "smooth": smooth,
        "dist": dist,
        "pixel_threshold": pixel_threshold,
        "landscape": landscape,
        "seeds": seeds,
    }


def _clean_instances(labels: np.ndarray, seeds: np.ndarray, n: int) -> np.ndarray:
    """Keep each object's component that holds its click; fill its holes."""
    out = np.zeros_like(labels)
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n), start=1):
        if sl is None:
            continue
        m = labels[sl] == i
        comp, k = ndi.label(m)
        if k > 1:
            at = comp[seeds[sl] == i]
            m = comp == (
                at[0] if at.size and at[0] else np.argmax(np.bincount(comp.ravel())[1:]) + 1
            )
        m = ndi.binary_fill_holes(m)
        region = out[sl]
        region[m & (region == 0)] = i
    return out


def clicks_to_labels(
    image: np.ndarray,
    points: np.ndarray,
    *,
    classes: Sequence[str] | np.ndarray | None = None,
    scale: Sequence[float] | None = None,
    max_radius: float | None = None,
) -> np.ndarray:
    """One click per object -> instance masks (2-D images, grayscale or RGB).

    Parameters
    ----------
    image : ndarray
        2-D image or RGB (rows, cols, 3). Objects may be bright on dark (fluorescence)
        or dark on bright (H&E): the image is inverted when the clicked pixels are darker
        than the image median.
    points : (N, 2) array
        Clicks in data coordinates (row, col).
    classes : sequence of str, optional
        Class per click; ``"background"`` marks background clicks, anything else an
        object. None: every click is an object.
    scale : tuple, optional
        Pixel spacing (row, col); distances and radii are measured in these units.
    max_radius : float, optional
        Largest object radius in physical units. Default: :func:`estimate_object_radius`
        (0.7 x the median distance between neighbouring clicks, capped).

    Returns
    -------
    labels : ndarray
        Object click ``i`` (counting object clicks only, in order) gets id ``i + 1``.

    Notes
    -----
    The image is smoothed (Gaussian, sigma 1 px). Each click gets its own intensity
    threshold from its neighbourhood (midpoint between the click's level and the local
    background, at most the local Otsu threshold); a pixel is foreground when it is
    brighter than the threshold of its nearest click and within ``max_radius`` of it.
    A watershed seeded by the clicks (and by a disk at each background click) splits the
    foreground between clicks; its landscape is the inverted intensity plus the distance
    to the nearest click (each normalised: by the foreground's contrast and by
    ``max_radius``), so that textured or dim objects keep their own pixels; each object keeps the
    component holding its click, with holes filled.
    """
    if is_stack(image):  # (z, y, x) stack: 3-D masks, scale required
        return clicks_to_labels_3d(image, points, scale=scale, classes=classes,
                                   max_radius=max_radius)
    gray, obj, bg, spacing, max_radius = _split_clicks(image, points, classes, scale, max_radius)
    result = _click_segmentation(gray, obj, bg, spacing, max_radius)
    return as_label_dtype(result["labels"])


def _disk_mask(centres: np.ndarray, radius_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for r, c in centres:
        rr, cc = draw.ellipse(r, c, radius_px[0] + 0.5, radius_px[1] + 0.5, shape=shape)
        mask[rr, cc] = True
    return mask


def clicks_to_sparse_labels(
    image: np.ndarray,
    points: np.ndarray,
    *,
    classes: Sequence[str] | np.ndarray | None = None,
    scale: Sequence[float] | None = None,
    max_radius: float | None = None,
) -> np.ndarray:
    """Clicks -> sparse training labels (uint8): object / background evidence, rest ignored.

    Parameters are those of :func:`clicks_to_labels`.

    Returns
    -------
    sparse : uint8 ndarray of the image's (rows, cols)
        :data:`SPARSE_OBJECT` (2), :data:`SPARSE_BACKGROUND` (1) or :data:`SPARSE_IGNORE` (0).

    Notes
    -----
    With ``R`` the object radius (``max_radius`` or :func:`estimate_object_radius`) and
    the click masks of :func:`clicks_to_labels`:

    * **object**: around each object click, a disk of radius ``0.3 R`` intersected with
      that click's mask (its confident core), and the clicked pixel itself;
    * **background**, as evidence that does not depend on where exactly an object ends:

      - a disk of radius ``0.3 R`` around each background click;
      - watershed lines between neighbouring click seeds (the landscape of
        :func:`clicks_to_labels`), within ``1.5 R`` of a click: the dark gap between
        two touching objects;
      - pixels within ``R`` of a click that are darker than that click's threshold and
        more than 2 pixels away from every click mask (the dark ring around objects);
      - clearly dark regions far from every click: farther than ``R`` from all clicks,
        darker than both the global Otsu threshold and the median click threshold,
        eroded by 2 pixels;

    * **ignore**: everything else (object borders, unclicked regions).

    Object evidence wins over background evidence; clicked pixels always get their
    click's class.
    """
    if is_stack(image):  # (z, y, x) stack: 3-D sparse labels, scale required
        return clicks_to_sparse_labels_3d(image, points, scale=scale, classes=classes,
                                          max_radius=max_radius)
    gray, obj, bg, spacing, max_radius = _split_clicks(image, points, classes, scale, max_radius)
    shape = gray.shape
    res = _click_segmentation(gray, obj, bg, spacing, max_radius)
    labels, smooth, dist = res["labels"], res["smooth"], res["dist"]
    core_px = np.maximum(0.3 * max_radius / spacing, 1.0)
    sparse = np.zeros(shape, np.uint8)
    # background evidence
    background = _disk_mask(bg, core_px, shape)
    if len(obj):
        if len(obj) > 1:
            lines = segmentation.watershed(res["landscape"], res["seeds"], watershed_line=True) == 0
            background |= lines & (dist <= 1.5 * max_radius)
        near_objects = ndi.binary_dilation(labels > 0, iterations=2)
        background |= (dist <= max_radius) & (smooth < res["pixel_threshold"]) & ~near_objects
        dark_level = min(
            filters.threshold_otsu(smooth),
            float(np.median(res["pixel_threshold"][labels > 0]))
            if (labels > 0).any()
            else filters.threshold_otsu(smooth),
        )
        dark = (smooth < dark_level) & (dist > max_radius)
        background |= ndi.binary_erosion(dark, iterations=2)
    else:
        dark = (
            smooth < filters.threshold_otsu(smooth) if np.ptp(smooth) > 0 else np.zeros(shape, bool)
        )
        if len(bg):
            background |= ndi.binary_erosion(dark, iterations=2)
    sparse[background] = SPARSE_BACKGROUND
    # object evidence
    cores = np.zeros(shape, bool)
    for i, (r, c) in enumerate(obj, start=1):
        rr, cc = draw.ellipse(r, c, core_px[0] + 0.5, core_px[1] + 0.5, shape=shape)
        keep = labels[rr, cc] == i
        cores[rr[keep], cc[keep]] = True
    sparse[cores] = SPARSE_OBJECT
    if len(bg):
        sparse[bg[:, 0], bg[:, 1]] = SPARSE_BACKGROUND
    if len(obj):
        sparse[obj[:, 0], obj[:, 1]] = SPARSE_OBJECT
    return sparse
