"""Input normalisation, patch sampling and augmentation (numpy only, no torch).

:func:`prepare_input` is THE function that turns a user image into network input; training
and prediction both call it with the normalisation dict stored in the model file, so a
model always sees its inputs prepared the same way.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -1
DEFAULT_NORMALIZATION: dict = {"method": "percentile", "low": 1.0, "high": 99.8}


# --------------------------------------------------------------------------- normalisation
def _check_normalization(normalization: dict | None) -> dict:
    norm = dict(DEFAULT_NORMALIZATION if normalization is None else normalization)
    method = norm.get("method", "percentile")
    if method not in ("percentile", "none"):
        raise ValueError(
            f"unknown normalization method {method!r}; use 'percentile' or 'none'"
        )
    if method == "percentile":
        lo, hi = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(
                f"normalization percentiles must satisfy 0 <= low < high <= 100, got {lo}, {hi}"
            )
    return norm


def _percentile_normalize(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the ``low`` / ``high`` percentiles of ``x`` to 0 / 1 (float32, not clipped)."""
    x = x.astype(np.float32, copy=False)
    # percentiles of a sub-sample are as good and much faster on big images
    flat = x.ravel()
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000 + 1]
    lo, hi = np.percentile(flat, [low, high])
    scale = hi - lo
    if scale <= 1e-12:  # constant image: keep it at 0
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / scale).astype(np.float32, copy=False)


def is_brightfield(image: np.ndarray) -> bool:
    """Guess whether an RGB (or gray) image is brightfield (dark objects on a bright background).

    Rule: the median luminance lies above the midpoint of the 1st and 99th percentiles,
    i.e. most of the field is bright. Fluorescence images have a dark majority (background)
    and bright objects; H&E or other stained brightfield images the opposite.
    """
    lum = _luminance(image) if image.ndim == 3 else image.astype(np.float32)
    flat = lum.ravel()
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000 + 1]
    lo, med, hi = np.percentile(flat, [1.0, 50.0, 99.0])
    return bool(med > 0.5 * (lo + hi))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb[..., :3].astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def prepare_input(
    image: np.ndarray, in_channels: int = 1, normalization: dict | None = None
) -> np.ndarray:
    """Turn a 2-D gray (H, W) or colour (H, W, 3|4) image into float32 network input (C, H, W).

    Parameters
    ----------
    image : ndarray
        Grayscale ``(H, W)`` or RGB(A) ``(H, W, 3|4)`` (alpha is dropped).
    in_channels : int
        Channels the model expects. 1-channel models get colour images as luminance,
        inverted when the image looks like brightfield (see :func:`is_brightfield`) so
        that nuclei are bright as in fluorescence. 3-channel models get RGB as it is (each
        channel normalised) and grayscale repeated three times.
    normalization : dict
        ``{"method": "percentile", "low": 1.0, "high": 99.8}`` (per image, per channel;
        the low / high percentiles are mapped to 0 / 1, values are not clipped) or
        ``{"method": "none"}`` (cast to float32 only).

    Raises
    ------
    ValueError
        For NaN / infinite values, unsupported shapes or channel counts.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise ValueError(f"image must be a real numeric array, got dtype {image.dtype}")
    norm = _check_normalization(normalization)
    in_channels = int(in_channels)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4:
        rgb = True
    elif image.ndim == 2:
        rgb = False
    else:
        raise ValueError(
            f"expected a 2-D image (H, W) or a colour image (H, W, 3), got shape {image.shape}; "
            "for a 3-D stack pass one plane at a time, and move a channel axis last"
        )
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image is empty (shape {image.shape})")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError(
            "image contains NaN or infinite values; replace them (e.g. np.nan_to_num) "
            "or crop them away before segmenting"
        )
    if rgb:
        image = image[..., :3]
        if in_channels == 1:
            lum = _luminance(image)
            if is_brightfield(image):
                lum = lum.max() - lum
            chans = [lum]
        elif in_channels == 3:
            chans = [image[..., c] for c in range(3)]
        else:
            raise ValueError(
                f"a colour image cannot feed a model with {in_channels} input channels; "
                "use a 1- or 3-channel model"
            )
    else:
        chans = [image]
    if norm["method"] == "percentile":
        out = [_percentile_normalize(c, float(norm["low"]), float(norm["high"])) for c in chans]
    else:
        out = [c.astype(np.float32, copy=False) for c in chans]
    if len(out) == 1 and in_channels > 1:
        out = out * in_channels
    return np.ascontiguousarray(np.stack(out, axis=0), dtype=np.float32)
