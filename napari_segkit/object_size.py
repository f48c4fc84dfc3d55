"""Object size: the diameter of labelled objects, its estimate from a prediction, and
image / probability resizing for test-time zoom (numpy and scipy only).

The *diameter* of an object is the diameter of the disk of the same area,
``2 * sqrt(area / pi)`` (as in Cellpose). A model file records the median diameter of
its training objects (:attr:`napari_segkit.model_io.SegModel.object_diameter`); an image
whose nuclei are much larger or smaller is zoomed so that they match it (see
:func:`napari_segkit.prediction.predict`, ``diameter=``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

#: No zoom when the estimated diameter is within this factor of the model's.
ZOOM_TOLERANCE = 1.25
#: Test-time zoom is clipped to this range.
ZOOM_LIMITS = (0.2, 2.0)
#: Equivalent diameter / twice the inscribed radius of real nuclei: nuclei are not
#: disks. Median over the ground truth of the 21 training images (train/ + sample_512):
#: 1.22 (per image 1.09-1.66).
SHAPE_FACTOR = 1.2


def object_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameter ``2 * sqrt(area / pi)`` of every object of a label image."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() <= 0:
        return np.zeros(0)
    areas = np.bincount(labels.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    return 2.0 * np.sqrt(areas / np.pi)


def median_object_diameter(label_images: Iterable[np.ndarray]) -> float | None:
    """Median equivalent diameter over the objects of several label images (None if
    there are none)."""
    d = [object_diameters(lb) for lb in label_images if lb is not None]
    d = np.concatenate(d) if d else np.zeros(0)
    return float(np.median(d)) if d.size else None


def estimate_diameter(foreground: np.ndarray, min_area: int = 12) -> float | None:
    """Typical object (equivalent) diameter in a foreground mask: twice the median, over
    connected foreground regions of at least ``min_area`` pixels, of the region's
    largest distance to the background (its inscribed radius), times
    :data:`SHAPE_FACTOR`.

    Robust to the two instance errors a first pass at the wrong scale makes: an
    over-split large nucleus is still one foreground region, and a clump of touching
    nuclei has an inscribed radius close to that of one nucleus. None when there is no
    such region.
    """
    fg = np.asarray(foreground, bool)
    if fg.ndim != 2:
        raise ValueError(f"foreground must be a 2-D mask, got shape {fg.shape}")
    regions, n = ndi.label(fg)
    if n == 0:
        return None
    areas = np.bincount(regions.ravel())[1:]
    dist = ndi.distance_transform_edt(np.pad(fg, 1, mode="edge"))[1:-1, 1:-1]
    radius = ndi.maximum(dist, regions, np.arange(1, n + 1))
    radius = np.asarray(radius)[areas >= min_area]
    if radius.size == 0:
        return None
    # the inscribed radius of a pixelated disk of diameter D is about D / 2 + 0.5
    return float(max(SHAPE_FACTOR * 2.0 * (np.median(radius) - 0.5), 1.0))


def zoom_for(diameter: float, model_diameter: float, tolerance: float = ZOOM_TOLERANCE,
             limits: tuple[float, float] = ZOOM_LIMITS) -> float:
    """Zoom that brings objects of ``diameter`` to the model's ``model_diameter``; 1.0
    when they are within ``tolerance`` of each other; clipped to ``limits``."""
    if diameter <= 0 or model_diameter <= 0:
        raise ValueError(f"diameters must be positive, got {diameter} and {model_diameter}")
    zoom = model_diameter / diameter
    if 1.0 / tolerance <= zoom <= tolerance:
        return 1.0
    return float(np.clip(zoom, *limits))


def zoomed_shape(shape: tuple[int, int], zoom: float) -> tuple[int, int]:
    return tuple(max(int(round(s * zoom)), 1) for s in shape)  # type: ignore[return-value]


def resize_image(image: np.ndarray, zoom: float) -> np.ndarray:
    """A 2-D gray (H, W) or colour (H, W, C) image resized by ``zoom`` (linear
    interpolation; area-averaged first when shrinking, so small details do not alias).
    float32 result."""
    image = np.asarray(image, dtype=np.float32)
    out_hw = zoomed_shape(image.shape[:2], zoom)
    if zoom < 1.0:
        sigma = [max((1.0 / zoom - 1.0) / 2.0, 0.0)] * 2 + [0.0] * (image.ndim - 2)
        image = ndi.gaussian_filter(image, sigma)
    return _resize_to(image, out_hw)


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(K, h, w) maps resized to (K, *shape) by linear interpolation (class channels
    still sum to one)."""
    probs = np.asarray(probs, np.float32)
    return np.stack([_resize_to(p, shape) for p in probs])


def _resize_to(array: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Linear resampling of the first two axes at pixel centres (edges clamped)."""
    h, w = array.shape[:2]
    ys = (np.arange(out_hw[0], dtype=np.float32) + 0.5) * (h / out_hw[0]) - 0.5
    xs = (np.arange(out_hw[1], dtype=np.float32) + 0.5) * (w / out_hw[1]) - 0.5
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = np.clip(ys - y0, 0.0, 1.0).astype(np.float32)
    wx = np.clip(xs - x0, 0.0, 1.0).astype(np.float32)
    extra = (None,) * (array.ndim - 2)
    top = array[y0][:, x0] * (1 - wx)[(None, slice(None), *extra)] + \
        array[y0][:, x1] * wx[(None, slice(None), *extra)]
    bottom = array[y1][:, x0] * (1 - wx)[(None, slice(None), *extra)] + \
        array[y1][:, x1] * wx[(None, slice(None), *extra)]
    wy = wy[(slice(None), None, *extra)]
    return (top * (1 - wy) + bottom * wy).astype(np.float32)
