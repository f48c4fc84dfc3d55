"""Training data from 3-D stacks: a 2-D model learns from planes of the stacks.

A grayscale stack (Z, Y, X) annotated by 3-D labels (instance, semantic or sparse, e.g.
from :func:`napari_segkit.annotations.clicks_to_sparse_labels_3d`) or by 3-D clicks
(one per nucleus, (z, y, x)) becomes 2-D training planes for the unchanged trainer:

- every xy plane; with ``TrainConfig.stack_planes="all"`` also every xz and yz plane,
  resampled to square pixels (z stretched by z-spacing / xy-spacing: image linear,
  labels nearest) when the spacing allows it (:data:`MAX_Z_STRETCH`);
- the intensity normalisation is fitted once over the stack and applied to every plane,
  as prediction does (:func:`napari_segkit.prediction.predict_probabilities`);
- clicks become pseudo 3-D masks (:func:`~napari_segkit.annotations.clicks_to_labels_3d`)
  with their uncertain parts ignored, the 3-D counterpart of
  :func:`napari_segkit.click_targets.targets_from_clicks` (no model guidance);
- validation is 3-D: the bottom ``val_fraction`` of the rows (y) of every stack is held
  out of every training plane, predicted plane by plane and joined into 3-D objects with
  the voxel size (:func:`napari_segkit.instances3d.stack_instances`), then matched to the
  3-D labels at IoU 0.5 or counted against the held-out clicks
  (:mod:`napari_segkit.holdout`). Separate validation stacks are scored whole.

Prediction of a stack runs the 2-D model on its xy planes and joins the objects in 3-D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._common import IGNORE_INDEX, background_mask, classes_of, image_kind
from .annotations.clicks3d import check_voxel_size, clicks_to_labels_3d
from .click_targets import near_points, object_radius, unclicked_unknown
from .holdout import CONTEXT_ROWS, HeldOut
from .normalization import Normalization, subsample_planes
from .sampling import split_rows
from .targets import Targets, label_targets

__all__ = ["MAX_Z_STRETCH", "STACK_PLANES", "StackPlanes", "check_stack_inputs",
           "prepare_stack", "prepared_instances", "stack_planes", "stack_scales",
           "validation_part"]

#: ``TrainConfig.stack_planes``: ``"xy"`` planes only, or ``"all"`` three orientations.
STACK_PLANES = ("xy", "all")
#: xz / yz planes are used when z-spacing / xy-spacing lies within these bounds (beyond,
#: a resampled plane is mostly interpolation or mostly lost detail).
MAX_Z_STRETCH = 4.0
MIN_Z_STRETCH = 0.25
#: Pseudo masks from clicks: the ignored ring outside each mask, in in-plane pixels,
#: measured physically. 0: none. 3-D click masks follow their nuclei closely (bench_3d
#: row (a)), and on development stacks (seeds 7301-7303, 2 seeds, 200 steps) ignoring a
#: 2-pixel ring (the 2-D rule of click_targets) gave the same F1 (0.911 +- 0.018 vs
#: 0.912 +- 0.022 without) but looser objects (AP 0.271 vs 0.467).
RING_PIXELS = 0.0


@dataclass
class StackPlanes:
    """The training planes of one stack and its held-out part."""

    x: list[np.ndarray]  # prepared planes (C, h, w)
    targets: list[Targets]
    holdout: HeldOut | None
    diameters: np.ndarray  # equivalent diameters of the objects' largest xy sections (px)


def check_stack_inputs(images: Sequence) -> bool:
    """True when the training images are (Z, Y, X) stacks, False for 2-D images;
    ValueError for a mix, or colour stacks."""
    kinds = [image_kind(np.shape(im)) for im in images]
    if "rgb_stack" in kinds:
        raise ValueError("training on colour stacks (Z, Y, X, 3) is not supported: train on a "
                         "grayscale stack (one channel)")
    stacks = [k == "stack" for k in kinds]
    if any(stacks) and not all(stacks):
        raise ValueError("train on 3-D stacks or on 2-D images, not both in one run (got "
                         f"{sum(stacks)} stacks and {len(stacks) - sum(stacks)} 2-D images)")
    return bool(stacks) and all(stacks)


def stack_scales(scale, n: int) -> list[np.ndarray | None]:
    """Voxel size (z, y, x) per stack from ``scale``: None, one (z, y, x) for all stacks,
    or one per stack."""
    if scale is None:
        return [None] * n
    if np.ndim(scale) == 1 or (np.ndim(scale) == 0 and n == 1):
        scale = [scale] * n
    scales = list(scale)
    if len(scales) != n:
        raise ValueError(f"got {n} stacks but {len(scales)} voxel sizes; give one scale "
                         "(z, y, x) for all, or one per stack")
    return [None if s is None else check_voxel_size(s) for s in scales]


def prepare_stack(stack: np.ndarray, norm: Normalization, in_channels: int) -> np.ndarray:
    """A stack (Z, Y, X) -> float32 network input (C, Z, Y, X), normalised with values
    fitted once over the stack (as prediction does)."""
    fitted = norm.fit(subsample_planes(stack), in_channels, False)
    return np.stack([fitted.apply(plane) for plane in stack], axis=1)


def _clicks(points) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) clicks and their classes from an array or a ``(coords, classes)`` tuple."""
    cls = None
    if isinstance(points, tuple) and len(points) == 2:
        points, cls = points
        if hasattr(cls, "columns"):
            cls = classes_of(cls)
    coords = np.asarray(points, float)
    return coords.reshape(-1, coords.shape[-1]) if coords.size else coords.reshape(0, 3), cls


