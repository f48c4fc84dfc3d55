"""How an image becomes network input: one :class:`Normalization` (numpy only, no torch).

A model file stores its normalisation as a small dict (``Normalization.to_dict``), e.g.
``{"method": "percentile", "low": 1.0, "high": 99.8}``; training and prediction rebuild
it with :meth:`Normalization.from_dict`, so a model always sees its inputs prepared the
same way. Two ways to apply it:

* per image: :func:`prepare_input` (:meth:`Normalization.prepare`) computes the
  percentiles of the image itself;
* fitted once: :meth:`Normalization.fit` computes them over a sample of a whole stack or
  dask array and returns a :class:`FittedNormalization` that maps every plane / block the
  same way (so blocks match the whole image).

Both share one rule for colour images (1-channel models get luminance, inverted when
the image looks like brightfield so that nuclei are bright) and one rule for ``"none"``
(values as they are; inverted luminance shifted to start at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import PERCENTILES, image_kind, is_brightfield, luminance

__all__ = [
    "DEFAULT_NORMALIZATION",
    "FittedNormalization",
    "Normalization",
    "check_image",
    "is_brightfield",
    "luminance",
    "percentile_range",
    "prepare_input",
    "raw_channels",
    "rescale",
    "subsample_planes",
]

METHODS = ("percentile", "none")


@dataclass(frozen=True)
class Normalization:
    """Intensity normalisation settings.

    ``method="percentile"``: per channel, the ``low`` / ``high`` percentiles map to 0 / 1
    (values are not clipped). ``method="none"``: values are cast to float32 as they are.
    """

    method: str = "percentile"
    low: float = PERCENTILES[0]
    high: float = PERCENTILES[1]

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown normalization method {self.method!r}; use 'percentile' or 'none'"
            )
        if self.method == "percentile" and not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(
                "normalization percentiles must satisfy 0 <= low < high <= 100, "
                f"got {self.low}, {self.high}"
            )

    @classmethod
    def from_dict(cls, settings: dict | None) -> Normalization:
        """From a model file's dict (None: the default percentile normalisation)."""
        settings = dict(settings or {})
        method = settings.get("method", "percentile")
        if method != "percentile":
            return cls(method)
        return cls(method, float(settings.get("low", PERCENTILES[0])),
                   float(settings.get("high", PERCENTILES[1])))

    def to_dict(self) -> dict:
        """The dict a model file stores (``{"method": "none"}`` has no percentiles)."""
        if self.method != "percentile":
            return {"method": self.method}
        return {"method": self.method, "low": self.low, "high": self.high}

    def channel_range(self, raw: np.ndarray, inverted: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel values that map to 0 and 1, from raw channels (C, ...)."""
        if self.method == "percentile":
            return percentile_range(raw, self.low, self.high)
        # "none": the values as they are; an inverted luminance is shifted to start at 0
        flat = np.asarray(raw).reshape(raw.shape[0], -1)
        low = flat.min(axis=1).astype(np.float64) if inverted else np.zeros(raw.shape[0])
        return low, low + 1.0

    def prepare(self, image: np.ndarray, in_channels: int = 1) -> np.ndarray:
        """A 2-D gray (H, W) or colour (H, W, 3|4) image -> float32 network input (C, H, W),
        normalised with the image's own percentiles. See :func:`prepare_input`."""
        image = check_image(image)
        if image_kind(image.shape) not in ("gray", "rgb"):
            raise ValueError(
                f"expected a 2-D image (H, W) or a colour image (H, W, 3), got shape {image.shape}; "
                "for a 3-D stack pass one plane at a time, and move a channel axis last"
            )
        x, inverted = raw_channels(image, in_channels)
        lo, hi = self.channel_range(x, inverted)
        return rescale(x, lo, hi)

    def fit(self, sample: np.ndarray, in_channels: int, rgb: bool) -> FittedNormalization:
        """Fix the mapping from ``sample``: a representative (sub-sampled) stack of planes
        (Z, H, W) or (Z, H, W, 3|4) of the whole data set (see :func:`subsample_planes`)."""
        sample = np.asarray(sample)
        invert = bool(rgb and in_channels == 1
                      and is_brightfield(sample.reshape(-1, 1, sample.shape[-1])))
        raw = np.concatenate(
            [raw_channels(p, in_channels, invert)[0].reshape(-1, p.shape[0] * p.shape[1])
             for p in sample],
            axis=1,
        )
        low, high = self.channel_range(raw, invert)
        return FittedNormalization(in_channels, rgb, invert, low, high)


DEFAULT_NORMALIZATION: dict = Normalization().to_dict()


@dataclass
class FittedNormalization:
    """A normalisation whose values are fixed (computed once over a stack or dask array).

    Applied plane by plane or block by block, so that every plane / block sees the same
    mapping as the whole image would.
    """

    in_channels: int
    rgb: bool
    invert: bool
    low: np.ndarray  # per prepared channel
    high: np.ndarray

    def apply(self, plane: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3|4) plane -> float32 (C, H, W)."""
        x, _ = raw_channels(plane, self.in_channels, self.invert if self.rgb else False)
        return rescale(x, self.low, self.high)


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
    return Normalization.from_dict(normalization).prepare(image, in_channels)


def check_image(image: Any) -> np.ndarray:
    """The image as an array, or a ValueError that says what is wrong with it (dtype,
    empty, NaN / infinite values)."""
    image = np.asarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise ValueError(f"image must be a real numeric array, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError(
            "image contains NaN or infinite values; replace them (e.g. np.nan_to_num) "
            "or crop them away before segmenting"
        )
    return image


def percentile_range(x: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``low`` / ``high`` percentiles of ``x`` (C, ...), from a sub-sample of
    at most ~1 M values per channel (as good as all of them, and much faster)."""
    flat = np.asarray(x).reshape(x.shape[0], -1)
    if flat.shape[1] > 1_000_000:
        flat = flat[:, :: flat.shape[1] // 1_000_000 + 1]
    lo, hi = np.percentile(flat, [low, high], axis=1)
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def rescale(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """In place on float32 ``x`` (C, H, W): map ``lo`` / ``hi`` (per channel) to 0 / 1, not
    clipped; a channel with ``hi == lo`` (constant) becomes 0.

    Constant means a range float32 cannot resolve (relative to the values), not a small
    one: intensities spanning 1e-15 are rescaled like any others."""
    lo64, hi64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    scale = hi64 - lo64
    unresolved = np.maximum(np.abs(lo64), np.abs(hi64)) * 1e-6
    constant = ~np.isfinite(scale) | (scale <= np.maximum(unresolved, 1e-30))
    scale = np.where(constant, np.inf, scale).astype(np.float32)  # x / inf = 0
    x -= np.asarray(lo, np.float32)[:, None, None]
    x /= scale[:, None, None]
    return x


def raw_channels(
    plane: np.ndarray, in_channels: int = 1, invert: bool | None = None
) -> tuple[np.ndarray, bool]:
    """Un-normalised float32 network input (C, H, W) of a gray (H, W) or colour
    (H, W, 3|4) plane, and whether it was inverted.

    1-channel models get colour as luminance, negated when brightfield (``invert``;
    ``None``: guessed per plane with :func:`is_brightfield`) so that nuclei are bright;
    3-channel models get RGB as it is and grayscale repeated three times.
    """
    in_channels = int(in_channels)
    if plane.ndim == 3:
        rgb = plane[..., :3]
        if in_channels == 1:
            if invert is None:
                invert = is_brightfield(rgb)
            lum = luminance(rgb)
            return (np.negative(lum, out=lum) if invert else lum)[None], bool(invert)
        if in_channels == 3:
            return np.stack([rgb[..., c] for c in range(3)]).astype(np.float32), False
        raise ValueError(
            f"a colour image cannot feed a model with {in_channels} input channels; "
            "use a 1- or 3-channel model"
        )
    x = np.array(plane, dtype=np.float32, copy=True)[None]
    return (np.repeat(x, in_channels, axis=0) if in_channels > 1 else x), False


def subsample_planes(stack: Any, target: int = 4_000_000) -> np.ndarray:
    """A strided sub-sample of a (Z, H, W[, 3]) numpy or dask stack, about ``target`` pixels
    (what :meth:`Normalization.fit` needs)."""
    z, h, w = stack.shape[:3]
    step = max(1, int(math.ceil(math.sqrt(z * h * w / target))))
    zstep = max(1, int(math.ceil(z * ((h + step - 1) // step) * ((w + step - 1) // step) / target)))
    sample = stack[::zstep, ::step, ::step]
    if hasattr(sample, "compute"):
        sample = sample.compute()
    return np.asarray(sample)
