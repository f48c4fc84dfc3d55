"""Turn annotations (polygons, boxes, outline keypoints, clicks) into label images.

All functions take plain arrays in napari data coordinates ((row, col), or (z, row, col)
in 3-D, in pixels of the image array) and return a label array of the image's shape:
0 = background, 1..N = objects (uint16 when it fits, else uint32). No Qt, no napari.

Conventions shared by every converter:

* Points that fall outside the image are skipped, with a warning that gives their count.
* On overlap the later annotation wins (it is painted on top).
* Bad input raises ``ValueError`` whose message says what to change.

Sparse labels (for training from clicks) use :data:`SPARSE_IGNORE`,
:data:`SPARSE_BACKGROUND` and :data:`SPARSE_OBJECT`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, filters, segmentation

from napari_segkit._utils import as_label_dtype, check_scale

__all__ = [
    "SPARSE_IGNORE",
    "SPARSE_BACKGROUND",
    "SPARSE_OBJECT",
    "polygons_to_labels",
    "boxes_to_labels",
    "outline_to_labels",
    "clicks_to_labels",
    "clicks_to_sparse_labels",
    "estimate_object_radius",
]

#: Sparse label value for pixels that carry no annotation (not trained on).
SPARSE_IGNORE = 0
#: Sparse label value for pixels known to be background.
SPARSE_BACKGROUND = 1
#: Sparse label value for pixels known to be inside an object.
SPARSE_OBJECT = 2

#: Shape types that enclose an area and can be filled.
FILLABLE_SHAPES = ("polygon", "rectangle", "ellipse")

_ELLIPSE_VERTICES = 64


# --------------------------------------------------------------------------- helpers
def _check_shape(shape: Sequence[int] | np.ndarray) -> tuple[int, ...]:
    """Validate an output shape (a tuple of positive ints, or an array whose shape to use)."""
    if isinstance(shape, np.ndarray):
        shape = shape.shape
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(f"shape must be a tuple of sizes like (512, 512); got {shape!r}") from exc
    if len(out) not in (2, 3) or any(s <= 0 for s in out):
        raise ValueError(
            f"shape {out} must be (rows, cols) or (planes, rows, cols) with positive sizes; "
            "pass image.shape[:2] for an RGB image"
        )
    return out


def _split_shape(item, index: int) -> tuple[str, np.ndarray]:
    """Accept a vertex array or a napari-style ``(shape_type, vertices)`` pair."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        kind, verts = item[0].lower(), item[1]
    else:
        kind, verts = "polygon", item
    try:
        verts = np.asarray(verts, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape {index}: vertices must be numbers, got {verts!r}") from exc
    if verts.ndim != 2 or verts.shape[1] not in (2, 3):
        raise ValueError(
            f"shape {index}: vertices must be an (N, 2) array of (row, col) (or (N, 3) with z); "
            f"got an array of shape {verts.shape}"
        )
    return kind, verts


def _plane_of(
    verts: np.ndarray, shape: tuple[int, ...], index: int
) -> tuple[int | None, np.ndarray]:
    """Split (z, y, x) vertices into a plane index and (y, x); 2-D vertices have no plane."""
    if len(shape) == 2:
        if verts.shape[1] == 3:
            if np.ptp(verts[:, 0]) > 1e-6:
                raise ValueError(
                    f"shape {index} has 3-D vertices spanning several planes but the image is 2-D; "
                    "give (row, col) vertices"
                )
            return None, verts[:, 1:]
        return None, verts
    if verts.shape[1] == 2:
        raise ValueError(
            f"shape {index}: the image is 3-D {shape}, so vertices need (z, row, col) coordinates"
        )
    z = verts[:, 0]
    if np.ptp(z) > 1e-6:
        raise ValueError(
            f"shape {index} spans planes z={z.min():g}..{z.max():g}; polygons and boxes must lie in "
            "one plane (draw them in one slice), use outline_to_labels for 3-D objects"
        )
    return int(np.round(z[0])), verts[:, 1:]


def _is_self_intersecting(verts: np.ndarray, block: int = 512) -> bool:
    """True when two edges of the closed polygon properly cross each other.

    ``side[i, j]`` is the cross product of edge ``i`` with the vector from its start to
    vertex ``j``; edges ``i`` and ``j`` cross when each one's end points lie strictly on
    both sides of the other. Adjacent edges share a vertex (a zero cross product), so they
    never count. O(n^2) work, in row blocks to bound memory.
    """
    n = len(verts)
    if n < 4:
        return False
    y, x = verts[:, 0], verts[:, 1]
    dy, dx = np.roll(y, -1) - y, np.roll(x, -1) - x
    offset = dy * x - dx * y

    def side(rows: np.ndarray) -> np.ndarray:
        return np.outer(dy[rows], x) - np.outer(dx[rows], y) - offset[rows, None]

    full = side(np.arange(n)) if n <= block else None
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        m = full[rows] if full is not None else side(rows)
        straddle = m * np.roll(m, -1, axis=1) < 0  # edge j's ends on both sides of edge i
        i, j = np.nonzero(straddle)
        i = i + start
        if len(i) == 0:
            continue
        # and edge i's ends on both sides of edge j
        back = (dy[j] * (x[i] - x[j]) - dx[j] * (y[i] - y[j])) * (
            dy[j] * (x[(i + 1) % n] - x[j]) - dx[j] * (y[(i + 1) % n] - y[j])
        ) < 0
        if np.any(back):
            return True
    return False


def _check_polygon(verts: np.ndarray, index: int, what: str = "polygon") -> np.ndarray:
    """Reject NaN, < 3 distinct vertices and zero area; drop a repeated closing vertex."""
    if not np.all(np.isfinite(verts)):
        raise ValueError(f"{what} {index} has NaN or infinite coordinates; remove or redraw it")
    if len(verts) > 1 and np.allclose(verts[0], verts[-1]):
        verts = verts[:-1]
    centred = verts - verts.mean(axis=0) if len(verts) else verts.reshape(0, 2)
    spread = float(np.abs(centred).max()) if len(verts) else 0.0
    flat = len(verts) < 3 or np.linalg.svd(centred, compute_uv=False)[-1] <= 1e-9 * max(1.0, spread)
    if flat:  # fewer than 3 vertices off one line: say which problem it is
        distinct = np.unique(np.round(verts, 6), axis=0)
        if len(distinct) < 3:
            raise ValueError(
                f"{what} {index} has {len(distinct)} distinct vertices; a {what} needs at least 3 "
                "(draw it again, or delete it)"
            )
        raise ValueError(
            f"{what} {index} has zero area (its vertices lie on a line); redraw it or delete it"
        )
    return verts


def _ellipse_polygon(corners: np.ndarray) -> np.ndarray:
    """Polygon approximating the ellipse inscribed in a (possibly rotated) 4-corner box."""
    centre = corners.mean(axis=0)
    u = (corners[1] - corners[0]) / 2.0
    v = (corners[2] - corners[1]) / 2.0
    t = np.linspace(0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return centre + np.cos(t)[:, None] * v + np.sin(t)[:, None] * u


def _box_corners(verts: np.ndarray, index: int) -> np.ndarray:
    """4 corners of a box given as 4 corners or as 2 opposite corners (axis-aligned)."""
    if len(verts) == 2:
        (r0, c0), (r1, c1) = verts
        verts = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    if len(verts) != 4:
        raise ValueError(
            f"box {index} has {len(verts)} vertices; give 4 corners (any orientation) or "
            "2 opposite corners"
        )
    return verts


def _fill(labels: np.ndarray, plane: int | None, verts: np.ndarray, value: int) -> int:
    """Paint the pixels skimage.draw.polygon gives for ``verts``; return how many."""
    target = labels if plane is None else labels[plane]
    rr, cc = draw.polygon(verts[:, 0], verts[:, 1], shape=target.shape)
    target[rr, cc] = value
    return len(rr)


def _plane_ok(plane: int | None, shape: tuple[int, ...]) -> bool:
    return plane is None or 0 <= plane < shape[0]


def _warn_outside(n_out: int, what: str) -> None:
    if n_out:
        warnings.warn(
            f"{n_out} {what} outside the image were skipped; check that the annotation layer "
            "belongs to this image (same scale and translate)",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- polygons
def polygons_to_labels(
    polygons: Sequence, shape: Sequence[int], *, scale: Sequence[float] | None = None
) -> np.ndarray:
    """Fill polygons (or napari shapes) into an instance label image.

    Parameters
    ----------
    polygons : list
        Each item is an (N, 2) array of (row, col) vertices, or a napari-style
        ``(shape_type, vertices)`` pair with shape_type ``"polygon"``, ``"rectangle"``
        (4 corners) or ``"ellipse"`` (the 4 corners of its bounding box). In a 3-D image
        vertices are (z, row, col) on one plane.
    shape : tuple
        Shape of the output (the image's shape, without the RGB axis).
    scale : tuple, optional
        Pixel spacing; accepted for symmetry with the other converters (vertices are in
        data coordinates, so it does not change the result).

    Returns
    -------
    labels : ndarray
        Polygon ``i`` gets id ``i + 1``. Pixels are exactly those
        ``skimage.draw.polygon`` gives (pixel centres inside; even-odd rule for
        self-intersecting polygons, which also raise a warning). Later polygons win
        where they overlap, so an id can disappear when it is fully covered.

    Raises
    ------
    ValueError
        For a polygon with NaN coordinates, fewer than 3 distinct vertices or zero area
        (the message names its index), or for shapes that do not enclose an area
        (lines, paths).
    """
    shape = _check_shape(shape)
    check_scale(scale, len(shape))
    labels = np.zeros(shape, dtype=np.uint32 if len(polygons) >= 65535 else np.uint16)
    n_outside = 0
    crossing = []
    for index, item in enumerate(polygons):
        kind, verts = _split_shape(item, index)
        if kind not in FILLABLE_SHAPES:
            raise ValueError(
                f"shape {index} is a {kind!r}, which encloses no area; draw polygons, "
                "rectangles or ellipses (or delete it)"
            )
        plane, verts = _plane_of(verts, shape, index)
        if kind == "rectangle":
            verts = _box_corners(verts, index)
        verts = _check_polygon(verts, index, "ellipse" if kind == "ellipse" else "polygon")
        if kind == "ellipse":
            verts = _ellipse_polygon(_box_corners(verts, index))
        elif kind == "polygon" and _is_self_intersecting(verts):
            crossing.append(index)
        if not _plane_ok(plane, shape) or _fill(labels, plane, verts, index + 1) == 0:
            n_outside += 1
    if crossing:
        warnings.warn(
            f"polygons {crossing[:10]} cross themselves; filled with the even-odd rule "
            "(areas enclosed twice stay empty). Redraw them without crossings if that is wrong.",
            UserWarning,
            stacklevel=2,
        )
    if n_outside:
        warnings.warn(
            f"{n_outside} shapes cover no pixel of the image (outside it, or thinner than a pixel) "
            "and were skipped",
            UserWarning,
            stacklevel=2,
        )
    return as_label_dtype(labels)


# --------------------------------------------------------------------------- image helpers
def _grayscale(image: np.ndarray, what: str = "image") -> np.ndarray:
    """2-D float image scaled to about [0, 1] (1st-99.8th percentile); RGB -> luminance."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        from .data import luminance

        image = luminance(image)
    elif image.ndim != 2:
        raise ValueError(
            f"{what} has shape {image.shape}; give a 2-D image (rows, cols) or RGB (rows, cols, 3). "
            "For a 3-D stack, annotate and convert one slice at a time"
        )
    image = image.astype(np.float64, copy=False)
    if not np.all(np.isfinite(image)):
        image = np.nan_to_num(image, nan=float(np.nanmedian(image)))
    lo, hi = np.percentile(image, (1, 99.8))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _central_part(corners: np.ndarray, sl: tuple, shape: tuple) -> np.ndarray:
    """Mask of the box shrunk to half its size about its centre (in crop coordinates)."""
    centre = corners.mean(axis=0)
    small = centre + 0.5 * (corners - centre) - [sl[0].start, sl[1].start]
    core = np.zeros(shape, bool)
    rr, cc = draw.polygon(small[:, 0], small[:, 1], shape=shape)
    core[rr, cc] = True
    return core


def _box_object(gray: np.ndarray, corners: np.ndarray, index: int) -> np.ndarray | None:
    """Object inside one box: Otsu within the box (plus a margin), component at the centre.

    Returns a boolean mask of ``gray``'s shape, or None when nothing is found.
    """
    h, w = gray.shape
    box = np.zeros((h, w), bool)
    rr, cc = draw.polygon(corners[:, 0], corners[:, 1], shape=(h, w))
    if len(rr) == 0:
        return None
    box[rr, cc] = True
    r0, r1 = rr.min(), rr.max() + 1
    c0, c1 = cc.min(), cc.max() + 1
    margin = max(2, int(0.25 * max(r1 - r0, c1 - c0)))
    sl = (
        slice(max(0, r0 - margin), min(h, r1 + margin)),
        slice(max(0, c0 - margin), min(w, c1 + margin)),
    )
    crop = filters.gaussian(gray[sl], sigma=1.0)
    inbox = box[sl]
    values = crop[inbox]
    if np.ptp(crop) < 1e-6 or len(values) < 4:
        return None
    # polarity: the object is whatever differs from the box border (ring around it)
    ring = ndi.binary_dilation(inbox, iterations=2) & ~ndi.binary_erosion(inbox, iterations=1)
    ellipse = np.zeros_like(inbox)
    er, ec = draw.polygon(
        *(_ellipse_polygon(corners) - [sl[0].start, sl[1].start]).T, shape=inbox.shape
    )
    ellipse[er, ec] = True
    if ellipse.sum() and crop[ellipse].mean() < crop[ring].mean():
        crop = crop.max() - crop
    # Otsu over box + margin; lowered to the midpoint between the box centre's level and
    # the box border's level when that is lower (a dim object beside a bright neighbour)
    core = _central_part(corners, sl, inbox.shape)
    centre_level = float(np.median(crop[core])) if core.any() else float(crop[inbox].max())
    border_level = float(np.median(crop[ring]))
    threshold = min(filters.threshold_otsu(crop), 0.5 * (centre_level + border_level))
    mask = (crop > threshold) & inbox
    comps, n = ndi.label(mask)
    if n == 0:
        return None
    centre = np.round(corners.mean(axis=0) - [sl[0].start, sl[1].start]).astype(int)
    centre = np.clip(centre, 0, np.array(crop.shape) - 1)
    pick = comps[tuple(centre)]
    if pick == 0:
        # the largest component that reaches the central part of the box
        ids, counts = np.unique(comps[core & (comps > 0)], return_counts=True)
        if len(ids) == 0:
            return None
        sizes = ndi.sum_labels(np.ones_like(comps), comps, ids)
        pick = int(ids[np.argmax(sizes)])
    obj = ndi.binary_fill_holes(comps == pick)
    out = np.zeros((h, w), bool)
    out[sl] = obj
    return out


# --------------------------------------------------------------------------- boxes
def boxes_to_labels(
    boxes: Sequence,
    shape: Sequence[int],
    *,
    mode: str = "fill",
    image: np.ndarray | None = None,
    scale: Sequence[float] | None = None,
) -> np.ndarray:
    """Turn boxes (rectangles, rotated too) into an instance label image.

    Parameters
    ----------
    boxes : list
        Each box is 4 corners in order around the box (any orientation, as napari's
        rectangle shapes), 2 opposite corners of an axis-aligned box, or a
        ``("rectangle", corners)`` pair. In a 3-D image corners are (z, row, col) on one plane.
    shape : tuple
        Shape of the output (the image's shape without the RGB axis).
    mode : {"fill", "object"}
        ``"fill"``: the whole box. ``"object"``: the object inside the box, found from
        ``image`` (smoothed with a margin around the box): Otsu threshold of the box's
        pixels (bright objects; inverted when the box centre is darker than its border), the component
        at the box centre (else the largest one reaching the central half of the box),
        holes filled, clipped to the box. When nothing is found the ellipse inscribed in
        the box is used, with a warning.
    image : ndarray, optional
        Required for ``mode="object"``; 2-D, RGB, or a 3-D stack of ``shape``.
    scale : tuple, optional
        Pixel spacing; accepted for symmetry (boxes are in data coordinates).

    Returns
    -------
    labels : ndarray
        Box ``i`` gets id ``i + 1``; later boxes win where they overlap.
    """
    shape = _check_shape(shape)
    check_scale(scale, len(shape))
    if mode not in ("fill", "object"):
        raise ValueError(f"mode must be 'fill' or 'object', not {mode!r}")
    gray = None
    if mode == "object":
        if image is None:
            raise ValueError("mode='object' finds the object in the image: pass image=...")
        image = np.asarray(image)
        spatial = (
            image.shape[: len(shape)]
            if not (image.ndim == 3 and len(shape) == 2)
            else image.shape[:2]
        )
        if tuple(spatial) != shape:
            raise ValueError(
                f"image shape {image.shape} does not match the label shape {shape}; "
                "pass shape=image.shape (image.shape[:2] for RGB)"
            )
        gray = [_grayscale(p) for p in image] if len(shape) == 3 else _grayscale(image)
    labels = np.zeros(shape, dtype=np.uint32 if len(boxes) >= 65535 else np.uint16)
    n_outside, fallback = 0, []
    for index, item in enumerate(boxes):
        kind, verts = _split_shape(item, index)
        if kind not in ("rectangle", "polygon"):
            raise ValueError(f"box {index} is a {kind!r}; boxes are rectangles (4 corners)")
        plane, verts = _plane_of(verts, shape, index)
        corners = _check_polygon(_box_corners(verts, index), index, "box")
        if not _plane_ok(plane, shape):
            n_outside += 1
            continue
        target = labels if plane is None else labels[plane]
        if mode == "fill":
            if _fill(labels, plane, corners, index + 1) == 0:
                n_outside += 1
            continue
        g = gray if plane is None else gray[plane]
        obj = _box_object(g, corners, index)
        if obj is None or not obj.any():
            fallback.append(index)
            ellipse = _ellipse_polygon(corners)
            rr, cc = draw.polygon(ellipse[:, 0], ellipse[:, 1], shape=target.shape)
            if len(rr) == 0:
                if _fill(labels, plane, corners, index + 1) == 0:
                    n_outside += 1
                continue
            target[rr, cc] = index + 1
        else:
            target[obj] = index + 1
    if fallback:
        warnings.warn(
            f"no object found in boxes {fallback[:10]} (the box looks uniform); used the "
            "ellipse inscribed in each box instead",
            UserWarning,
            stacklevel=2,
        )
    if n_outside:
        warnings.warn(
            f"{n_outside} boxes lie outside the image and were skipped", UserWarning, stacklevel=2
        )
    return as_label_dtype(labels)


# --------------------------------------------------------------------------- outlines
def _inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Points whose nearest pixel lies in the image."""
    idx = np.round(points)
    return np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)


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
    shape = _check_shape(shape)
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
    inside = _inside(points, shape)
    _warn_outside(int(np.sum(~inside)), "outline points")
    points, object_ids = points[inside], object_ids[inside]
    labels = np.zeros(shape, dtype=np.uint16)
    uniq = np.unique(object_ids)
    if len(uniq) >= 65535:
        labels = labels.astype(np.uint32)
    for label, oid in enumerate(uniq, start=1):
        pts = points[object_ids == oid]
        distinct = np.unique(pts, axis=0)
        if len(distinct) < 3:
            raise ValueError(
                f"object {oid!r} has {len(distinct)} distinct outline points; click at least 3 "
                "points along its boundary (or delete them)"
            )
        if len(shape) == 2:
            labels[_fill_contour(pts, shape)] = label
            continue
        sl, vol = _object_volume(pts, spacing, shape, oid)
        local = np.round(pts).astype(int) - [s.start for s in sl]
        vol[tuple(local.T)] = True  # the keypoints belong to the object
        vol = ndi.binary_fill_holes(_connect_components(vol))
        labels[sl][vol] = label
    return as_label_dtype(labels)


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
            f"object {oid!r}: its outline points lie on one plane across slices, so they enclose "
            "no volume; add points on other slices"
        )
    return hull


# --------------------------------------------------------------------------- clicks
def _split_clicks(
    image: np.ndarray, points: np.ndarray, classes, scale
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate click input; return (gray image, object clicks, background clicks, spacing)."""
    image = np.asarray(image)
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or (len(points) and points.shape[1] not in (2, 3)):
        raise ValueError(f"points must be an (N, 2) array of (row, col); got shape {points.shape}")
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if (image.ndim == 3 and not rgb) or image.ndim > 3 or (len(points) and points.shape[1] == 3):
        raise ValueError(
            f"clicks are converted in 2-D only (image shape {image.shape}); for a 3-D stack "
            "convert one slice at a time, or outline 3-D objects with outline_to_labels"
        )
    gray = _grayscale(image)
    spacing = np.asarray(check_scale(scale, 2))
    if classes is None:
        is_bg = np.zeros(len(points), bool)
    else:
        classes = np.asarray(classes, dtype=object)
        if classes.shape != (len(points),):
            raise ValueError(
                f"classes must give one class per point ({len(points)}), got shape {classes.shape}"
            )
        is_bg = np.array([str(c).strip().lower() == "background" for c in classes], bool)
    if len(points) and not np.all(np.isfinite(points)):
        raise ValueError("some clicks have NaN or infinite coordinates; remove them")
    inside = _inside(points, gray.shape) if len(points) else np.zeros(0, bool)
    _warn_outside(int(np.sum(~inside)), "clicks")
    obj = np.round(points[inside & ~is_bg]).astype(int).reshape(-1, 2)
    bg = np.round(points[inside & is_bg]).astype(int).reshape(-1, 2)
    return gray, obj, bg, spacing


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
    gray, obj, bg, spacing = _split_clicks(image, points, classes, scale)
    if max_radius is None:
        max_radius = estimate_object_radius(obj, gray.shape, scale=spacing)
    elif not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number, not {max_radius!r}")
    result = _click_segmentation(gray, obj, bg, spacing, float(max_radius))
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
    gray, obj, bg, spacing = _split_clicks(image, points, classes, scale)
    if max_radius is None:
        max_radius = estimate_object_radius(obj, gray.shape, scale=spacing)
    elif not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number, not {max_radius!r}")
    max_radius = float(max_radius)
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