def _unknown_from_clicks(stack, labels, obj, bg, spacing) -> np.ndarray:
    """Where pseudo masks grown from clicks say nothing: a ring of ``RING_PIXELS`` around
    each mask (in physical distance: in z only where planes are that close), and
    background far from every click (3 object radii) that is not clearly dark; balls
    around background clicks are background (the rule of 2-D clicks,
    :func:`napari_segkit.click_targets.unclicked_unknown`)."""
    fg = labels > 0
    pixel = float(spacing[1:].min())
    ring_um = RING_PIXELS * pixel
    ring = (ndi.distance_transform_edt(~fg, sampling=spacing) <= ring_um) & ~fg \
        if fg.any() and ring_um > 0 else np.zeros(fg.shape, bool)
    radius = object_radius(labels, spacing, fallback=8.0 * pixel)
    gray = prepare_stack(stack, Normalization(), 1)[0]
    unknown = ring | unclicked_unknown(gray, fg, obj, radius, spacing)
    if len(bg):
        unknown &= ~(near_points(fg.shape, bg, max(radius, 3.0 * pixel), spacing) & ~fg)
    return unknown


def _annotation(stack, labels, points, spacing, kind: str):
    """3-D (labels, unknown, evidence) of one stack: what its planes learn and what its
    held-out part is scored against."""
    shape = np.shape(stack)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != shape:
            what = "2-D labels" if labels.ndim == 2 else f"labels of shape {labels.shape}"
            raise ValueError(f"{what} for a stack of shape {shape}: give 3-D labels (Z, Y, X) "
                             "of the stack's shape (paint them in a 3-D Labels layer), or "
                             "train on the plane they belong to as a 2-D image")
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
            raise ValueError(f"labels must be an integer label image, got dtype {labels.dtype}")
        evidence = {"instances": labels} if kind == "instances" else None
        return labels, None, evidence
    coords, cls = _clicks(points)
    if len(coords) == 0:
        raise ValueError("each training stack needs 3-D labels or 3-D clicks; this one has "
                         "neither")
    if spacing is None:
        raise ValueError("training from clicks in a 3-D stack needs the voxel size: pass "
                         "scale=(z, y, x) in physical units (the image layer's scale); "
                         "(1, 1, 1) if the voxels are cubes")
    pseudo = clicks_to_labels_3d(stack, coords, scale=spacing, classes=cls)
    is_bg = background_mask(cls, len(coords))
    inside = np.all((coords >= -0.5) & (coords < np.asarray(shape) - 0.5), axis=1)
    obj = np.round(coords[inside & ~is_bg]).astype(int).reshape(-1, 3)
    bg = np.round(coords[inside & is_bg]).astype(int).reshape(-1, 3)
    unknown = _unknown_from_clicks(stack, pseudo, obj, bg, spacing)
    return pseudo, unknown, {"clicks": obj.astype(float), "background": bg.astype(float)}


