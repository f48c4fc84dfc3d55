"""Polygons, rectangles, ellipses and boxes -> instance label images (2-D, or one plane of a
3-D image). See :mod:`napari_segkit.annotations` for the conventions."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, filters

from .._common import as_label_dtype, check_scale, label_dtype
from .common import check_shape, grayscale, is_flat

__all__ = ["FILLABLE_SHAPES", "boxes_to_labels", "polygons_to_labels"]

#: Shape types that enclose an area and can be filled.
FILLABLE_SHAPES = ("polygon", "rectangle", "ellipse")

_ELLIPSE_VERTICES = 64


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
    if not np.isfinite(verts).all():
        raise ValueError(f"{kind} {index} has NaN or infinite coordinates; draw the shape "
                         "again or delete it")
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


def _is_self_intersecting(verts: np.ndarray) -> bool:
    """True when two edges of the closed polygon properly cross each other.

    GEOS (through shapely) decides with robust orientation predicates, so neighbouring
    edges of a finely sampled outline (cross products of ~1e-16) never count, and its
    sweep is O(n log n). A polygon that is not simple is noded; it crosses itself when the
    noding adds a point that is not one of its vertices. A vertex that touches another
    edge, or an edge that runs back along the previous one, adds none: that is no crossing.
    """
    import shapely

    if len(verts) < 4:
        return False
    ring = shapely.linearrings(verts)
    if shapely.is_simple(ring):
        return False
    nodes = shapely.get_coordinates(shapely.node(ring))
    vertices = {tuple(v) for v in verts.tolist()}
    return any(tuple(p) not in vertices for p in nodes.tolist())


def _check_polygon(verts: np.ndarray, index: int, what: str = "polygon") -> np.ndarray:
    """Reject NaN, < 3 distinct vertices and zero area; drop a repeated closing vertex
    (only an exact repeat: one merely close to the first vertex is an edge skimage fills
    along, e.g. (1e-70, 0) ... (0, 0) paints pixel (0, 1) that the polygon without it does not)."""
    if not np.all(np.isfinite(verts)):
        raise ValueError(f"{what} {index} has NaN or infinite coordinates; remove or redraw it")
    if len(verts) > 1 and np.array_equal(verts[0], verts[-1]):
        verts = verts[:-1]
    if is_flat(verts):  # fewer than 3 vertices off one line: say which problem it is
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


#: Above this many vertices polygons are filled by :func:`_scanline_polygon`.
_SCANLINE_VERTICES = 1000


def _scanline_polygon(verts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centres lie inside the closed polygon (even-odd rule), by scanlines.

    The work grows with the number of (edge, row) crossings, not with vertices x pixels
    as ``skimage.draw.polygon``'s point-in-polygon test does, so an outline of 100k
    vertices fills in milliseconds. An edge counts for row ``r`` when its end points lie
    on both sides of it (half-open: ``y0 <= r < y1``).
    """
    y0, x0 = verts[:, 0], verts[:, 1]
    y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
    top, bottom = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(top), 0).astype(np.int64)
    last = np.minimum(np.ceil(bottom) - 1, shape[0] - 1).astype(np.int64)  # rows < bottom
    count = np.maximum(last - first + 1, 0)
    edge = np.repeat(np.arange(len(verts)), count)
    if len(edge) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    row = first[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count))
    t = (row - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # crossings pair up per row (even-odd): fill the pixel centres between each pair
    start, stop = x[0::2], x[1::2]
    row = row[0::2]
    c0 = np.maximum(np.ceil(start), 0).astype(np.int64)
    c1 = np.minimum(np.floor(stop), shape[1] - 1).astype(np.int64)
    n = np.maximum(c1 - c0 + 1, 0)
    rr = np.repeat(row, n)
    cc = np.repeat(c0, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    return rr.astype(np.intp), cc.astype(np.intp)


def _fill(labels: np.ndarray, plane: int | None, verts: np.ndarray, value: int) -> int:
    """Paint the pixels skimage.draw.polygon gives for ``verts`` (a scanline fill with the
    same pixel-centre rule for long outlines); return how many."""
    target = labels if plane is None else labels[plane]
    if len(verts) > _SCANLINE_VERTICES:
        rr, cc = _scanline_polygon(verts, target.shape)
    else:
        rr, cc = draw.polygon(verts[:, 0], verts[:, 1], shape=target.shape)
    target[rr, cc] = value
    return len(rr)


def _plane_ok(plane: int | None, shape: tuple[int, ...]) -> bool:
    return plane is None or 0 <= plane < shape[0]


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
    shape = check_shape(shape)
    check_scale(scale, len(shape))
    labels = np.zeros(shape, dtype=label_dtype(len(polygons)))
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
    shape = check_shape(shape)
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
        gray = [grayscale(p) for p in image] if len(shape) == 3 else grayscale(image)
    labels = np.zeros(shape, dtype=label_dtype(len(boxes)))
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
