"""Validation on a held-out strip of every annotated image, scored by counting or by masks.

Fine-tuning on a few images cannot spare whole images for validation, and two images are
too few to trust. So the bottom ``fraction`` of the annotated rows of *every* image is held
out of training (:func:`split_holdout`), and the model is scored there
(:func:`score_holdout`):

- from clicks, by **counting**: F1 of the predicted objects against the held-out clicks
  (a clicked object hit by a prediction is a TP; a prediction without a click inside the
  annotated region is a FP; a click on nothing, or a second click in one predicted
  object, is a FN; see :func:`napari_segkit.metrics.points_vs_instances`);
- from masks, by F1 at IoU 0.5 against the held-out objects, and by how well the
  outlines fit (:attr:`HoldOutScore.outline`, the DSB score pooled over the strips).

How far apart two scores must be to mean something: :func:`f1_noise` is the binomial
standard error of an F1 measured on ``n`` objects, ``sqrt(F1 (1 - F1) / n)``, with ``n``
the mean of the true and predicted object counts. :func:`prefer_start` keeps the starting
model only when it scores better than the fine-tuned one by more than that noise (times
``margin``): a fine-tuning is handed back unless the held-out part shows it clearly worse.
A new model validated by counting keeps its latest weights (see
:meth:`napari_segkit.training.Trainer.validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._common import IGNORE_INDEX
from .metrics import DSB_THRESHOLDS, dsb_from_counts, matches_at_thresholds
from .sampling import split_rows

#: rows of image kept above the held-out strip as context for its prediction
CONTEXT_ROWS = 32


@dataclass
class HeldOut:
    """The held-out strip of one image, in the coordinates of ``x``.

    x : prepared network input of the strip and ``CONTEXT_ROWS`` rows above it (C, h, W),
        or of a stack's bottom rows in every plane (C, Z, h, W), scored in 3-D
    first_row : first row (y) of ``x`` that belongs to the strip
    clicks, background : object / background clicks inside ``x`` (None for masks)
    instances : instance labels of ``x`` (None for clicks)
    region : where ``x`` is fully annotated (bool, h x W, or Z x h x W)
    scale : a stack's voxel size (z, y, x), for its 3-D instances (None: cubes)
    """

    x: np.ndarray
    first_row: int
    clicks: np.ndarray | None = None
    background: np.ndarray | None = None
    instances: np.ndarray | None = None
    region: np.ndarray | None = None
    scale: tuple[float, ...] | None = None


@dataclass
class HoldOutScore:
    f1: float
    tp: int
    fp: int
    fn: int
    kind: str  # "count" or "mask"
    #: masks only: mean over IoU thresholds 0.5..0.95 of the pooled TP / (TP + FP + FN)
    #: (the DSB score, pooled over the strips): how well the outlines fit
    outline: float | None = None

    @property
    def n(self) -> float:
        """Objects the score rests on: mean of true and predicted counts."""
        return (2 * self.tp + self.fp + self.fn) / 2.0

    @property
    def noise(self) -> float:
        return f1_noise(self.f1, self.n)


def f1_noise(f1: float, n: float) -> float:
    """Binomial standard error of an F1 measured on ``n`` objects."""
    return float(np.sqrt(max(f1 * (1.0 - f1), 0.0) / max(n, 1.0)))


def prefer_start(start: HoldOutScore, candidate: HoldOutScore, margin: float = 1.0) -> bool:
    """True when the starting model beats ``candidate`` by more than ``margin`` x the noise."""
    return start.f1 - candidate.f1 > margin * max(start.noise, candidate.noise)


def strip_start(region: np.ndarray, fraction: float) -> int:
    """First row of the held-out strip: the last ``fraction`` of the region's rows."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return region.shape[0]
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    return r0 + split_rows(r1 - r0, fraction)


def _points_in(points, r0: int) -> np.ndarray | None:
    if points is None:
        return None
    p = np.asarray(points, float).reshape(-1, 2)
    p = p[p[:, 0] >= r0].copy()
    p[:, 0] -= r0
    return p


