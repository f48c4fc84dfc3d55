"""Model probabilities -> semantic labels -> instance labels.

The default 3-class model predicts, per pixel, softmax probabilities for
0 background, 1 interior and 2 boundary, plus one extra "centre" channel (sigmoid):
per object, the distance to its edge divided by its largest such distance
(1 at the centre, 0 at the edge and on background).

Instances are found by a seeded watershed inside the foreground:

1. foreground = P(foreground classes) > ``fg_threshold``;
2. seeds = connected regions of ``center > seed_threshold`` inside the foreground
   (or, without a centre channel, of ``P(interior) > seed_threshold``: the boundary
   class separates touching nuclei), each at least ``min_seed_size`` pixels;
3. watershed on ``-center`` (or ``-P(interior)``) restricted to the foreground;
   foreground regions that hold no seed become objects of their own;
4. objects smaller than ``min_size`` pixels are removed, holes of at most
   ``max_hole_size`` pixels enclosed by one object are filled, ids are made 1..N.

Everything works on 2-D (H, W) and 3-D (Z, Y, X) arrays; sizes are in pixels (voxels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from ._common import as_label_dtype

# Defaults per dimensionality: (min_size, min_seed_size, max_hole_size), in pixels / voxels.
DEFAULT_SIZES = {2: (12, 4, 64), 3: (40, 8, 256)}
#: Levels of the split control: 0 keeps the model's default seeds; 1..SPLIT_LEVELS use
#: h-maxima seeds of the centre map, splitting touching nuclei more as the level rises.
SPLIT_LEVELS = 10
#: h of the h-maxima seeds at split level 1 and at SPLIT_LEVELS (centre-map units).
SPLIT_H_RANGE = (0.5, 0.05)
#: h of the 3-D seeds of a stack (:func:`napari_segkit.instances3d.stack_instances`,
#: default 0.1) at split level 1 and at SPLIT_LEVELS (relief units).
STACK_SPLIT_H_RANGE = (0.3, 0.02)


def split_kwargs(level: int, has_center: bool, stack: bool = False) -> dict:
    """Seed settings of split level ``level`` (0..:data:`SPLIT_LEVELS`; 0: the defaults)
    for :func:`instances_from_probabilities`, or for a ``stack``'s 3-D instances."""
    if level <= 0:
        return {}
    t = (level - 1) / (SPLIT_LEVELS - 1)
    if stack:
        hi, lo = STACK_SPLIT_H_RANGE
        return {"seed_h": hi + (lo - hi) * t}
    if has_center:
        hi, lo = SPLIT_H_RANGE
        return {"seed_method": "h_maxima", "seed_h": hi + (lo - hi) * t}
    return {"seed_threshold": 0.5 + 0.4 * level / SPLIT_LEVELS}


def fitted_kwargs(fitted: dict | None, has_center: bool) -> dict:
    """Keyword arguments of :func:`instances_from_probabilities` for a model's fitted
    post-processing (``SegModel.postprocess``: ``fg_threshold`` and ``split``); {} for None."""
    if not fitted:
        return {}
    return {"fg_threshold": float(fitted["fg_threshold"]),
            **split_kwargs(int(fitted.get("split", 0)), has_center)}


# ---------------------------------------------------------------------------
# helpers


def _check_probs(probs, channel_axis: int = 0) -> np.ndarray:
    """Return float32 probabilities with the channel axis first; reject NaNs."""
    arr = np.asarray(probs)
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"probabilities must be (K, H, W) or (K, Z, Y, X) with K class channels, "
            f"got shape {arr.shape}"
        )
    arr = np.moveaxis(arr, channel_axis, 0).astype(np.float32, copy=False)
    if arr.shape[0] < 2:
        raise ValueError(
            f"probabilities need at least 2 class channels (background + object), "
            f"got {arr.shape[0]} along axis {channel_axis}"
        )
    _check_finite(arr, "probabilities")
    return arr


class NonFiniteOutputError(ValueError):
    """The network's output holds NaNs or infinities (its weights diverged)."""