def _targets(labels2d, unknown2d, kind: str, n_classes: int, boundary_width: int,
             from_clicks: bool) -> Targets:
    t = label_targets(labels2d, "instances" if from_clicks else kind, n_classes,
                      boundary_width)
    if unknown2d is not None:
        t.classes[unknown2d] = IGNORE_INDEX
        t.center_mask[unknown2d] = False
    if from_clicks:
        t.instances = np.asarray(labels2d)
    return t


def _stretch(spacing) -> float | None:
    """z-spacing / xy-spacing when xz / yz planes can be resampled to square pixels."""
    if spacing is None:
        return 1.0
    sz, sy, sx = (float(v) for v in spacing)
    if abs(sy - sx) > 0.05 * max(sy, sx):
        return None
    stretch = sz / (0.5 * (sy + sx))
    return stretch if MIN_Z_STRETCH <= stretch <= MAX_Z_STRETCH else None


def _resample_z(vol: np.ndarray, factor: float, order: int, axis: int) -> np.ndarray:
    if abs(factor - 1.0) < 1e-3:
        return vol
    n = vol.shape[axis]
    new = max(int(round(n * factor)), 1)
    pos = (np.arange(new) + 0.5) * (n / new) - 0.5  # pixel centres
    if order == 0:
        idx = np.clip(np.round(pos).astype(int), 0, n - 1)
        return np.take(vol, idx, axis=axis)
    lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    w = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
    shape = [1] * vol.ndim
    shape[axis] = new
    w = w.reshape(shape)
    return np.take(vol, lo, axis=axis) * (1 - w) + np.take(vol, hi, axis=axis) * w


def _section_diameters(labels: np.ndarray) -> np.ndarray:
    """Per object, the equivalent diameter of its largest xy section (pixels)."""
    if labels.size == 0 or not labels.any():
        return np.zeros(0)
    n = int(labels.max()) + 1
    areas = np.stack([np.bincount(p.ravel().astype(np.int64), minlength=n) for p in labels])
    largest = areas[:, 1:].max(axis=0)
    return 2.0 * np.sqrt(largest[largest > 0] / np.pi)


