"""Segmentation quality: IoU, object matching, precision / recall / F1 / AP, counts.

All functions take label images as numpy arrays (2-D or 3-D): 0 is background and
every other integer is one object (ids need not be consecutive).

Conventions for ratios whose denominator is zero
------------------------------------------------
A ratio with nothing to count is 1.0 when there was nothing to get wrong:

* precision = TP / (TP + FP) is 1.0 when there are no predicted objects;
* recall = TP / (TP + FN) is 1.0 when there are no ground-truth objects;
* F1 = 2 TP / (2 TP + FP + FN) and the DSB score TP / (TP + FP + FN) are 1.0 when
  both images are empty, and 0.0 when exactly one of them is empty.

So an empty prediction on an image with objects scores precision 1, recall 0, F1 0,
AP 0; objects predicted on an empty image score precision 0, recall 1, F1 0, AP 0.
``mean_matched_iou`` is NaN (``None`` in the JSON dicts) when nothing was matched.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._common import background_mask

DSB_THRESHOLDS = np.arange(0.5, 1.0, 0.05)

# ---------------------------------------------------------------------------
# input checks


def as_labels(labels, name: str = "labels") -> np.ndarray:
    """``labels`` as an integer label image, or a ValueError naming ``name`` (bool -> uint8;
    whole-valued floats -> int64; negative values rejected)."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(
                f"{name} must be an integer label image (0 = background, 1..N = objects), "
                f"got dtype {arr.dtype}"
            )
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} has negative values; use 0 for background and 1..N for objects")
    return arr