def _check_finite(arr: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise NonFiniteOutputError(
            f"the model output ({what}) has NaNs or infinite values; the model is broken "
            "(training probably diverged): retrain with a lower learning rate or load another model"
        )


def _defaults(ndim: int, min_size, min_seed_size, max_hole_size) -> tuple[int, int, int]:
    d_min, d_seed, d_hole = DEFAULT_SIZES.get(ndim, DEFAULT_SIZES[3])
    return (
        d_min if min_size is None else int(min_size),
        d_seed if min_seed_size is None else int(min_seed_size),
        d_hole if max_hole_size is None else int(max_hole_size),
    )


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components (4-connectivity in 2-D, 6 in 3-D)."""
    lab, n = ndi.label(mask)
    return lab, int(n)


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels = labels.copy()
        labels[small[labels]] = 0
    return labels


def _fill_small_holes(labels: np.ndarray, max_hole_size: int) -> np.ndarray:
    """Fill background regions of <= max_hole_size pixels enclosed by a single object."""
    if max_hole_size <= 0 or labels.max() == 0:
        return labels
    holes, n = _label(labels == 0)
    if n == 0:
        return labels
    sizes = np.bincount(holes.ravel())
    # regions touching the image border are not holes
    border = np.zeros(n + 1, dtype=bool)
    for axis in range(labels.ndim):
        for idx in (0, -1):
            border[np.take(holes, idx, axis=axis)] = True
    candidates = np.flatnonzero((sizes <= max_hole_size) & ~border)
    candidates = candidates[candidates > 0]
    if candidates.size == 0:
        return labels
    labels = labels.copy()
    slices = ndi.find_objects(holes)
    struct = ndi.generate_binary_structure(labels.ndim, 1)
    for h in candidates:
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices[h - 1])
        region = holes[sl] == h
        ring = ndi.binary_dilation(region, struct) & ~region
        around = np.unique(labels[sl][ring])
        around = around[around > 0]
        if around.size == 1:
            labels[sl][region] = around[0]
    return labels


def _finish(labels: np.ndarray, min_size: int, max_hole_size: int) -> np.ndarray:
    labels = _remove_small(labels, min_size)
    labels = _fill_small_holes(labels, max_hole_size)
    labels, _, _ = relabel_sequential(labels)
    return as_label_dtype(labels)


def _seeded_watershed(
    elevation: np.ndarray, seeds: np.ndarray, foreground: np.ndarray, min_seed_size: int
) -> np.ndarray:
    """Watershed from seed regions inside the foreground; seedless regions stay objects."""
    markers, n = _label(seeds & foreground)
    markers = _remove_small(markers, min_seed_size)
    if markers.max() > 0:
        labels = watershed(elevation, markers=markers, mask=foreground)
    else:
        labels = np.zeros(foreground.shape, dtype=np.int32)
    rest, n_rest = _label(foreground & (labels == 0))
    if n_rest:
        offset = int(labels.max())
        labels = np.where(rest > 0, rest + offset, labels)
    return labels


# ---------------------------------------------------------------------------
# public API


def semantic_from_probabilities(
    probs, *, channel_axis: int = 0, n_classes: int | None = None
) -> np.ndarray:
    """Class with the highest probability per pixel, as uint8.

    Parameters
    ----------
    probs : array (K, H, W) or (K, Z, Y, X)
        Class probabilities (or logits); channel axis set by ``channel_axis``.
    n_classes : int, optional
        Use only the first ``n_classes`` channels (e.g. to drop the extra centre channel).
    """
    arr = _check_probs(probs, channel_axis)
    if n_classes is not None:
        arr = arr[:n_classes]
    return np.argmax(arr, axis=0).astype(np.uint8)


def foreground_probability(
    probs, foreground_classes: Sequence[int] | None = (1, 2), *, channel_axis: int = 0
) -> np.ndarray:
    """Sum of the probabilities of the foreground classes (default: interior + boundary).

    ``foreground_classes=None`` uses every class except 0 (background). Classes beyond
    the number of channels are ignored, so the default also works for a 2-class model.
    """
    arr = _check_probs(probs, channel_axis)
    k = arr.shape[0]
    classes = range(1, k) if foreground_classes is None else foreground_classes
    classes = [int(c) for c in classes if 0 <= int(c) < k]
    if not classes:
        raise ValueError(
            f"none of the foreground classes {foreground_classes} exist in {k} channels"
        )
    return arr[classes].sum(axis=0)


def instances_from_probabilities(
    probs,
    center=None,
    *,
    channel_axis: int = 0,
    n_classes: int | None = None,
    fg_threshold: float = 0.5,
    seed_threshold: float = 0.5,
    foreground_classes: Sequence[int] | None = (1, 2),
    interior_class: int = 1,
    min_seed_size: int | None = None,
    min_size: int | None = None,
    max_hole_size: int | None = None,
    seed_method: str = "threshold",
    seed_h: float = 0.1,
    seed_floor: float = 0.2,
    merge_fraction: float = 0.0,
) -> np.ndarray:
    """Instance labels from class probabilities and an optional centre map.

    Parameters
    ----------
    probs : array (K, H, W) or (K, Z, Y, X)
        Softmax class probabilities. Order for the default model: 0 background,
        1 interior, 2 boundary. Channel axis set by ``channel_axis``.
    center : array (H, W) or (Z, Y, X) in [0, 1], optional
        Centre map (1 at object centres). Used for seeds and as the watershed relief.
    n_classes : int, optional
        When ``probs`` also carries extra channels after the ``n_classes`` class
        channels (the model's raw output), the first extra one is used as ``center``
        if ``center`` is not given.
    fg_threshold : float
        Pixels whose foreground probability exceeds this are foreground.
    seed_threshold : float
        Seeds are regions where ``center`` (or P(interior) without a centre map)
        exceeds this.
    foreground_classes : sequence of int or None
        Classes summed into the foreground probability (None: all but 0).
    interior_class : int
        Class whose probability seeds objects when there is no centre map. For a
        model without a boundary class (K < 3) and no centre map, touching objects
        are split with :func:`instances_from_mask` instead.
    min_seed_size : int, optional
        Seeds smaller than this many pixels are dropped (default 4 in 2-D, 8 in 3-D).
    min_size : int, optional
        Objects smaller than this many pixels are removed (default 12 in 2-D, 40 in 3-D).
    max_hole_size : int, optional
        Holes up to this many pixels inside one object are filled (default 64 in 2-D,
        256 in 3-D; 0 disables).
    seed_method : str
        With a centre map: ``"threshold"`` (seeds are regions of ``center >
        seed_threshold``) or ``"h_maxima"`` (seeds are maxima of the centre map at least
        ``seed_h`` above the saddle to a higher maximum and above ``seed_floor``, see
        :func:`napari_segkit.instance_refine.h_maxima_seeds`).
    merge_fraction : float
        When > 0, objects smaller than this fraction of the median object area are
        merged into the neighbour they share most border with
        (:func:`napari_segkit.instance_refine.merge_small_fragments`).

    Returns
    -------
    labels : uint16 (or uint32) array, 0 = background, objects 1..N.
    """
    arr = _check_probs(probs, channel_axis)
    if n_classes is not None and arr.shape[0] > n_classes:
        if center is None:
            center = arr[n_classes]
        arr = arr[:n_classes]
    spatial = arr.shape[1:]
    min_size, min_seed_size, max_hole_size = _defaults(
        len(spatial), min_size, min_seed_size, max_hole_size
    )
    foreground = foreground_probability(arr, foreground_classes) > fg_threshold
    if center is not None:
        center = np.asarray(center, dtype=np.float32)
        if center.shape != spatial:
            raise ValueError(
                f"centre map shape {center.shape} does not match the probabilities' "
                f"spatial shape {spatial}"
            )
        _check_finite(center, "centre map")
        if seed_method == "h_maxima":
            from .instance_refine import h_maxima_seeds

            seeds = h_maxima_seeds(center, foreground, seed_h, seed_floor)
            labels = _seeded_watershed(-center, seeds, foreground, 1)
        elif seed_method == "threshold":
            labels = _seeded_watershed(-center, center > seed_threshold, foreground, min_seed_size)
        else:
            raise ValueError(f"seed_method must be 'threshold' or 'h_maxima', got {seed_method!r}")
    elif arr.shape[0] >= 3 and 0 <= interior_class < arr.shape[0]:
        interior = arr[interior_class]
        labels = _seeded_watershed(-interior, interior > seed_threshold, foreground, min_seed_size)
    else:
        return instances_from_mask(foreground, min_size=min_size, max_hole_size=max_hole_size)
    if merge_fraction > 0:
        from .instance_refine import merge_small_fragments

        labels = merge_small_fragments(labels, merge_fraction)
    return _finish(labels, min_size, max_hole_size)


def instances_from_mask(
    mask,
    *,
    scale: Sequence[float] | None = None,
    h: float = 2.0,
    smooth: float = 1.0,
    min_size: int | None = None,
    max_hole_size: int | None = None,
) -> np.ndarray:
    """Split a binary (or semantic) foreground mask into objects by distance-transform watershed.

    Used when only semantic labels exist. Each object grows from a maximum of the
    (smoothed) distance to the background that stands at least ``h`` pixels above
    the saddle to any other maximum, so two touching round nuclei split at their neck.

    Parameters
    ----------
    mask : array (H, W) or (Z, Y, X)
        Non-zero = foreground.
    scale : sequence of float, optional
        Pixel spacing per axis for the distance transform (anisotropic stacks);
        ``h`` is then in the same units.
    h : float
        Minimum depth of a maximum to seed its own object; larger merges more.
    smooth : float
        Gaussian sigma (pixels) applied to the distance map before finding maxima;
        0 disables.
    min_size, max_hole_size : int, optional
        As in :func:`instances_from_probabilities`.
    """
    fg = np.asarray(mask) != 0
    if fg.ndim not in (2, 3):
        raise ValueError(f"mask must be 2-D or 3-D, got shape {fg.shape}")
    min_size, _, max_hole_size = _defaults(fg.ndim, min_size, None, max_hole_size)
    if not fg.any():
        return as_label_dtype(np.zeros(fg.shape, dtype=np.uint16))
    dist = ndi.distance_transform_edt(fg, sampling=scale)
    if smooth > 0:
        dist = ndi.gaussian_filter(dist, smooth) * fg
    peaks = h_maxima(dist, h) > 0 if h > 0 else np.zeros_like(fg)
    labels = _seeded_watershed(-dist, peaks, fg, 1)
    return _finish(labels, min_size, max_hole_size)
