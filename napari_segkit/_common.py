"""Small rules that several layers of napari-segkit share (numpy only; no Qt, no torch).

Each rule is written once here: what kind of image a shape is, which click is a
background click, which integer type a label image gets, how a Stop is asked for, ...
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

#: Class index of pixels that carry no training target (not trained on).
IGNORE_INDEX = -1

#: Sparse training labels (from clicks): no annotation, known background, known object.
SPARSE_IGNORE, SPARSE_BACKGROUND, SPARSE_OBJECT = 0, 1, 2

#: Intensity percentiles mapped to 0 / 1 when an image is normalised for display,
#: annotation or a network (the default of every normalisation).
PERCENTILES = (1.0, 99.8)

#: Class name of a background click (compared after stripping and lower-casing).
BACKGROUND_CLASS = "background"

ProgressCallback = Callable[[int, int], Any]
StopFlag = Callable[[], bool] | threading.Event | None


# --------------------------------------------------------------------------- images
def counted(n: int, noun: str) -> str:
    """``"3 clicks"``, ``"1 click"``: ``n`` and a plural ``noun`` ending in s."""
    return f"{n} {noun if n != 1 else noun.removesuffix('s')}"


def image_kind(shape: Sequence[int]) -> str | None:
    """``"gray"`` (H, W), ``"rgb"`` (H, W, 3|4), ``"stack"`` (Z, Y, X) or ``"rgb_stack"``
    (Z, Y, X, 3|4); None for any other shape.

    A 3-D shape is colour when its last axis holds 3 or 4 values and its first more than
    4 (a stack of at most 4 planes of 3 or 4 columns is not an image anyone segments).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return "gray"
    if len(shape) == 3:
        return "rgb" if shape[-1] in (3, 4) and shape[0] > 4 else "stack"
    if len(shape) == 4 and shape[-1] in (3, 4):
        return "rgb_stack"
    return None


def is_rgb(shape: Sequence[int]) -> bool:
    """Whether the last axis of an image of this shape holds colour channels."""
    return image_kind(shape) in ("rgb", "rgb_stack")


def spatial_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The shape without its colour axis (as a label image of the image has it)."""
    shape = tuple(int(s) for s in shape)
    return shape[:-1] if is_rgb(shape) else shape


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey value of an RGB(A) image (ITU-R 601 weights), float32."""
    rgb = rgb[..., :3].astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def is_brightfield(image: np.ndarray) -> bool:
    """Guess whether an RGB (or gray) image is brightfield (dark objects on a bright background).

    Rule: the median luminance lies above the midpoint of the 1st and 99th percentiles,
    i.e. most of the field is bright. Fluorescence images have a dark majority (background)
    and bright objects; H&E or other stained brightfield images the opposite.
    """
    lum = luminance(image) if image.ndim == 3 else image.astype(np.float32)
    flat = lum.ravel()
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000 + 1]
    lo, med, hi = np.percentile(flat, [1.0, 50.0, 99.0])
    return bool(med > 0.5 * (lo + hi))


# --------------------------------------------------------------------------- clicks
def is_background(value: Any) -> bool:
    """Whether a click's class names the background (``" Background "`` does too)."""
    return str(value).strip().lower() == BACKGROUND_CLASS


def background_mask(classes: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Boolean (n,) mask of the background clicks among ``n`` clicks; None: no background."""
    if classes is None:
        return np.zeros(n, bool)
    return np.array([is_background(c) for c in classes], bool)


def classes_of(features: Any) -> np.ndarray | None:
    """The ``class`` column of a points table (napari ``layer.features``) as strings, or None."""
    if features is None or "class" not in features:
        return None
    return features["class"].astype(str).to_numpy()


# --------------------------------------------------------------------------- labels
def label_dtype(max_id: int) -> type:
    """Integer type of a label image whose largest id is ``max_id``: uint16 when it fits,
    else uint32 (uint64 beyond)."""
    if max_id < np.iinfo(np.uint16).max:
        return np.uint16
    if max_id <= np.iinfo(np.uint32).max:
        return np.uint32
    return np.uint64


def as_label_dtype(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as uint16 when its largest id fits, else uint32.

    Negative values are rejected: label images hold 0 for background and 1..N.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return labels.astype(np.uint16)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(
            f"label image has negative values (min {lo}); use 0 for background and 1..N for objects"
        )
    return labels.astype(label_dtype(hi), copy=False)


def check_scale(scale: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Validate a per-axis pixel spacing (napari ``layer.scale``); ``None`` means 1 per axis.

    A scale with more entries than ``ndim`` keeps its last ``ndim`` entries (napari puts
    leading axes such as time or channel first).
    """
    if scale is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in np.ravel(np.asarray(scale, dtype=float)))
    if len(values) < ndim:
        raise ValueError(
            f"scale {values} has {len(values)} entries but the data has {ndim} dimensions; "
            "give one spacing per axis, e.g. (z, y, x)"
        )
    values = values[-ndim:]
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale {values} must be positive finite spacings, one per axis")
    return values


# --------------------------------------------------------------------------- stopping
class Cancelled(RuntimeError):
    """Raised when a job (a prediction) is stopped through its ``stop`` flag."""


def is_stopped(stop: StopFlag) -> bool:
    """Whether ``stop`` (None, a ``threading.Event`` or a callable returning True) is set."""
    if stop is None:
        return False
    if isinstance(stop, threading.Event) or hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


# --------------------------------------------------------------------------- moved names
def moved_names(old_module: str, homes: dict[str, ModuleType]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a deprecated module: each name in ``homes`` is read from its
    new home module, with a ``DeprecationWarning`` that says where to import it from."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(f"{old_module}.{name} is deprecated; import it from {home.__name__}",
                      DeprecationWarning, stacklevel=2)
        return getattr(home, name)

    return __getattr__
