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
from skimage.segmentation import watershed

from ._common import IGNORE_INDEX, SPARSE_BACKGROUND, SPARSE_OBJECT, background_mask
from .annotations import clicks_to_labels
from .normalization import prepare_input

__all__ = [
    "BACKGROUND", "BOUNDARY", "IGNORE_INDEX", "INTERIOR", "Targets", "boundary_map",
    "center_map", "class_weights", "click_guided_instances", "instance_targets",
    "semantic_targets", "sparse_targets", "targets_from_clicks",
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


def targets_from_clicks(
    image: np.ndarray,
    points: np.ndarray,
    classes: np.ndarray | list | None = None,
    *,
    ring: int = 2,
    background_radius: int | None = None,
    boundary_width: int = 1,
    guide: np.ndarray | None = None,
) -> Targets:
    """Training targets from one click per object (plus optional background clicks).

    With ``guide`` (instance labels that a model predicted for this image, when an
    existing model is fine-tuned) the clicks correct the model instead of replacing it;
    see :func:`click_guided_instances`.

    Clicks become pseudo instance masks with
    :func:`napari_segkit.annotations.clicks_to_labels` (seeded watershed with per-click
    thresholds); those masks give full instance targets, except where they are uncertain:

    - a ring of ``ring`` px just outside each pseudo-mask is ignored (the true edge may lie
      there);
    - background far from every click (more than ``background_radius`` px, default 3x the
      median pseudo-object radius) is kept as background only where the image is clearly
      dark (below the Otsu threshold of the normalised image); elsewhere it is ignored,
      since it may hold objects nobody clicked;
    - a disk around each background click is background.

    Parameters
    ----------
    image : ndarray
        2-D gray or RGB image.
    points : ndarray (N, 2)
        Click coordinates (row, col).
    classes : sequence of str, optional
        Per click ``"nucleus"`` (object) or ``"background"``; default all objects.
    """
    from skimage.filters import threshold_otsu

    points = np.asarray(points, dtype=float).reshape(-1, 2)
    labels = np.asarray(clicks_to_labels(image, points, classes=classes))
    is_bg = background_mask(classes, len(points))
    obj_pts = points[~is_bg]
    unclicked = None
    if guide is not None:
        labels, unclicked = click_guided_instances(np.asarray(guide), labels, obj_pts)
    t = instance_targets(labels, boundary_width)
    fg = labels > 0
    if unclicked is not None:  # objects the model sees but nobody clicked: unknown
        t.classes[unclicked] = IGNORE_INDEX
        t.center_mask[unclicked] = False

    # ring outside each pseudo-mask: unknown
    if ring > 0:
        near_edge = ndi.binary_dilation(fg, iterations=ring) & ~fg
        t.classes[near_edge] = IGNORE_INDEX
        t.center_mask[near_edge] = False

    # far from clicks and not clearly dark: unknown
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    radius = np.sqrt(np.median(areas) / np.pi) if areas.size else 10.0
    far_r = background_radius if background_radius is not None else max(3.0 * radius, 8.0)
    gray = prepare_input(image, 1)[0]
    try:
        dark = gray < threshold_otsu(gray)
    except ValueError:
        dark = np.ones(gray.shape, bool)
    if len(obj_pts):
        seeds = np.ones(labels.shape, bool)
        idx = np.clip(np.round(obj_pts).astype(int), 0, np.array(labels.shape) - 1)
        seeds[idx[:, 0], idx[:, 1]] = False
        far = ndi.distance_transform_edt(seeds) > far_r
    else:
        far = np.ones(labels.shape, bool)
    unsure = far & ~fg & ~dark
    t.classes[unsure] = IGNORE_INDEX
    t.center_mask[unsure] = False

    # disks around background clicks: background
    if is_bg.any():
        bg_seed = np.ones(labels.shape, bool)
        idx = np.clip(np.round(points[is_bg]).astype(int), 0, np.array(labels.shape) - 1)
        bg_seed[idx[:, 0], idx[:, 1]] = False
        disk = (ndi.distance_transform_edt(bg_seed) <= max(radius, 3.0)) & ~fg
        t.classes[disk] = BACKGROUND
        t.center_mask[disk] = True
    t.instances = labels
    return t


def click_guided_instances(
    guide: np.ndarray, click_masks: np.ndarray, clicks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Model instances corrected by one click per object.

    - a predicted object holding exactly one click keeps the model's mask;
    - a predicted object holding several clicks (touching nuclei the model merged) is
      split between them by a watershed from the clicks on the distance to the object's
      edge, so the cut follows the neck between the nuclei;
    - a click on no predicted object (a nucleus the model missed) takes its mask from
      ``click_masks`` (:func:`napari_segkit.annotations.clicks_to_labels`).

    Returns the corrected instance labels (one id per click) and the mask of predicted
    objects that hold no click (neither object nor background for training).
    """
    guide = guide.astype(np.int64, copy=False)
    out = np.zeros(guide.shape, np.int32)
    if len(clicks) == 0:
        return out, guide > 0
    idx = np.clip(np.round(clicks).astype(int), 0, np.array(guide.shape) - 1)
    hit = guide[idx[:, 0], idx[:, 1]]
    counts = np.bincount(hit, minlength=int(guide.max()) + 1)
    counts[0] = 0
    # one click in the object: the model's mask, labelled by the click
    lut = np.zeros(counts.size, np.int32)
    single = np.flatnonzero(counts[hit] == 1)
    lut[hit[single]] = single + 1
    out = lut[guide]
    # several clicks in one object: split it along its necks
    boxes = ndi.find_objects(guide)
    for obj in np.flatnonzero(counts > 1):
        ks = np.flatnonzero(hit == obj)
        box = boxes[obj - 1]
        mask = guide[box] == obj
        markers = np.zeros(mask.shape, np.int32)
        markers[idx[ks, 0] - box[0].start, idx[ks, 1] - box[1].start] = ks + 1
        depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        split = watershed(-depth, markers, mask=mask)
        out[box][mask] = split[mask]
    # clicks on nothing: the click-grown mask, where the model has nothing either
    for k in np.flatnonzero(hit == 0):
        own = click_masks[idx[k, 0], idx[k, 1]]
        if own:
            out[(click_masks == own) & (out == 0) & (guide == 0)] = k + 1
    unclicked = (guide > 0) & (counts[guide] == 0)
    return out, unclicked


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
