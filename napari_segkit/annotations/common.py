"""Rules every annotation converter shares: output shapes, points inside the image, the
warning for skipped points, flat (zero-area) outlines, and the gray image annotations are
grown on."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .._common import PERCENTILES, counted, is_rgb, luminance

__all__ = ["check_shape", "click_threshold", "grayscale", "is_flat", "keep_clicked_part",
           "points_inside", "warn_outside"]


def check_shape(shape: Sequence[int] | np.ndarray) -> tuple[int, ...]:
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


def points_inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Points whose nearest pixel lies in the image."""
    idx = np.round(points)
    return np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)


def warn_outside(n_out: int, what: str) -> None:
    """Warn that ``n_out`` annotations (``what``: a plural noun, e.g. "clicks") were left
    out for lying outside the image."""
    if n_out:
        warnings.warn(
            f"{counted(n_out, what)} outside the image {'was' if n_out == 1 else 'were'} "
            "skipped; check that the annotation layer "
            "belongs to this image (same scale and translate)",
            UserWarning,
            stacklevel=3,
        )


def is_flat(points: np.ndarray) -> bool:
    """True when 2-D ``points`` enclose no area: fewer than 3 of them, or all on one line
    (up to rounding: the smallest singular value of the centred points is ~0)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(points) < 3:
        return True
    centred = points - points.mean(axis=0)
    spread = float(np.abs(centred).max())
    return bool(np.linalg.svd(centred, compute_uv=False)[-1] <= 1e-9 * max(1.0, spread))


def grayscale(image: np.ndarray, what: str = "image") -> np.ndarray:
    """2-D float image scaled to about [0, 1] (by :data:`PERCENTILES`, clipped);
    RGB -> luminance. Complex or non-numeric images raise a ValueError."""
    image = np.asarray(image)
    if np.iscomplexobj(image):
        raise ValueError(
            f"{what} is complex ({image.dtype}); annotations are grown on real intensities: "
            "convert it first, e.g. np.abs(image) for the magnitude or image.real"
        )
    if image.dtype != bool and not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"{what} must be a numeric array, got dtype {image.dtype}")
    if image.ndim == 3 and is_rgb(image.shape):
        image = luminance(image)
    elif image.ndim != 2:
        raise ValueError(
            f"{what} has shape {image.shape}; give a 2-D image (rows, cols) or RGB (rows, cols, 3). "
            "For a 3-D stack, annotate and convert one slice at a time"
        )
    image = image.astype(np.float64, copy=False)
    finite = np.isfinite(image)
    if not finite.any():
        raise ValueError(f"{what} has no finite value (every pixel is NaN or infinite); "
                         "check the image file")
    if not finite.all():
        image = np.nan_to_num(image, nan=float(np.median(image[finite])))
    lo, hi = np.percentile(image, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def click_threshold(window: np.ndarray, core: np.ndarray) -> float:
    """The intensity that separates a clicked object from its surroundings: Otsu's
    threshold of the (smoothed) ``window`` around the click, lowered to halfway between
    the object's level (median of ``core``, the pixels right at the click) and the
    background's (median below Otsu); just under the object's level in a flat window."""
    level = float(np.median(core))
    if np.ptp(window) < 1e-6:
        return level - 1e-6
    from skimage import filters

    otsu = filters.threshold_otsu(window)
    below = window[window <= otsu]
    background = float(np.median(below)) if below.size else float(window.min())
    return min(otsu, 0.5 * (level + background))


def keep_clicked_part(labels: np.ndarray, seeds: np.ndarray, n: int) -> np.ndarray:
    """Per object ``1..n`` of ``labels`` (2-D or 3-D): keep its face-connected component
    that holds its seed (``seeds == id``; the largest one if none does) and fill its holes."""
    from scipy import ndimage as ndi

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