def stack_planes(stack: np.ndarray, labels, points, spacing, cfg, norm: Normalization,
                 in_channels: int, n_classes: int, *, held_out: bool = True) -> StackPlanes:
    """Training planes, targets and held-out part of one stack (see the module notes).

    ``held_out=False``: every row trains (a separate validation set scores the model).
    """
    stack = np.asarray(stack)
    kind = cfg.labels_kind
    vol_labels, unknown, evidence = _annotation(stack, labels, points, spacing, kind)
    from_clicks = labels is None
    if from_clicks or kind == "instances":
        vol_labels = np.asarray(vol_labels)
        if vol_labels.dtype == bool:
            vol_labels = ndi.label(vol_labels)[0]
    x = prepare_stack(stack, norm, in_channels)  # (C, Z, Y, X)
    y_rows = stack.shape[1]
    cut = split_rows(y_rows, cfg.val_fraction) if (held_out and cfg.val_fraction > 0) else y_rows
    part = None
    if evidence is not None and cut < y_rows:
        part = _held_out(x, vol_labels, evidence, cut, spacing)
    if part is None:
        cut = y_rows
    unk = np.zeros(stack.shape, bool) if unknown is None else unknown

    def target(lab, unk_plane):
        return _targets(lab, unk_plane, kind, n_classes, cfg.boundary_width, from_clicks)

    xs = [x[:, z, :cut] for z in range(stack.shape[0])]
    tgs = [target(vol_labels[z, :cut], unk[z, :cut]) for z in range(stack.shape[0])]
    stretch = _stretch(spacing)
    if getattr(cfg, "stack_planes", "xy") == "all" and stretch is not None:
        xr = _resample_z(x[:, :, :cut], stretch, 1, axis=1).astype(np.float32)
        lr = _resample_z(vol_labels[:, :cut], stretch, 0, axis=0)
        ur = _resample_z(unk[:, :cut], stretch, 0, axis=0)
        for y in range(cut):  # xz planes
            xs.append(np.ascontiguousarray(xr[:, :, y]))
            tgs.append(target(np.ascontiguousarray(lr[:, y]), ur[:, y]))
        for c in range(stack.shape[2]):  # yz planes
            xs.append(np.ascontiguousarray(xr[:, :, :, c]))
            tgs.append(target(np.ascontiguousarray(lr[:, :, c]), ur[:, :, c]))
    diam = _section_diameters(vol_labels) if (from_clicks or kind == "instances") else \
        np.zeros(0)
    return StackPlanes(xs, tgs, part, diam)


def _held_out(x, labels, evidence, cut: int, spacing) -> HeldOut | None:
    """The bottom rows (y >= ``cut``) of a prepared stack (C, Z, Y, X), with context."""
    r0 = max(cut - CONTEXT_ROWS, 0)
    region = np.ones((x.shape[1], x.shape[2] - r0, x.shape[3]), bool)
    scale = None if spacing is None else tuple(float(s) for s in spacing)
    if "instances" in evidence:
        inst = np.asarray(evidence["instances"])[:, r0:]
        part = HeldOut(x[:, :, r0:], cut - r0, instances=inst, region=region, scale=scale)
        return part if inst[:, cut - r0:].any() else None

    def shifted(p):
        p = np.asarray(p, float).reshape(-1, 3)
        p = p[p[:, 1] >= r0].copy()
        p[:, 1] -= r0
        return p

    clicks = shifted(evidence["clicks"])
    part = HeldOut(x[:, :, r0:], cut - r0, clicks, shifted(evidence["background"]),
                   region=region, scale=scale)
    return part if (clicks[:, 1] >= cut - r0).any() else None


def validation_part(stack, labels, spacing, norm: Normalization, in_channels: int) -> HeldOut:
    """A separate validation stack with full 3-D instance labels, scored whole."""
    stack, labels = np.asarray(stack), np.asarray(labels)
    if labels.shape != stack.shape:
        raise ValueError(f"validation labels of shape {labels.shape} do not match their stack "
                         f"{stack.shape}; give 3-D instance labels of the stack's shape")
    x = prepare_stack(stack, norm, in_channels)
    scale = None if spacing is None else tuple(float(s) for s in spacing)
    return HeldOut(x, 0, instances=labels, region=np.ones(stack.shape, bool), scale=scale)


def prepared_instances(net, x: np.ndarray, device, n_classes: int, scale=None) -> np.ndarray:
    """Instances of a prepared image (C, H, W) by a bare network, or 3-D instances of a
    prepared stack (C, Z, H, W) predicted plane by plane and joined with the voxel size."""
    from .instances3d import stack_instances
    from .postprocess import instances_from_probabilities
    from .prediction import predict_prepared

    if x.ndim == 3:
        probs = predict_prepared(net, x, device, n_classes)
        return instances_from_probabilities(probs, n_classes=n_classes)
    probs = np.stack([predict_prepared(net, x[:, z], device, n_classes)
                      for z in range(x.shape[1])], axis=1)
    return stack_instances(probs, n_classes, scale=scale)
