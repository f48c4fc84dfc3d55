"""Instant pixel classifier: a random forest on multiscale filter features.

The Trainable Weka / ilastik idea: paint a few strokes (or click a few points) per class,
train a random forest on the features of :mod:`napari_segkit.pixel_features` and get a
class map of the whole image in about a second. Used as a live preview while
annotating, as a quick semantic mask, and (through :func:`sparse_labels_from_proba`) as
extra training signal for the UNet.

Scribbles are an integer image of the image's shape: 0 = unlabelled, 1..K = classes
(by convention 1 = background, 2 = nucleus / object). No Qt, no napari, no torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_segkit.pixel_features import (
    DEFAULT_SIGMAS,
    check_image,
    check_sigmas,
    feature_names,
    fingerprint,
    pixel_features,
)

__all__ = [
    "DEFAULT_SIGMAS",
    "SCRIBBLE_CLASSES",
    "PixelClassifier",
    "feature_names",
    "pixel_features",
    "scribbles_from_points",
    "simulate_scribbles",
    "sparse_labels_from_proba",
]

#: Scribble value of each point class name.
SCRIBBLE_CLASSES = {"background": 1, "nucleus": 2}
# sparse-label convention of napari_segkit.annotations (0 unknown, 1 background, 2 object)
_SPARSE_IGNORE, _SPARSE_BACKGROUND, _SPARSE_OBJECT = 0, 1, 2


# ------------------------------------------------------------------------ classifier
class PixelClassifier:
    """A random forest (extremely randomised trees) on multiscale pixel features.

    Parameters
    ----------
    sigmas : Gaussian scales of the features, in pixels.
    n_estimators, max_depth, min_samples_leaf : size of the forest; 20 trees of depth 8
        keep training and prediction of a 1024x1024 image well under a second.
    max_samples : at most this many scribbled pixels are trained on (a seeded random
        subsample), so that big painted areas keep training fast.
    stride : predict every ``stride``-th pixel, interpolate the probabilities linearly,
        and predict again exactly wherever the interpolated confidence is below
        ``refine`` (near class boundaries); ``stride=1`` predicts every pixel.
    refine : see ``stride``.
    random_state : seed of the forest and the subsample: equal seeds, image and
        scribbles give equal predictions.
    n_jobs : threads for the features and the forest.

    The features of the last image are cached (keyed by its content), so a live
    preview that calls ``fit`` and ``predict_proba`` after every stroke computes them
    once. ``to_dict`` / ``from_dict`` keep a trained classifier as plain arrays (its
    settings and training samples; the forest is rebuilt by refitting, in milliseconds).
    """

    def __init__(
        self,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        n_estimators: int = 20,
        max_depth: int | None = 8,
        min_samples_leaf: int = 1,
        max_samples: int = 50_000,
        stride: int = 2,
        refine: float = 0.9,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.sigmas = check_sigmas(sigmas)
        self.n_estimators = int(n_estimators)
        self.max_depth = None if max_depth is None else int(max_depth)
        self.min_samples_leaf = int(min_samples_leaf)
        self.max_samples = int(max_samples)
        self.stride = int(stride)
        self.refine = float(refine)
        self.random_state = int(random_state)
        self.n_jobs = max(1, int(n_jobs))
        if self.n_estimators < 1 or self.min_samples_leaf < 1 or self.max_samples < 2:
            raise ValueError("n_estimators and min_samples_leaf must be >= 1, max_samples >= 2")
        if self.max_depth is not None and self.max_depth < 1:
            raise ValueError("max_depth must be >= 1, or None for unlimited depth")
        if self.stride < 1 or not 0.5 <= self.refine <= 1.0:
            raise ValueError("stride must be >= 1 and refine between 0.5 and 1")
        self.classes_: np.ndarray | None = None
        self._forest = None
        self._samples: tuple[np.ndarray, np.ndarray] | None = None
        self._cache: tuple[tuple, np.ndarray] | None = None

    def get_params(self) -> dict:
        """The constructor arguments, as a dict."""
        return {
            "sigmas": list(self.sigmas), "n_estimators": self.n_estimators,
            "max_depth": self.max_depth, "min_samples_leaf": self.min_samples_leaf,
            "max_samples": self.max_samples, "stride": self.stride, "refine": self.refine,
            "random_state": self.random_state, "n_jobs": self.n_jobs,
        }

    @property
    def is_fitted(self) -> bool:
        return self._forest is not None

    # ------------------------------------------------------------------ features
    def features(self, image) -> np.ndarray:
        """``(H, W, F)`` features of ``image``; the last image's are kept and reused."""
        image = check_image(image)
        key = (*fingerprint(image), self.sigmas)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self._cache = None  # free the old features before computing new ones
        feats = pixel_features(image, self.sigmas, self.n_jobs)
        self._cache = (key, feats)
        return feats

    def clear_cache(self) -> None:
        """Forget the cached features of the last image (frees their memory)."""
        self._cache = None

    # ---------------------------------------------------------------------- fit
    def fit(self, image, scribbles) -> PixelClassifier:
        """Train on the scribbled pixels of ``image`` (0 = unlabelled, 1..K = classes)."""
        image = check_image(image)
        scribbles = _check_scribbles(scribbles, image.shape[:2])
        feats = self.features(image)
        mask = scribbles > 0
        return self._fit_samples(feats[mask], scribbles[mask])

    def _fit_samples(self, x: np.ndarray, y: np.ndarray) -> PixelClassifier:
        from sklearn.ensemble import ExtraTreesClassifier

        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                "paint at least two classes, e.g. 1 = background and 2 = nucleus; the "
                f"scribbles only hold class {classes.tolist()}"
            )
        if len(y) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            keep = np.sort(rng.choice(len(y), self.max_samples, replace=False))
            x, y = x[keep], y[keep]
        forest = ExtraTreesClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        forest.fit(x, y)
        self._forest, self.classes_ = forest, forest.classes_.astype(np.int64)
        self._samples = (np.asarray(x, np.float32), np.asarray(y, np.int64))
        return self

    # ------------------------------------------------------------------ predict
    def predict_proba(self, image) -> np.ndarray:
        """Class probabilities ``(K, H, W)`` float32, in the order of ``classes_``."""
        forest = self._fitted()
        feats = self.features(image)
        if feats.shape[-1] != forest.n_features_in_:
            kind = "RGB" if forest.n_features_in_ > len(feature_names(self.sigmas)) else "gray"
            raise ValueError(f"this classifier was trained on {kind} images; give a {kind} image")
        h, w, n = feats.shape
        k = len(self.classes_)
        if self.stride == 1:
            proba = forest.predict_proba(feats.reshape(-1, n)).astype(np.float32)
            return np.ascontiguousarray(proba.T.reshape(k, h, w))
        coarse = np.ascontiguousarray(feats[:: self.stride, :: self.stride])
        proba_c = forest.predict_proba(coarse.reshape(-1, n)).astype(np.float32)
        proba = _upsample(proba_c.T.reshape(k, *coarse.shape[:2]), self.stride, (h, w))
        unsure = proba.max(axis=0) < self.refine
        if unsure.any():
            proba[:, unsure] = forest.predict_proba(feats[unsure]).astype(np.float32).T
        return proba

    def predict(self, image) -> np.ndarray:
        """Class map ``(H, W)`` uint8 holding the scribble class values (1..K)."""
        proba = self.predict_proba(image)
        return self.classes_.astype(np.uint8)[np.argmax(proba, axis=0)]

    def _fitted(self):
        if self._forest is None:
            raise ValueError("the pixel classifier is not trained yet: call fit(image, scribbles)")
        return self._forest

    # ------------------------------------------------------------- keep in memory
    def to_dict(self) -> dict:
        """Settings and training samples as plain values and arrays (no pickle)."""
        out: dict = {"params": self.get_params()}
        if self._samples is not None:
            out["samples"], out["sample_classes"] = self._samples[0].copy(), self._samples[1].copy()
        return out

    @classmethod
    def from_dict(cls, state: dict) -> PixelClassifier:
        """Rebuild a classifier from :meth:`to_dict` (refits the forest if it was trained)."""
        try:
            clf = cls(**state["params"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a PixelClassifier.to_dict() result: {exc}") from exc
        if "samples" in state:
            clf._fit_samples(np.asarray(state["samples"], np.float32),
                             np.asarray(state["sample_classes"], np.int64))
        return clf


def _upsample(coarse: np.ndarray, stride: int, shape: tuple[int, int]) -> np.ndarray:
    """Linear interpolation of ``(K, h, w)`` values sampled every ``stride`` pixels."""
    out = coarse
    for axis, size in ((1, shape[0]), (2, shape[1])):
        pos = np.arange(size, dtype=np.float32) / stride
        i0 = np.minimum(pos.astype(np.int64), coarse.shape[axis] - 1)
        i1 = np.minimum(i0 + 1, coarse.shape[axis] - 1)
        frac = np.where(i1 > i0, pos - i0, 0.0).astype(np.float32)
        a, b = np.take(out, i0, axis=axis), np.take(out, i1, axis=axis)
        out = a + (b - a) * frac.reshape([size if d == axis else 1 for d in range(3)])
    return out


def _check_scribbles(scribbles, shape: tuple[int, ...]) -> np.ndarray:
    scribbles = np.asarray(scribbles)
    if scribbles.shape != tuple(shape):
        raise ValueError(
            f"scribbles have shape {scribbles.shape} but the image is {tuple(shape)}; "
            "paint them in a Labels layer of the image's size"
        )
    if not (np.issubdtype(scribbles.dtype, np.integer) or scribbles.dtype == bool):
        raise ValueError(f"scribbles must be an integer label image, not {scribbles.dtype}")
    if not (scribbles > 0).any():
        raise ValueError(
            "no scribbles yet: paint a few strokes of background (label 1) and of "
            "nucleus (label 2) first"
        )
    if scribbles.min() < 0 or scribbles.max() > 255:
        raise ValueError("scribble values must be 0 (unlabelled) or classes 1..255")
    return scribbles.astype(np.int64, copy=False)


# ----------------------------------------------------------------- annotations
def scribbles_from_points(
    points,
    classes: Sequence[str | int] | None,
    shape: Sequence[int],
    radius: float = 3.0,
) -> np.ndarray:
    """Clicks as scribbles: a disk of ``radius`` px around each (row, col) point.

    ``classes`` holds one name per point (``"background"`` -> 1, ``"nucleus"`` -> 2, see
    :data:`SCRIBBLE_CLASSES`) or class numbers 1..255; ``None`` makes every point a
    nucleus. Later points are painted over earlier ones; points outside the image are
    skipped with a warning. Returns a uint8 scribble image of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (rows, cols) of a 2-D image; got {shape}")
    points = np.asarray(points, dtype=float)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be an (N, 2) array of (row, col); got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or infinite coordinates")
    values = _class_values(classes, len(points))
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be >= 0 pixels; got {radius}")
    out = np.zeros(shape, np.uint8)
    centres = np.round(points).astype(np.int64)
    inside = ((centres >= 0) & (centres < np.array(shape))).all(axis=1)
    if not inside.all():
        warnings.warn(f"{int((~inside).sum())} point(s) outside the image were skipped", stacklevel=2)
    r = int(np.floor(radius))
    dr, dc = np.mgrid[-r:r + 1, -r:r + 1]
    disk = dr**2 + dc**2 <= radius**2
    dr, dc = dr[disk], dc[disk]
    for (row, col), value in zip(centres[inside], values[inside]):
        rr, cc = row + dr, col + dc
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        out[rr[ok], cc[ok]] = value
    return out


def _class_values(classes, n: int) -> np.ndarray:
    if classes is None:
        return np.full(n, SCRIBBLE_CLASSES["nucleus"], np.uint8)
    classes = np.asarray(classes, dtype=object).ravel()
    if len(classes) != n:
        raise ValueError(f"give one class per point: {len(classes)} classes for {n} points")
    values = np.empty(n, np.uint8)
    for i, c in enumerate(classes):
        if isinstance(c, str):
            if c not in SCRIBBLE_CLASSES:
                raise ValueError(f"unknown point class {c!r}; use one of {list(SCRIBBLE_CLASSES)}")
            values[i] = SCRIBBLE_CLASSES[c]
        elif isinstance(c, (int, np.integer)) and 1 <= int(c) <= 255:
            values[i] = int(c)
        else:
            raise ValueError(f"point class {c!r} is neither a class name nor a number 1..255")
    return values


def sparse_labels_from_proba(
    proba: np.ndarray, confidence: float = 0.9, background_index: int = 0
) -> np.ndarray:
    """Confident pixels of a class-probability map as sparse training labels.

    ``proba`` is ``(K, H, W)`` (e.g. :meth:`PixelClassifier.predict_proba`, whose first
    class is background when 1 = background was painted). Pixels whose background
    probability is at least ``confidence`` become background (1), pixels whose object
    probability (one minus background) is at least ``confidence`` become object (2),
    the rest unknown (0): the sparse-label convention of :mod:`napari_segkit.annotations`.
    """
    proba = np.asarray(proba)
    if proba.ndim != 3 or proba.shape[0] < 2:
        raise ValueError(f"proba must be (K, H, W) with K >= 2 classes; got shape {proba.shape}")
    if not 0.5 < confidence <= 1.0:
        raise ValueError(f"confidence must be in (0.5, 1]; got {confidence}")
    if not 0 <= background_index < proba.shape[0]:
        raise ValueError(f"background_index {background_index} is not a class of proba")
    background = proba[background_index]
    out = np.full(background.shape, _SPARSE_IGNORE, np.uint8)
    out[background >= confidence] = _SPARSE_BACKGROUND
    out[1.0 - background >= confidence] = _SPARSE_OBJECT
    return out


def simulate_scribbles(
    labels: np.ndarray,
    n_objects: int = 8,
    n_background: int = 8,
    *,
    stroke_length: int = 15,
    margin: int = 2,
    gap: tuple[float, float] = (2.0, 6.0),
    seed: int = 0,
) -> np.ndarray:
    """Strokes a user might paint, simulated from instance ground truth.

    For demos, tests and benchmarks. ``n_objects`` objects spread over the size range
    (evenly spaced ranks by area) get one 3-px-wide stroke along their major axis, kept
    more than ``margin`` px inside their edge (class 2). ``n_background`` straight
    straight strokes of ``stroke_length`` px, 3 px wide, run along the gaps between
    objects (centred ``gap`` px from the nearest object, tangent to its outline) and keep
    more than ``margin`` px from every object (class 1); their centres are spread over
    the image (farthest-point sampling from a seeded random first one), as a user paints
    background in several places. Returns a uint8 scribble image (0 = unlabelled).
    """
    from skimage import draw, measure

    labels = np.asarray(labels)
    if labels.ndim != 2 or not (labels > 0).any() or (labels == 0).all():
        raise ValueError("labels must be a 2-D instance image with objects and background")
    out = np.zeros(labels.shape, np.uint8)
    brush = np.ones((3, 3), bool)
    regions = sorted(measure.regionprops(labels), key=lambda r: (r.area, r.label))
    picks = np.unique(np.linspace(0, len(regions) - 1, min(n_objects, len(regions))).round())
    for k in picks.astype(int):
        region = regions[k]
        r0, c0, r1, c1 = region.bbox
        depth = ndi.distance_transform_edt(np.pad(region.image, 1))[1:-1, 1:-1]
        inside = depth > margin if depth.max() > margin else depth >= depth.max()
        cy, cx = np.unravel_index(np.argmax(depth), depth.shape)
        reach = max(r1 - r0, c1 - c0)
        dy, dx = reach * np.cos(region.orientation), reach * np.sin(region.orientation)
        line = np.zeros(depth.shape, bool)
        rr, cc = draw.line(int(cy - dy), int(cx - dx), int(cy + dy), int(cx + dx))
        ok = (rr >= 0) & (rr < line.shape[0]) & (cc >= 0) & (cc < line.shape[1])
        line[rr[ok], cc[ok]] = True
        stroke = ndi.binary_dilation(line & inside, brush) & inside
        out[r0:r1, c0:c1][stroke] = SCRIBBLE_CLASSES["nucleus"]
    distance = ndi.distance_transform_edt(labels == 0)
    half = stroke_length / 2
    candidates = (distance >= gap[0]) & (distance <= gap[1])
    border = int(np.ceil(half))
    candidates[:border], candidates[-border:], candidates[:, :border], candidates[:, -border:] = (
        False, False, False, False)
    rows, cols = np.nonzero(candidates)
    if len(rows) == 0:
        return out
    grad_r, grad_c = np.gradient(ndi.gaussian_filter(distance, 1.0))
    line = np.zeros(labels.shape, bool)
    for i in _spread_out(rows, cols, n_background, np.random.default_rng(seed)):
        r, c = rows[i], cols[i]
        norm = np.hypot(grad_r[r, c], grad_c[r, c]) or 1.0
        tr, tc = -grad_c[r, c] / norm * half, grad_r[r, c] / norm * half  # along the gap
        rr, cc = draw.line(int(round(r - tr)), int(round(c - tc)), int(round(r + tr)), int(round(c + tc)))
        ok = (rr >= 0) & (rr < line.shape[0]) & (cc >= 0) & (cc < line.shape[1])
        line[rr[ok], cc[ok]] = True
    away = distance > margin
    out[ndi.binary_dilation(line & away, brush) & away] = SCRIBBLE_CLASSES["background"]
    return out


def _spread_out(rows: np.ndarray, cols: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` candidates far apart: a random first one, then farthest-point picks."""
    picks = [int(rng.integers(len(rows)))]
    nearest = np.full(len(rows), np.inf)
    for _ in range(min(n, len(rows)) - 1):
        last = picks[-1]
        nearest = np.minimum(nearest, (rows - rows[last]) ** 2 + (cols - cols[last]) ** 2)
        picks.append(int(np.argmax(nearest)))
    return picks
