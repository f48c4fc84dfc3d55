"""Training targets from annotations.

Every ``*_targets`` function returns a :class:`Targets` with

- ``classes``: int8 (H, W) class map, 0 background, 1 interior, 2 boundary (instance
  targets) or one class per value (semantic), ``IGNORE_INDEX`` (-1) where nothing is known;
- ``center``: float32 (H, W) in [0, 1], per object the distance to the object's boundary
  divided by the object's largest distance (1 at the centre, ->0 at the edge, 0 outside);
- ``center_mask``: bool (H, W), where ``center`` is a valid target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._common import IGNORE_INDEX, SPARSE_BACKGROUND, SPARSE_OBJECT

__all__ = [
    "BACKGROUND", "BOUNDARY", "IGNORE_INDEX", "INTERIOR", "Targets", "boundary_map",
    "center_map", "class_weights", "instance_targets", "label_targets", "semantic_targets",
    "sparse_targets",
]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


@dataclass
class Targets:
    classes: np.ndarray
    center: np.ndarray
    center_mask: np.ndarray
    #: the (pseudo) instance labels behind the targets when they came from clicks, so a
    #: held-out part can be scored with object F1
    instances: np.ndarray | None = None

    def crop(self, sl) -> Targets:
        inst = None if self.instances is None else self.instances[sl]
        return Targets(self.classes[sl], self.center[sl], self.center_mask[sl], inst)


def _check_2d(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{what} must be 2-D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{what} must be an integer label image, got dtype {labels.dtype}")
    return labels


def boundary_map(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of each object within ``width`` px of another object or the background."""
    labels = np.asarray(labels)
    fg = labels > 0
    # a pixel is on the boundary when any 4-neighbour has a different label
    pad = np.pad(labels, 1, mode="edge")
    core = pad[1:-1, 1:-1]
    diff = (
        (pad[:-2, 1:-1] != core)
        | (pad[2:, 1:-1] != core)
        | (pad[1:-1, :-2] != core)
        | (pad[1:-1, 2:] != core)
    )
    edge = diff & fg
    if width > 1:
        # grow inwards, staying inside each object
        grown = ndi.binary_dilation(edge, iterations=width - 1)
        edge = grown & fg
    return edge


def center_map(labels: np.ndarray) -> np.ndarray:
    """Per-object distance to the boundary divided by that object's maximum (float32)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        obj = labels[sl] == i
        d = ndi.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        m = d.max()
        if m > 0:
            out[sl][obj] = (d[obj] / m).astype(np.float32)
    return out


def instance_targets(labels: np.ndarray, boundary_width: int = 1) -> Targets:
    """Background / interior / boundary classes and the centre target from instance labels."""
    labels = _check_2d(labels)
    if labels.dtype == bool:
        labels = ndi.label(labels)[0]
    if labels.min() < 0:
        raise ValueError("instance labels must be >= 0 (0 background, 1..N objects)")
    classes = np.zeros(labels.shape, np.int8)
    classes[labels > 0] = INTERIOR
    classes[boundary_map(labels, boundary_width)] = BOUNDARY
    return Targets(classes, center_map(labels), np.ones(labels.shape, bool))


def semantic_targets(labels: np.ndarray, n_classes: int) -> Targets:
    """One class per label value (0 .. n_classes-1); values < 0 are ignored; no centre target."""
    labels = _check_2d(labels)
    if labels.max() >= n_classes:
        raise ValueError(
            f"semantic labels go up to {labels.max()} but the model has {n_classes} classes"
        )
    classes = labels.astype(np.int8)
    classes[labels < 0] = IGNORE_INDEX
    zeros = np.zeros(labels.shape, np.float32)
    return Targets(classes, zeros, np.zeros(labels.shape, bool))


def sparse_targets(sparse: np.ndarray) -> Targets:
    """Targets from sparse labels (0 unknown, 1 background, 2 object).

    Object pixels become "interior", background pixels "background", the rest is ignored.
    The centre target is known only on background pixels (0 there).
    """
    sparse = _check_2d(sparse, "sparse labels")
    classes = np.full(sparse.shape, IGNORE_INDEX, np.int8)
    classes[sparse == SPARSE_BACKGROUND] = BACKGROUND
    classes[sparse == SPARSE_OBJECT] = INTERIOR
    return Targets(classes, np.zeros(sparse.shape, np.float32), sparse == SPARSE_BACKGROUND)


def label_targets(labels: np.ndarray, kind: str, n_classes: int, boundary_width: int = 1
                  ) -> Targets:
    """Targets from a label image of ``kind`` (``TrainConfig.labels_kind``): instance,
    semantic or sparse labels."""
    if kind == "instances":
        return instance_targets(labels, boundary_width)
    if kind == "semantic":
        return semantic_targets(labels, n_classes)
    if kind == "sparse":
        return sparse_targets(labels)
    raise ValueError(f"labels_kind must be instances, semantic or sparse, not {kind!r}")


def class_weights(class_maps: list[np.ndarray], n_classes: int, power: float = 0.5) -> np.ndarray:
    """Class weights ``freq**-power`` from labelled pixels, normalised to a pixel-mean of 1.

    Rare classes (the thin boundary) get more weight; weights are clipped to [0.2, 10].
    """
    counts = np.zeros(n_classes, np.float64)
    for c in class_maps:
        v = c[c >= 0].astype(np.int64)
        counts += np.bincount(v, minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1.0)
    w = np.where(freq > 0, np.maximum(freq, 1e-6) ** -power, 0.0)
    mean = (w * freq).sum()
    if mean > 0:
        w = w / mean
    w = np.where(freq > 0, np.clip(w, 0.2, 10.0), 1.0)
    return w.astype(np.float32)