def split_holdout(
    x: np.ndarray,
    targets,
    fraction: float,
    *,
    clicks: np.ndarray | None = None,
    background: np.ndarray | None = None,
    instances: np.ndarray | None = None,
    region: np.ndarray | None = None,
):
    """Hold out the bottom ``fraction`` of the annotated rows of one image.

    Returns the training targets (a copy, the strip ignored) and a :class:`HeldOut`, or
    ``None`` instead of it when the strip holds nothing to score (no click, no object).
    """
    h = x.shape[1]
    region = np.ones(x.shape[1:], bool) if region is None else np.asarray(region, bool)
    row = strip_start(region, fraction)
    if row >= h:
        return targets, None
    classes, center_mask = targets.classes.copy(), targets.center_mask.copy()
    classes[row:] = IGNORE_INDEX
    center_mask[row:] = False
    trained = type(targets)(classes, targets.center, center_mask, targets.instances)
    r0 = max(row - CONTEXT_ROWS, 0)
    part = HeldOut(x[:, r0:], row - r0, _points_in(clicks, r0), _points_in(background, r0),
                   None if instances is None else np.asarray(instances)[r0:], region[r0:])
    has_clicks = part.clicks is not None and (part.clicks[:, 0] >= part.first_row).any()
    has_objects = part.instances is not None and bool(part.instances[part.first_row:].any())
    if not (has_clicks or has_objects or (part.instances is not None and region[row:].any())):
        return targets, None
    return trained, part


def _centroid_rows(labels: np.ndarray) -> np.ndarray:
    """Per object id, the mean row (y, the second-last axis) of its pixels."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    row_of = np.broadcast_to(np.arange(labels.shape[-2])[:, None], labels.shape[-2:])
    rows = np.bincount(labels.ravel(), weights=np.broadcast_to(row_of, labels.shape).ravel(),
                       minlength=n + 1)
    return rows / np.maximum(area, 1)


def _in_strip(labels: np.ndarray, part: HeldOut) -> np.ndarray:
    """Per object id: its centroid lies in the strip and inside the annotated region."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1)
    inside = np.bincount(labels.ravel(), weights=part.region.ravel(), minlength=n + 1)
    sel = (_centroid_rows(labels) >= part.first_row) & (inside >= 0.5 * np.maximum(area, 1))
    sel[0] = False
    return sel


def count_matches(pred: np.ndarray, part: HeldOut) -> tuple[int, int, int]:
    """(TP, FP, FN) of predicted objects against the held-out clicks of ``part``."""
    pred = np.asarray(pred).astype(np.int64, copy=False)
    shape = np.array(pred.shape)
    clicks = np.zeros((0, pred.ndim)) if part.clicks is None else part.clicks
    idx = np.clip(np.round(clicks).astype(int), 0, shape - 1)
    hit = pred[tuple(idx.T)] if len(idx) else np.zeros(0, np.int64)
    in_strip = clicks[:, -2] >= part.first_row
    strip_hits = hit[in_strip]
    context_hits = set(hit[~in_strip].tolist()) - {0}
    tp_ids = set(strip_hits.tolist()) - {0}
    tp = len(tp_ids)
    fn = int(in_strip.sum()) - tp
    scored = _in_strip(pred, part)
    unclicked = np.flatnonzero(scored)
    fp_ids = {int(i) for i in unclicked} - tp_ids - context_hits
    if part.background is not None and len(part.background):
        b = np.clip(np.round(part.background).astype(int), 0, shape - 1)
        b = b[b[:, -2] >= part.first_row]
        fp_ids |= set(pred[tuple(b.T)].tolist()) - {0} - tp_ids
    return tp, len(fp_ids), fn


def mask_matches_at(pred: np.ndarray, part: HeldOut, thresholds=DSB_THRESHOLDS) -> np.ndarray:
    """(TP, FP, FN) at each IoU threshold (int array (T, 3); the first threshold, 0.5,
    gives the F1) between the objects whose centroid is in the strip."""
    gt = np.asarray(part.instances).astype(np.int64, copy=False)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    gt_keep = _in_strip(gt, part)
    pr_keep = _in_strip(pred, part)
    return matches_at_thresholds(np.where(gt_keep[gt], gt, 0), np.where(pr_keep[pred], pred, 0),
                                 thresholds)


def score_holdout(
    parts: Sequence[HeldOut], instances_of: Callable[[np.ndarray], np.ndarray]
) -> HoldOutScore:
    """Pooled held-out F1 of the model behind ``instances_of`` (prepared input -> labels;
    a stack's part (C, Z, h, W) is passed with its voxel size: ``instances_of(x, scale)``)."""
    tp = fp = fn = 0
    kinds = set()
    masks = np.zeros((len(DSB_THRESHOLDS), 3), np.int64)
    for part in parts:
        pred = instances_of(part.x) if part.x.ndim == 3 else instances_of(part.x, part.scale)
        if part.instances is not None:
            at = mask_matches_at(pred, part)
            masks += at
            a, b, c = (int(v) for v in at[0])
            kinds.add("mask")
        else:
            a, b, c = count_matches(pred, part)
            kinds.add("count")
        tp, fp, fn = tp + a, fp + b, fn + c
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    outline = dsb_from_counts(masks) if kinds == {"mask"} else None
    return HoldOutScore(float(f1), tp, fp, fn, "+".join(sorted(kinds)) or "none", outline)
