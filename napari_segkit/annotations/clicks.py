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
from .common import click_threshold, grayscale, keep_clicked_part, points_inside, warn_outside

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
    if max_radius is not None:
        if not (np.isfinite(max_radius) and max_radius > 0):
            raise ValueError(f"max_radius must be a positive number, not {max_radius!r}")
        max_radius = float(max_radius)
    if not np.ptp(gray) > 0:
        raise ValueError(
            f"the image has no contrast (every pixel is {np.ravel(image)[0].item()}), so clicks "
            "cannot grow into masks: check that the right image (or channel) is selected, or "
            "outline the objects instead (polygons with mode 'fill', or outline keypoints)"
        )
    return gray, obj, bg, spacing, max_radius


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
    never above the local Otsu threshold. ``radius_px``: (rows, cols) radius per click.
    """
    out = np.empty(len(clicks))
    for i, (r, c) in enumerate(clicks):
        wr, wc = (np.ceil(1.5 * radius_px[i])).astype(int) + 1
        win = smooth[max(0, r - wr) : r + wr + 1, max(0, c - wc) : c + wc + 1]
        cr, cc = (np.ceil(0.25 * radius_px[i])).astype(int)
        core = smooth[max(0, r - cr) : r + cr + 1, max(0, c - cc) : c + cc + 1]
        out[i] = click_threshold(win, core)
    return out


def _click_scales(smooth: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Radius (pixels) of the blob under each click, from the scale-normalised Laplacian of
    Gaussian: the scale ``s`` where ``-s**2 * LoG_s`` at the click peaks (radius ``sqrt(2) s``).

    Scales run from 1 px to 1/8 of the image's smaller side; large scales are computed on a
    block-averaged image, so the cost stays that of a few small filters.
    """
    extent = min(smooth.shape)
    sigmas = np.geomspace(1.0, max(1.5, extent / 8.0 / np.sqrt(2)), 14)
    response = np.empty((len(sigmas), len(clicks)))
    for k, sigma in enumerate(sigmas):
        factor = max(1, int(sigma // 3))
        small = smooth
        if factor > 1:
            h, w = (np.array(smooth.shape) // factor) * factor
            small = smooth[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))
        log = -((sigma / factor) ** 2) * ndi.gaussian_laplace(small, sigma / factor)
        at = np.minimum(clicks // factor, np.array(small.shape) - 1)
        response[k] = log[at[:, 0], at[:, 1]]
    return np.sqrt(2.0) * sigmas[np.argmax(response, axis=0)]


#: h of the h-maxima that find object centres: on the distance map (pixels) and on the
#: intensity (scaled to [0, 1]).
_CENTRE_H_DISTANCE = 0.25
_CENTRE_H_INTENSITY = 0.02
#: Maxima whose centres are closer than twice this x the nucleus scale count as one centre.
_CENTRE_MERGE = 0.4
#: Growth bound: this x the radius of the claimed object (its distance-map peak), or, for a
#: click that claimed no centre, this x the radius of the blob under it (LoG scale); + 2 px.
_BOUND_CLAIMED = 3.0
_BOUND_UNCLAIMED = 4.0


def _merge_close_maxima(found: np.ndarray, radius: int) -> np.ndarray:
    """Label the maxima regions of ``found``, one label for regions whose centres lie
    within ``2 radius`` of each other (transitively).

    Measured between centres, not between the regions' nearest pixels: the plateau of a
    flat (saturated) nucleus reaches close to its edge, so two touching flat nuclei have
    plateaus a few pixels apart, and merging them made one centre of both."""
    from skimage.morphology import disk

    regions, k = ndi.label(found)
    if k == 0:
        return regions
    centres = np.round(ndi.center_of_mass(found, regions, np.arange(1, k + 1))).astype(int)
    centres = np.clip(centres.reshape(-1, 2), 0, np.array(found.shape) - 1)
    points = np.zeros(found.shape, bool)
    points[centres[:, 0], centres[:, 1]] = True
    groups = ndi.label(ndi.binary_dilation(points, disk(radius)))[0]
    group_of = np.concatenate([[0], groups[centres[:, 0], centres[:, 1]]])
    return group_of[regions]


def _unclicked_seeds(
    foreground: np.ndarray, smooth: np.ndarray, obj: np.ndarray, scale_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres of the objects in ``foreground``, and which click claims each one.

    Centres are the h-maxima of the foreground's smoothed distance map (separate blobs,
    and touching round nuclei with a neck between them) and of the smoothed intensity
    (touching nuclei without a neck, each brightest inside); centres closer than
    ``0.8 scale_px`` count as one. A click claims the nearest centre
    whose inscribed disk (radius: the distance map there, + 1 px) holds it; a centre that
    several clicks claim drops out (those clicks split the object between themselves).

    Returns (centre labels 1..m, ``claimed_by`` (m,) click index, -1 (unclicked) or -2
    (several clicks), radius (m,): the distance map at the centre, pixels).
    """
    from skimage.morphology import h_maxima

    edt = ndi.gaussian_filter(ndi.distance_transform_edt(foreground), 1.0)
    blur = ndi.gaussian_filter(smooth, 1.0)
    # on values quantised to steps of h / 4 (integers make the reconstruction ~2x faster)
    found = h_maxima(np.round(edt * (4 / _CENTRE_H_DISTANCE)).astype(np.uint32), 4)
    found |= h_maxima(np.round(blur * (4 / _CENTRE_H_INTENSITY)).astype(np.uint32), 4)
    found &= foreground
    peaks = _merge_close_maxima(found, max(1, round(_CENTRE_MERGE * scale_px)))
    ids = np.unique(peaks[peaks > 0])
    m = len(ids)
    if m == 0:
        return peaks, np.zeros(0, int), np.zeros(0)
    relabel = np.zeros(peaks.max() + 1, np.int32)
    relabel[ids] = np.arange(1, m + 1)
    peaks = relabel[peaks]
    index = np.arange(1, m + 1)
    centres = np.array(ndi.center_of_mass(foreground, peaks, index)).reshape(-1, 2)
    radius = np.asarray(ndi.maximum(edt, peaks, index), float)
    claimed_by = np.full(m, -1)
    for i, click in enumerate(obj):
        d = np.hypot(*(centres - click).T)
        d[d > radius + 1.0] = np.inf
        k = int(np.argmin(d))
        if np.isfinite(d[k]):
            claimed_by[k] = i if claimed_by[k] == -1 else -2
    return peaks, claimed_by, radius


def _click_segmentation(
    gray: np.ndarray,
    obj: np.ndarray,
    bg: np.ndarray,
    spacing: np.ndarray,
    max_radius: float | None,
    all_clicked: bool | np.ndarray = False,
) -> dict:
    """Seeded watershed from clicks, in competition with unclicked objects (except where
    ``all_clicked``, True or a bool mask, says that every object was clicked).

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
    if max_radius is None:  # each click's own scale (a cluster's scale is no nucleus' scale)
        scales = _click_scales(smooth, obj)
        scales = np.clip(scales, 0.6 * np.median(scales), 1.6 * np.median(scales))
        window_px = np.outer(2.0 * scales, np.ones(2))  # a threshold window of 3 radii
    else:
        window_px = np.tile(max_radius / spacing, (n, 1))
    thresholds = _click_thresholds(smooth, obj, window_px)
    pixel_threshold = thresholds[owner - 1]
    foreground = smooth > pixel_threshold
    # unclicked objects compete for the pixels; a click takes over its own object's centre
    peaks, claimed_by, centre_radius = _unclicked_seeds(
        foreground, smooth, obj, float(np.median(window_px)) / 2.0
    )
    if len(claimed_by) and np.any(all_clicked):
        # every object there has a click: a centre no click took over is a second centre
        # of a clicked object (an elongated or textured nucleus), not an object of its own
        inside = True if np.ndim(all_clicked) == 0 else np.asarray(
            ndi.maximum(all_clicked, peaks, np.arange(1, len(claimed_by) + 1)), bool)
        claimed_by = np.where((claimed_by == -1) & inside, -2, claimed_by)
    markers = seeds.copy()
    pmin = float(spacing.min())
    bound = np.full(n, np.inf if max_radius is None else max_radius)
    for k, i in enumerate(claimed_by):
        if i == -2:
            continue
        label = (i + 1) if i >= 0 else n + 2 + k
        markers[(peaks == k + 1) & (markers == 0)] = label
        if i >= 0 and max_radius is None:
            bound[i] = (_BOUND_CLAIMED * centre_radius[k] + 2.0) * pmin
    if max_radius is None:  # clicks without an object centre: bounded by their blob scale
        free = ~np.isfinite(bound)
        bound[free] = (_BOUND_UNCLAIMED * window_px[free, 0] / 2.0 + 2.0) * pmin
    for r, c in bg:  # background clicks seed a background basin
        rr, cc = draw.disk((r, c), 2, shape=shape)
        markers[rr, cc] = n + 1
    markers[obj[:, 0], obj[:, 1]] = np.arange(1, n + 1)
    # distance to the own markers (click and claimed centre) bounds each object's growth
    own = (markers > 0) & (markers <= n)
    own_dist, (jr, jc) = ndi.distance_transform_edt(~own, sampling=spacing, return_indices=True)
    within = own_dist <= bound[markers[jr, jc].clip(1, n) - 1]
    mask = (foreground & within) | (markers > 0)
    near_dist = ndi.distance_transform_edt(markers == 0, sampling=spacing)
    scale = float(np.median(bound))
    contrast = max(float(np.ptp(smooth[mask])), 1e-6)
    landscape = -smooth / contrast + near_dist / scale
    labels = segmentation.watershed(landscape, markers, mask=mask)
    labels[labels > n] = 0
    return {
        "labels": keep_clicked_part(labels, seeds, n),
        "smooth": smooth,
        "dist": dist,
        "pixel_threshold": pixel_threshold,
        "landscape": -smooth / contrast + dist / scale,
        "seeds": seeds,
    }


def clicks_to_labels(
    image: np.ndarray,
    points: np.ndarray,
    *,
    classes: Sequence[str] | np.ndarray | None = None,
    scale: Sequence[float] | None = None,
    max_radius: float | None = None,
    all_clicked: bool | np.ndarray = False,
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
        Largest object radius in physical units, the same for every click. Default: each
        object's own size (see Notes), never the spacing of the clicks, so that clicking
        a few nuclei among many works as well as clicking all of them.
    all_clicked : bool or bool array of the image's (rows, cols)
        True (or True where the mask is): every object there has a click, so no unclicked
        object competes for its pixels there (see Notes); a nucleus with two centres
        (elongated, textured) then grows whole from its click instead of stopping at its
        second centre. Default False: users click some objects, not all.

    Returns
    -------
    labels : ndarray
        Object click ``i`` (counting object clicks only, in order) gets id ``i + 1``.

    Raises
    ------
    ValueError
        For a complex image, an image without contrast (constant, all zero), 3-D input,
        bad classes, non-finite clicks or a non-positive ``max_radius``.

    Notes
    -----
    The image is smoothed (Gaussian, sigma 1 px). Each click gets the radius of the blob
    under it (the peak over scales of the scale-normalised Laplacian of Gaussian, clipped
    to 0.6-1.6 x the clicks' median) and its own intensity threshold from a window of 3
    such radii (midpoint between the click's level and the local background, at most the
    local Otsu threshold); a pixel is foreground when it is brighter than the threshold of
    its nearest click.

    Users click some objects, not all, so unclicked objects compete for the pixels: object
    centres are found automatically (h-maxima of the foreground's distance map and of the
    intensity); a click takes over the centre whose inscribed disk holds it, the others
    seed objects that are dropped at the end. Each object grows at most 3 x the radius of
    its centre's inscribed disk (+ 2 px) from its click and centre (4 x its blob radius
    when it took over no centre; ``max_radius`` when given). A watershed seeded by the
    clicks, the centres (and a disk at each background click) splits the foreground; its
    landscape is the inverted intensity plus the distance to the nearest seed (normalised
    by the foreground's contrast and by the median growth bound), so that textured or dim
    objects keep their own pixels; each object keeps the component holding its click,
    with holes filled.
    """
    if is_stack(image):  # (z, y, x) stack: 3-D masks, scale required (no competition in 3-D)
        return clicks_to_labels_3d(image, points, scale=scale, classes=classes,
                                   max_radius=max_radius)
    gray, obj, bg, spacing, max_radius = _split_clicks(image, points, classes, scale, max_radius)
    if np.ndim(all_clicked) and np.shape(all_clicked) != gray.shape:
        raise ValueError(f"all_clicked has shape {np.shape(all_clicked)}; give True, False or "
                         f"a mask of the image's shape {gray.shape}")
    result = _click_segmentation(gray, obj, bg, spacing, max_radius, all_clicked)
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
    if max_radius is None:
        max_radius = estimate_object_radius(obj, shape, scale=spacing)
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