def check_label_pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and prediction as label arrays of the same shape (else ValueError)."""
    gt = as_labels(gt, "ground truth")
    pred = as_labels(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(
            f"ground truth shape {gt.shape} and prediction shape {pred.shape} differ; "
            "compare label images of the same image"
        )
    return gt, pred


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids of objects, flat index image with 0 = background and i+1 = ids[i])."""
    flat = labels.ravel()
    if flat.dtype == np.uint64:
        flat = flat.astype(np.int64)
    hi = int(flat.max()) if flat.size else 0
    if hi < 2**24 and hi <= 4 * flat.size + 1024:
        present = np.bincount(flat, minlength=hi + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.zeros(hi + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids.astype(np.int64), lut[flat]
    uniq, inverse = np.unique(flat, return_inverse=True)
    if uniq.size and uniq[0] == 0:
        return uniq[1:].astype(np.int64), inverse.astype(np.int64)
    return uniq.astype(np.int64), inverse.astype(np.int64) + 1


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 1.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _detection_scores(tp: int, fp: int, fn: int) -> dict:
    """Counts with precision, recall and F1, as every summary reports them."""
    return {"tp": tp, "fp": fp, "fn": fn, "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn), "f1": _f1(tp, fp, fn)}


# ---------------------------------------------------------------------------
# IoU and matching


def iou_matrix(gt, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection over union of every ground-truth object with every predicted object.

    Computed in one pass from a joint histogram of the two label images.

    Parameters
    ----------
    gt, pred : array of int, same shape (2-D or 3-D)
        Label images, 0 = background.

    Returns
    -------
    iou : ndarray (n_gt, n_pred) float64
    gt_ids, pred_ids : ndarray of int64
        The object id of each row / column, sorted.
    """
    gt, pred = check_label_pair(gt, pred)
    gt_ids, g = compact_labels(gt)
    pred_ids, p = compact_labels(pred)
    n_g, n_p = gt_ids.size, pred_ids.size
    iou = np.zeros((n_g, n_p), dtype=np.float64)
    if n_g == 0 or n_p == 0:
        return iou, gt_ids, pred_ids
    gt_area = np.bincount(g, minlength=n_g + 1)[1:]
    pred_area = np.bincount(p, minlength=n_p + 1)[1:]
    both = (g > 0) & (p > 0)
    codes = (g[both] - 1) * n_p + (p[both] - 1)
    pair_codes, inter = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(pair_codes, n_p)
    union = gt_area[rows] + pred_area[cols] - inter
    iou[rows, cols] = inter / union
    return iou, gt_ids, pred_ids


def _match_pairs(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching with the most pairs of IoU >= threshold (ties: highest IoU).

    Returns row and column indices of the matched pairs.
    """
    if iou.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ok = iou >= threshold
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sub = iou[np.ix_(rows, cols)]
    sub_ok = sub >= threshold
    if threshold > 0.5 or (sub_ok.sum(axis=0).max() <= 1 and sub_ok.sum(axis=1).max() <= 1):
        # IoU > 0.5 can pair each object with at most one other: no choice to make.
        r, c = np.nonzero(sub_ok)
        return rows[r], cols[c]
    n = min(sub.shape)
    cost = -sub_ok.astype(np.float64) - sub / (2.0 * n)
    r, c = linear_sum_assignment(cost)
    keep = sub_ok[r, c]
    return rows[r[keep]], cols[c[keep]]


@dataclass
class InstanceMatch:
    """Result of matching predicted objects to ground-truth objects.

    Attributes
    ----------
    iou_threshold : float
    n_gt, n_pred : int
        Number of ground-truth and predicted objects.
    tp, fp, fn : int
        Matched pairs, unmatched predictions, unmatched ground-truth objects.
    precision, recall, f1 : float
        See the module docstring for empty images.
    mean_matched_iou : float
        Mean IoU of the matched pairs (NaN when there are none).
    pairs : list of (gt_id, pred_id, iou)
    gt_best_iou, pred_best_iou : dict id -> float
        Best IoU of each object with any object of the other image (0.0 if it touches none).
    missed_gt, false_pred : list of int
        Unmatched ground-truth ids (false negatives) and predicted ids (false positives).
    """

    iou_threshold: float
    n_gt: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_matched_iou: float
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    gt_best_iou: dict[int, float] = field(default_factory=dict)
    pred_best_iou: dict[int, float] = field(default_factory=dict)
    missed_gt: list[int] = field(default_factory=list)
    false_pred: list[int] = field(default_factory=list)


def _match_from_iou(iou, gt_ids, pred_ids, iou_threshold: float) -> InstanceMatch:
    rows, cols = _match_pairs(iou, iou_threshold)
    n_gt, n_pred = int(gt_ids.size), int(pred_ids.size)
    tp = int(rows.size)
    fp, fn = n_pred - tp, n_gt - tp
    matched_iou = iou[rows, cols]
    order = np.argsort(gt_ids[rows], kind="stable")
    pairs = [(int(gt_ids[rows[i]]), int(pred_ids[cols[i]]), float(matched_iou[i])) for i in order]
    gt_best = iou.max(axis=1) if n_pred else np.zeros(n_gt)
    pred_best = iou.max(axis=0) if n_gt else np.zeros(n_pred)
    matched_g = np.zeros(n_gt, dtype=bool)
    matched_g[rows] = True
    matched_p = np.zeros(n_pred, dtype=bool)
    matched_p[cols] = True
    return InstanceMatch(
        iou_threshold=float(iou_threshold),
        n_gt=n_gt,
        n_pred=n_pred,
        **_detection_scores(tp, fp, fn),
        mean_matched_iou=float(matched_iou.mean()) if tp else math.nan,
        pairs=pairs,
        gt_best_iou={int(i): float(v) for i, v in zip(gt_ids, gt_best, strict=True)},
        pred_best_iou={int(i): float(v) for i, v in zip(pred_ids, pred_best, strict=True)},
        missed_gt=[int(i) for i in gt_ids[~matched_g]],
        false_pred=[int(i) for i in pred_ids[~matched_p]],
    )


def _check_threshold(iou_threshold: float) -> None:
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def match_instances(gt, pred, iou_threshold: float = 0.5) -> InstanceMatch:
    """Match predicted objects one-to-one to ground-truth objects.

    A pair counts when its IoU is >= ``iou_threshold``. The matching has the most
    such pairs (Hungarian algorithm; ties broken by higher IoU). For thresholds above
    0.5 the matching is unique, since an object can overlap at most one other object
    by more than half of their union.

    Parameters
    ----------
    gt, pred : array of int, same shape
        Ground-truth and predicted label images (0 = background).
    iou_threshold : float
        Minimum IoU of a matched pair, in (0, 1].
    """
    _check_threshold(iou_threshold)
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    return _match_from_iou(iou, gt_ids, pred_ids, float(iou_threshold))


def _counts_at(iou: np.ndarray, thresholds: Iterable[float]) -> np.ndarray:
    """(TP, FP, FN) of the matching at each IoU threshold, from an IoU matrix (gt x pred)."""
    n_gt, n_pred = iou.shape
    rows = []
    for t in thresholds:
        _check_threshold(t)
        tp = _match_pairs(iou, float(t))[0].size
        rows.append((tp, n_pred - tp, n_gt - tp))
    return np.array(rows, np.int64).reshape(-1, 3)


def dsb_from_counts(counts) -> float:
    """The DSB score of (TP, FP, FN) counts per IoU threshold (an array (T, 3), e.g.
    :func:`matches_at_thresholds` summed over images for a pooled score): the mean over
    thresholds of TP / (TP + FP + FN); 1.0 at a threshold with nothing to match."""
    counts = np.asarray(counts).reshape(-1, 3)
    scores = [_ratio(tp, tp + fp + fn) for tp, fp, fn in counts]
    return float(np.mean(scores)) if scores else math.nan


def _dsb_from_iou(iou: np.ndarray, thresholds: Iterable[float]) -> float:
    return dsb_from_counts(_counts_at(iou, thresholds))


def matches_at_thresholds(gt, pred, thresholds: Sequence[float] = DSB_THRESHOLDS) -> np.ndarray:
    """(TP, FP, FN) of the one-to-one matching at each IoU threshold: int array (T, 3);
    :func:`dsb_from_counts` turns them (summed over images, for a pooled score) into the
    DSB score."""
    return _counts_at(iou_matrix(gt, pred)[0], thresholds)


def average_precision_dsb(gt, pred, thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """Mean over IoU thresholds of TP / (TP + FP + FN) (2018 Data Science Bowl score).

    Default thresholds: 0.50, 0.55, ..., 0.95. Both images empty gives 1.0; exactly
    one empty gives 0.0.
    """
    iou, _, _ = iou_matrix(gt, pred)
    return _dsb_from_iou(iou, thresholds)


def count_objects(labels) -> int:
    """Number of distinct non-zero ids in a label image."""
    ids, _ = compact_labels(as_labels(labels, "labels"))
    return int(ids.size)


def count_error(gt, pred) -> int:
    """Signed count error: number of predicted objects minus number of true objects."""
    gt, pred = check_label_pair(gt, pred)
    return count_objects(pred) - count_objects(gt)


# ---------------------------------------------------------------------------
# semantic


def semantic_scores(
    gt, pred, n_classes: int | None = None, *, classes: Sequence[int] | None = None
) -> dict:
    """Per-class IoU and Dice of two semantic label images.

    Parameters
    ----------
    gt, pred : array of int, same shape
        Class index per pixel.
    n_classes : int, optional
        Score classes ``0 .. n_classes-1``. Default: ``max(gt.max(), pred.max()) + 1``.
    classes : sequence of int, optional
        Score these class ids instead (overrides ``n_classes``).

    Returns
    -------
    dict
        ``{class_id: {"iou": float, "dice": float}, ..., "mean": {...},
        "mean_foreground": {...}}``. A class absent from both images has NaN scores and
        is left out of the means (which are NaN if every class is absent).
        ``mean_foreground`` leaves out class 0 (background).
    """
    gt, pred = check_label_pair(gt, pred)
    hi = int(max(gt.max(initial=0), pred.max(initial=0)))
    if classes is None:
        classes = range(n_classes if n_classes is not None else hi + 1)
    classes = [int(c) for c in classes]
    k = max(hi, max(classes, default=0)) + 1
    joint = np.bincount(
        gt.ravel().astype(np.int64) * k + pred.ravel().astype(np.int64), minlength=k * k
    )
    conf = joint.reshape(k, k)
    inter = np.diag(conf).astype(np.float64)
    gt_area = conf.sum(axis=1).astype(np.float64)
    pred_area = conf.sum(axis=0).astype(np.float64)
    out: dict = {}
    for c in classes:
        union = gt_area[c] + pred_area[c] - inter[c]
        total = gt_area[c] + pred_area[c]
        if total == 0:
            out[c] = {"iou": math.nan, "dice": math.nan}
        else:
            out[c] = {"iou": float(inter[c] / union), "dice": float(2 * inter[c] / total)}

    def _mean(keys):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {
                m: float(np.nanmean([out[c][m] for c in keys])) if keys else math.nan
                for m in ("iou", "dice")
            }

    out["mean"] = _mean(classes)
    out["mean_foreground"] = _mean([c for c in classes if c != 0])
    return out


# ---------------------------------------------------------------------------
# clicks


def points_vs_instances(points, pred_labels, classes=None) -> dict:
    """Score predicted objects against one click per true object.

    A click on an object (class other than ``"background"``) inside a predicted object
    matches it. Matching is one-to-one: an object hit by several clicks counts one TP
    and each further click is a FN (objects merged); a click on background is a FN;
    a predicted object with no object click is a FP. Background clicks do not change
    TP/FP/FN; ``background_clicks_in_objects`` reports how many fell inside objects.

    Parameters
    ----------
    points : array (N, D)
        Click coordinates in data pixels (napari data coordinates), D = labels.ndim.
    pred_labels : array of int
        Predicted instance labels.
    classes : sequence of str, optional
        Class of each click (e.g. ``"nucleus"`` / ``"background"``). Default: all objects.

    Returns
    -------
    dict with tp, fp, fn, precision, recall, f1, n_clicks (object clicks inside the
    image), n_pred, n_outside (clicks ignored), background_clicks_in_objects.
    """
    labels = as_labels(pred_labels, "prediction")
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, labels.ndim)
    if pts.ndim != 2 or pts.shape[1] != labels.ndim:
        raise ValueError(
            f"points have shape {pts.shape} but the labels are {labels.ndim}-D {labels.shape}; "
            f"give one (N, {labels.ndim}) row per click"
        )
    if classes is not None:
        classes = list(np.asarray(classes, dtype=object).ravel())
        if len(classes) != len(pts):
            raise ValueError(
                f"got {len(classes)} classes for {len(pts)} points; give one per point"
            )
    is_bg = background_mask(classes, len(pts))
    idx = np.round(pts).astype(np.int64) if len(pts) else np.zeros((0, labels.ndim), np.int64)
    finite = np.all(np.isfinite(pts), axis=1)
    inside = finite & np.all((idx >= 0) & (idx < np.asarray(labels.shape)), axis=1)
    n_outside = int((~inside).sum())
    if n_outside:
        warnings.warn(
            f"{n_outside} click(s) lie outside the image {labels.shape} and were ignored",
            UserWarning,
            stacklevel=2,
        )
    hit = np.zeros(len(pts), dtype=np.int64)
    if inside.any():
        hit[inside] = labels[tuple(idx[inside].T)]
    obj = inside & ~is_bg
    n_clicks = int(obj.sum())
    hit_ids = np.unique(hit[obj])
    hit_ids = hit_ids[hit_ids > 0]
    n_pred = count_objects(labels)
    tp = int(hit_ids.size)
    fn = n_clicks - tp
    fp = n_pred - tp
    return {
        **_detection_scores(tp, fp, fn),
        "n_clicks": n_clicks,
        "n_pred": n_pred,
        "n_outside": n_outside,
        "background_clicks_in_objects": int(np.count_nonzero(hit[inside & is_bg])),
    }


# ---------------------------------------------------------------------------
# reports


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def evaluate_instances(gt, pred, iou_threshold: float = 0.5) -> dict:
    """All instance scores of one image as a JSON-serialisable dict.

    Keys: n_gt, n_pred, iou_threshold, tp, fp, fn, precision, recall, f1,
    mean_matched_iou (None if nothing matched), ap_dsb, count_error (n_pred - n_gt),
    relative_count_error ((n_pred - n_gt) / n_gt; 0.0 if both are empty, None if only
    the ground truth is).
    """
    return match_and_evaluate(gt, pred, iou_threshold)[1]


def match_and_evaluate(gt, pred, iou_threshold: float = 0.5) -> tuple[InstanceMatch, dict]:
    """:func:`match_instances` and :func:`evaluate_instances` from one IoU matrix (the
    matrix is most of their cost; the Predict dock needs both at every post-processing
    change)."""
    _check_threshold(iou_threshold)
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    m = _match_from_iou(iou, gt_ids, pred_ids, float(iou_threshold))
    err = m.n_pred - m.n_gt
    rel = err / m.n_gt if m.n_gt else (0.0 if m.n_pred == 0 else None)
    scores = {key: getattr(m, key) for key in ("n_gt", "n_pred", "tp", "fp", "fn",
                                               "precision", "recall", "f1")}
    return m, {
        **scores,
        "iou_threshold": float(iou_threshold),
        "mean_matched_iou": _json_float(m.mean_matched_iou),
        "ap_dsb": _dsb_from_iou(iou, DSB_THRESHOLDS),
        "count_error": int(err),
        "relative_count_error": None if rel is None else float(rel),
    }


def summarise(results: Sequence[Mapping]) -> dict:
    """Pool per-image results of :func:`evaluate_instances` over a data set.

    TP, FP and FN are summed before precision / recall / F1 are computed (so large
    images weigh more); ``mean_matched_iou`` is weighted by TP; ``ap_dsb`` is the mean
    over images; ``median_abs_count_error`` the median of |n_pred - n_gt| per image.
    """
    results = list(results)
    tp = sum(int(r["tp"]) for r in results)
    fp = sum(int(r["fp"]) for r in results)
    fn = sum(int(r["fn"]) for r in results)
    n_gt = sum(int(r["n_gt"]) for r in results)
    n_pred = sum(int(r["n_pred"]) for r in results)
    weighted = [
        (r["mean_matched_iou"], int(r["tp"]))
        for r in results
        if r.get("mean_matched_iou") is not None and int(r["tp"]) > 0
    ]
    w_total = sum(w for _, w in weighted)
    mean_iou = sum(v * w for v, w in weighted) / w_total if w_total else None
    aps = [r["ap_dsb"] for r in results if r.get("ap_dsb") is not None]
    abs_err = [abs(int(r["n_pred"]) - int(r["n_gt"])) for r in results]
    return {
        "n_images": len(results),
        "n_gt": n_gt,
        "n_pred": n_pred,
        **_detection_scores(tp, fp, fn),
        "mean_matched_iou": _json_float(mean_iou) if mean_iou is not None else None,
        "ap_dsb": float(np.mean(aps)) if aps else None,
        "count_error": n_pred - n_gt,
        "median_abs_count_error": float(np.median(abs_err)) if abs_err else None,
    }
