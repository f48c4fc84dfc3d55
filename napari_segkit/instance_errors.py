"""Which instance errors a segmentation makes: over-split objects and merged clumps.

F1 and AP say *how much* is wrong; this module says *what*: a ground-truth object
broken into several predicted pieces (over-splitting, typical of large nuclei) or one
predicted object covering several ground-truth objects (a merged clump).

Rule (symmetric, size-independent): a predicted object *lies in* a ground-truth object
when at least ``fraction`` (default half) of the predicted object's pixels fall in it;
a ground-truth object is **split** when two or more predicted objects lie in it.
Conversely a ground-truth object *lies in* a predicted object when at least
``fraction`` of its pixels fall in it, and a predicted object is a **merge** when two
or more ground-truth objects lie in it. With ``fraction >= 0.5`` every object lies in
at most one object of the other image, so each piece is counted once.

numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import check_label_pair, compact_labels


@dataclass
class SplitMergeCounts:
    """Split / merge counts of one image (see the module docstring).

    Attributes
    ----------
    n_gt, n_pred : int
        Objects in the ground truth and in the prediction.
    split_gt : int
        Ground-truth objects with two or more predicted objects lying in them.
    split_pieces : int
        Predicted objects lying in those split ground-truth objects.
    merged_pred : int
        Predicted objects with two or more ground-truth objects lying in them.
    merged_gt : int
        Ground-truth objects lying in those merged predictions.
    median_area_gt, median_area_split_gt, median_area_merged_gt : float
        Median pixel area of all, of the split and of the merged ground-truth objects
        (NaN where there are none).
    """

    n_gt: int
    n_pred: int
    split_gt: int
    split_pieces: int
    merged_pred: int
    merged_gt: int
    median_area_gt: float
    median_area_split_gt: float
    median_area_merged_gt: float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _overlaps(gt: np.ndarray, pred: np.ndarray):
    gt_ids, g = compact_labels(gt)
    _, p = compact_labels(pred)
    n_g, n_p = int(g.max(initial=0)), int(p.max(initial=0))
    gt_area = np.bincount(g.ravel(), minlength=n_g + 1)[1:]
    pred_area = np.bincount(p.ravel(), minlength=n_p + 1)[1:]
    both = (g > 0) & (p > 0)
    codes = (g[both] - 1).astype(np.int64) * max(n_p, 1) + (p[both] - 1)
    pair, inter = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(pair, max(n_p, 1))
    return gt_ids, n_g, n_p, gt_area, pred_area, rows, cols, inter


def _check_fraction(fraction: float) -> None:
    if not 0.5 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0.5, 1], got {fraction}")


def _pieces(n_g, pred_area, rows, cols, inter, fraction) -> np.ndarray:
    """Per (compact) ground-truth object, how many predicted objects lie in it."""
    return np.bincount(rows[inter >= fraction * pred_area[cols]], minlength=n_g)


def split_objects(gt, pred, fraction: float = 0.5) -> np.ndarray:
    """The ids of the ground-truth objects that ``pred`` splits (two or more predicted
    objects lie in each, see the module docstring), ascending."""
    _check_fraction(fraction)
    gt, pred = check_label_pair(gt, pred)
    gt_ids, n_g, _, _, pred_area, rows, cols, inter = _overlaps(gt, pred)
    return gt_ids[_pieces(n_g, pred_area, rows, cols, inter, fraction) >= 2]


def split_merge_counts(gt, pred, fraction: float = 0.5) -> SplitMergeCounts:
    """Count over-split ground-truth objects and merged predictions of one image.

    Parameters
    ----------
    gt, pred : integer label images of the same shape (0 = background)
    fraction : float
        Share of an object's pixels that must fall in an object of the other image for
        it to *lie in* that object, in [0.5, 1].
    """
    _check_fraction(fraction)
    gt, pred = check_label_pair(gt, pred)
    _, n_g, n_p, gt_area, pred_area, rows, cols, inter = _overlaps(gt, pred)
    pieces = _pieces(n_g, pred_area, rows, cols, inter, fraction)
    split = pieces >= 2
    gt_in_pred = inter >= fraction * gt_area[rows]
    held = np.bincount(cols[gt_in_pred], minlength=n_p)
    merged = held >= 2
    merged_gt_mask = np.zeros(n_g, bool)
    merged_gt_mask[rows[gt_in_pred & merged[cols]]] = True

    def median(a):
        return float(np.median(a)) if a.size else float("nan")

    return SplitMergeCounts(
        n_gt=n_g, n_pred=n_p,
        split_gt=int(split.sum()), split_pieces=int(pieces[split].sum()),
        merged_pred=int(merged.sum()), merged_gt=int(held[merged].sum()),
        median_area_gt=median(gt_area),
        median_area_split_gt=median(gt_area[split]),
        median_area_merged_gt=median(gt_area[merged_gt_mask]),
    )


def summarise_split_merge(rows: Sequence[Mapping | SplitMergeCounts]) -> dict:
    """Sum the counts of several images (medians are not pooled)."""
    keys = ("n_gt", "n_pred", "split_gt", "split_pieces", "merged_pred", "merged_gt")
    dicts = [r.to_dict() if isinstance(r, SplitMergeCounts) else r for r in rows]
    return {k: int(sum(int(d[k]) for d in dicts)) for k in keys}
