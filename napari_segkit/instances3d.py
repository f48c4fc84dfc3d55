"""3-D instances of a stack predicted by a 2-D model, in physical units.

A 2-D model predicts a stack plane by plane; its centre channel peaks in the middle of
each nucleus' *cross-section*, so every plane of a nucleus has a peak and the peaks of a
nucleus stack up into a column. Seeding a 3-D watershed with ``centre > threshold``
(the 2-D rule of :func:`napari_segkit.postprocess.instances_from_probabilities` applied to
the volume) joins a nucleus across its planes, but it also joins two nuclei stacked in z,
whose columns touch. :func:`stack_instances` seeds from the *3-D* maxima instead:

1. foreground = P(foreground classes) > ``fg_threshold`` (3-D face-connected);
2. relief = the centre map smoothed by a Gaussian of ``smooth_um`` physical units (fewer
   voxels along the coarser z) + ``distance_weight`` x the 3-D distance to the background
   in physical units (using the voxel size ``scale``), divided by its maximum; the
   distance term is highest in the middle of a nucleus in z as well;
3. seeds = h-maxima of the relief (at least ``seed_h`` above the saddle to a higher one);
4. watershed on ``-relief`` inside the foreground; seedless foreground components become
   objects of their own; small objects removed, small holes filled, ids 1..N.

Numpy and scipy / scikit-image only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from ._common import as_label_dtype
from .postprocess import DEFAULT_SIZES, foreground_probability, instances_from_probabilities

__all__ = ["STACK_METHODS", "instances_any", "stack_instances", "with_voxel_size"]

#: ``"volume"``: seeds from 3-D maxima (this module); ``"centre"``: the 2-D rule of
#: :func:`~napari_segkit.postprocess.instances_from_probabilities` applied to the volume.
STACK_METHODS = ("volume", "centre")
_VOLUME_KEYS = {"fg_threshold", "foreground_classes", "min_size", "max_hole_size", "seed_h",
                "distance_weight", "smooth_um", "interior_class"}


def _voxel_size(scale: Sequence[float] | None) -> np.ndarray:
    if scale is None:
        return np.ones(3)
    values = np.ravel(np.asarray(scale, dtype=float))
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(
            f"scale must give 3 positive voxel sizes (z, y, x) for a stack; got {tuple(values)}"
        )
    return values


def stack_instances(
    probs: np.ndarray,
    n_classes: int,
    *,
    scale: Sequence[float] | None = None,
    stack_method: str = "volume",
    **postprocess,
) -> np.ndarray:
    """3-D instance labels of a stack's probabilities ``(K [+ extra], Z, Y, X)``.

    Parameters
    ----------
    probs : float array (K + extra, Z, Y, X)
        Class probabilities, then (optionally) the centre channel, as
        :func:`napari_segkit.prediction.predict_probabilities` returns them.
    n_classes : int
        Number of class channels K.
    scale : (z, y, x) voxel size, physical units; None: cubic voxels.
    stack_method : ``"volume"`` (default, see the module notes) or ``"centre"`` (the 2-D
        rule on the volume, which accepts every keyword of
        :func:`~napari_segkit.postprocess.instances_from_probabilities`).
    **postprocess
        ``"volume"``: ``fg_threshold`` (0.5), ``foreground_classes`` ((1, 2)), ``seed_h``
        (0.1), ``distance_weight`` (0.5), ``smooth_um`` (Gaussian sigma of the centre map,
        physical units; default two in-plane voxels), ``min_size`` and ``max_hole_size``
        (voxels, the 3-D defaults of post-processing),
        ``interior_class`` (1; its probability replaces the centre map of a model
        without one).

    Returns
    -------
    labels : uint16 (or uint32) (Z, Y, X), 0 = background, objects 1..N.
    """
    arr = np.asarray(probs, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise ValueError(f"stack probabilities must be (K, Z, Y, X); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the probabilities hold NaN or infinite values")
    if stack_method == "centre":
        return instances_from_probabilities(arr, n_classes=n_classes, **postprocess)
    if stack_method != "volume":
        raise ValueError(f"stack_method must be one of {STACK_METHODS}, got {stack_method!r}")
    unknown = sorted(set(postprocess) - _VOLUME_KEYS)
    if unknown:
        raise ValueError(
            f"{unknown} do not apply to 3-D instances of a stack (stack_method='volume'); "
            f"use {sorted(_VOLUME_KEYS)}, or stack_method='centre' for the 2-D rule"
        )
    spacing = _voxel_size(scale)
    classes, extra = arr[:n_classes], arr[n_classes:]
    foreground = foreground_probability(
        classes, postprocess.get("foreground_classes", (1, 2))
    ) > float(postprocess.get("fg_threshold", 0.5))
    interior = int(postprocess.get("interior_class", 1))
    if len(extra):
        centre = extra[0]
    elif 0 <= interior < n_classes:
        centre = classes[interior]
    else:
        raise ValueError(f"interior_class {interior} is not among the {n_classes} classes")
    smooth_um = float(postprocess.get("smooth_um", float(spacing[1:].min()) * 2.0))
    relief = ndi.gaussian_filter(centre, smooth_um / spacing) * foreground
    weight = float(postprocess.get("distance_weight", 0.5))
    if weight > 0 and foreground.any():
        dist = ndi.distance_transform_edt(foreground, sampling=spacing)
        relief = relief + weight * dist / max(float(dist.max()), 1e-6)
    seeds = h_maxima(relief, float(postprocess.get("seed_h", 0.1))) > 0 if foreground.any() \
        else np.zeros(foreground.shape, bool)
    markers, _ = ndi.label(seeds)
    labels = watershed(-relief, markers, mask=foreground) if markers.max() else \
        np.zeros(foreground.shape, np.int32)
    rest, _ = ndi.label(foreground & (labels == 0))  # seedless components: objects too
    labels = np.where(rest > 0, rest + int(labels.max()), labels)
    min_size, _, max_hole = DEFAULT_SIZES[3]
    if postprocess.get("min_size") is not None:
        min_size = int(postprocess["min_size"])
    if postprocess.get("max_hole_size") is not None:
        max_hole = int(postprocess["max_hole_size"])
    return _finish(labels, min_size, max_hole)


def _finish(labels: np.ndarray, min_size: int, max_hole: int) -> np.ndarray:
    """Drop objects under ``min_size`` voxels, fill holes of at most ``max_hole`` voxels
    enclosed by one object, number the objects 1..N."""
    sizes = np.bincount(labels.ravel())
    small = np.nonzero(sizes < min_size)[0]
    labels = np.where(np.isin(labels, small[small > 0]), 0, labels)
    if max_hole > 0:
        holes, n = ndi.label(labels == 0)
        hole_sizes = np.bincount(holes.ravel(), minlength=n + 1)
        border = np.unique(np.concatenate([np.moveaxis(holes, a, 0)[[0, -1]].ravel()
                                           for a in range(holes.ndim)]))
        for h, sl in enumerate(ndi.find_objects(holes), start=1):
            if sl is None or hole_sizes[h] > max_hole or h in border:
                continue
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            hole = holes[box] == h
            around = labels[box][ndi.binary_dilation(hole) & ~hole]
            if len(np.unique(around)) == 1 and around[0] > 0:
                labels[box][hole] = around[0]
    return as_label_dtype(relabel_sequential(labels)[0])


def with_voxel_size(kind: str | None, scale, postprocess: dict) -> dict:
    """Post-processing keywords plus a stack's voxel size (``kind`` from
    :func:`napari_segkit._common.image_kind`); unchanged for 2-D images or no scale."""
    if scale is None or kind != "stack":
        return postprocess
    return {**postprocess, "scale": tuple(float(s) for s in np.ravel(scale))[-3:]}


def instances_any(probs: np.ndarray, n_classes: int, postprocess: dict) -> np.ndarray:
    """Instances of numpy probabilities: 3-D (:func:`stack_instances`) for a stack
    ``(K, Z, Y, X)``, else :func:`~napari_segkit.postprocess.instances_from_probabilities`."""
    if np.ndim(probs) == 4:
        return stack_instances(probs, n_classes, **postprocess)
    return instances_from_probabilities(probs, n_classes=n_classes, **postprocess)
