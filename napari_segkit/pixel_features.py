"""Multiscale per-pixel features for the instant pixel classifier (numpy / scipy only).

The filter bank of Trainable Weka and ilastik, kept small so that a 1024x1024 image
takes a few tenths of a second on 2 cores: the intensity, and per Gaussian scale the
smoothed intensity, gradient magnitude and the two Hessian eigenvalues, all float32.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from scipy import ndimage as ndi

__all__ = ["DEFAULT_SIGMAS", "feature_names", "pixel_features", "check_image", "check_sigmas", "fingerprint"]

#: Gaussian scales (pixels) of the features (a subset of ilastik's default scales).
DEFAULT_SIGMAS = (0.7, 1.6, 3.5, 8.0)
_TRUNCATE = 3.0  # Gaussian kernels reach 3 sigma
_PER_SIGMA = 4  # smoothed intensity, gradient magnitude, two Hessian eigenvalues


# ----------------------------------------------------------------------------- input
def check_image(image) -> np.ndarray:
    """Float32 ``(H, W, C)`` of a gray ``(H, W)`` / ``(H, W, 1)`` or RGB(A) ``(H, W, 3|4)`` image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        image = image[..., :3]
    elif image.ndim == 2:
        image = image[..., None]
    else:
        raise ValueError(
            f"image must be 2-D gray (H, W) or RGB (H, W, 3); got shape {image.shape}. "
            "For a stack, classify one slice at a time"
        )
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"image must hold numbers, not {image.dtype}")
    if np.iscomplexobj(image):
        raise ValueError("image must be real-valued, not complex")
    if min(image.shape[:2]) < 2:
        raise ValueError(f"image is too small to classify: shape {image.shape[:2]}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise ValueError(
            "image contains NaN or infinite values; replace them (e.g. np.nan_to_num) first"
        )
    return image


def _normalise(image: np.ndarray) -> np.ndarray:
    """Map each channel's 1st..99.8th percentile to 0..1 (float32, not clipped)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 250_000)))
    sample = image[::step, ::step].reshape(-1, image.shape[-1])
    lo, hi = np.percentile(sample, [1.0, 99.8], axis=0).astype(np.float32)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    return (image - lo) / span


def _luminance(image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return image[..., 0]
    return image @ np.array([0.299, 0.587, 0.114], np.float32)


# -------------------------------------------------------------------------- features
def feature_names(sigmas: Sequence[float] = DEFAULT_SIGMAS, rgb: bool = False) -> list[str]:
    """Names of the columns :func:`pixel_features` returns, in order."""
    names = ["intensity"]
    names += [f"{kind}_s{s:g}" for s in sigmas
              for kind in ("gauss", "gradient", "hessian_max", "hessian_min")]
    if rgb:
        names += [f"{c}_gauss_s{s:g}" for c in "rgb" for s in (sigmas[0], sigmas[-1])]
    return names


def _scale_features(plane: np.ndarray, sigma: float, out: np.ndarray) -> None:
    """Write the 4 features of one scale into ``out`` (H, W, 4)."""
    g = ndi.gaussian_filter(plane, sigma, truncate=_TRUNCATE)
    gy, gx = np.gradient(g)
    out[..., 0] = g
    out[..., 1] = np.hypot(gx, gy) * sigma
    gyy, gxy = np.gradient(gy)
    gxx = np.gradient(gx, axis=1)
    s2 = np.float32(sigma**2)
    half_trace = gxx + gyy
    half_trace *= 0.5 * s2
    gxx -= gyy
    gxx *= 0.5 * s2
    gxy *= s2
    root = np.hypot(gxx, gxy)
    out[..., 2] = half_trace + root
    out[..., 3] = half_trace - root


def pixel_features(
    image, sigmas: Sequence[float] = DEFAULT_SIGMAS, n_jobs: int = 2
) -> np.ndarray:
    """Per-pixel features of a gray or RGB image, ``(H, W, F)`` float32.

    The (luminance) intensity, and for each scale: Gaussian-smoothed intensity, gradient magnitude and the two Hessian
    eigenvalues (scale-normalised), computed on the luminance of RGB images; RGB images
    add each channel smoothed at the finest and coarsest scale (colour). The image is
    first normalised per channel (1st..99.8th percentile -> 0..1). ``n_jobs`` threads
    compute the scales in parallel. :func:`feature_names` names the columns.
    """
    sigmas = check_sigmas(sigmas)
    norm = _normalise(check_image(image))
    return _features(norm, sigmas, n_jobs)


def _features(norm: np.ndarray, sigmas: tuple[float, ...], n_jobs: int = 2) -> np.ndarray:
    rgb = norm.shape[-1] == 3
    h, w = norm.shape[:2]
    out = np.empty((h, w, len(feature_names(sigmas, rgb))), np.float32)
    lum = _luminance(norm)
    out[..., 0] = lum
    tasks = [
        partial(_scale_features, lum, sigma, out[..., 1 + i * _PER_SIGMA:1 + (i + 1) * _PER_SIGMA])
        for i, sigma in enumerate(sigmas)
    ]
    if rgb:
        k = 1 + len(sigmas) * _PER_SIGMA
        for c in range(3):
            for sigma in (sigmas[0], sigmas[-1]):
                tasks.append(partial(_smooth_into, norm[..., c], sigma, out[..., k]))
                k += 1
    if n_jobs > 1:
        with ThreadPoolExecutor(n_jobs) as pool:  # numpy and scipy.ndimage release the GIL
            list(pool.map(lambda task: task(), tasks))
    else:
        for task in tasks:
            task()
    return out


def _smooth_into(plane: np.ndarray, sigma: float, out: np.ndarray) -> None:
    out[...] = ndi.gaussian_filter(plane, sigma, truncate=_TRUNCATE)


def check_sigmas(sigmas) -> tuple[float, ...]:
    """Validate Gaussian scales: positive numbers, returned sorted."""
    try:
        values = tuple(float(s) for s in sigmas)
    except TypeError as exc:
        raise ValueError(
            f"sigmas must be a sequence of positive numbers, e.g. {DEFAULT_SIGMAS}"
        ) from exc
    if not values or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"sigmas must be positive numbers, e.g. {DEFAULT_SIGMAS}; got {sigmas}")
    return tuple(sorted(values))


def fingerprint(image: np.ndarray) -> tuple:
    """Shape, dtype and a hash of the content of a numeric array (a cache key)."""
    data = np.ascontiguousarray(image)
    digest = hashlib.blake2b(data.view(np.uint8).ravel(), digest_size=16).hexdigest()
    return data.shape, data.dtype.str, digest


