"""Readable text of outcomes: of a prediction (size columns and units, summary counts, the
counts and scores lines the Predict dock shows) and of a training (its held-out score in
terms a user can check, how many of their held-out clicks the model finds, not a bare F1
or IoU; which weights it kept), for the docks and the command line alike.

Pure pandas / numpy (no Qt, no napari, no torch); :mod:`napari_segkit.workflows` fills
``PredictOutcome.summary`` with :func:`summary_counts`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "counts_text",
    "kept_text",
    "score_name",
    "score_text",
    "score_value",
    "scores_text",
    "size_column",
    "size_unit",
    "summary_counts",
]


def size_column(table: pd.DataFrame) -> str:
    """The physical size column (``area_um2``...) when there is one with a unit, else the
    pixel one (a scale without a unit gives no unit to show)."""
    sizes = [c for c in table.columns if c.startswith(("area_", "volume_"))]
    physical = [c for c in sizes if not c.endswith(("_px", "_vox", "_scaled"))]
    return (physical or sizes or ["label"])[0]


def size_unit(column: str) -> str:
    """Readable unit of a size column: 'px²', 'µm²', 'µm³', 'voxels' or 'units²'."""
    suffix = column.split("_", 1)[-1]
    if suffix in ("px", "vox"):
        return "px²" if suffix == "px" else "voxels"
    if suffix == "scaled":
        return "units²" if column.startswith("area") else "units³"
    power = {"2": "²", "3": "³"}.get(suffix[-1], "")
    name = suffix[:-1] if power else suffix
    return ("µm" if name == "um" else name) + power


def summary_counts(table: pd.DataFrame, pixels: int, foreground_pixels: int, class_pixels,
                   class_names: list[str], **extra: float) -> dict[str, Any]:
    """Summary counts of one prediction: objects, their mean / median size, the
    foreground fraction and each class's fraction of the ``pixels`` of the image."""
    col = size_column(table)
    sizes = table[col].to_numpy(dtype=float) if len(table) else np.zeros(0)
    pixels = max(1, int(pixels))
    row: dict[str, Any] = {
        "n_objects": len(table),
        f"mean_{col}": float(sizes.mean()) if sizes.size else float("nan"),
        f"median_{col}": float(np.median(sizes)) if sizes.size else float("nan"),
        "foreground_fraction": float(foreground_pixels) / pixels,
        **extra,
    }
    for name, count in zip(class_names, class_pixels, strict=False):
        row[f"{name}_fraction"] = float(count) / pixels
    return row


def counts_text(summary: dict, table: pd.DataFrame) -> str:
    """'132 objects · mean area 210 px² · foreground 18%'."""
    n = int(summary.get("n_objects", 0))
    col = size_column(table)
    mean = summary.get(f"mean_{col}", float("nan"))
    what = "area" if col.startswith("area") else "volume"
    text = f"{n} object{'s' if n != 1 else ''}"
    if n:
        value = f"{mean:,.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
        text += f" · mean {what} {value} {size_unit(col)}"
    return text + f" · foreground {summary.get('foreground_fraction', 0.0):.0%}"


def scores_text(summary: dict) -> str:
    """Scores against ground truth labels or clicks in short lines; '' without ground
    truth; what was left out (clicks outside the image), or that there is nothing to score
    against."""

    def fmt(value) -> str:
        return "n/a" if value is None or value != value else f"{value:.2f}"

    if "nothing_to_score" in summary:
        return f"No scores: {summary['nothing_to_score']}:\nnothing to score against."
    if "gt_f1" in summary:
        return (
            f"vs ground truth: F1@0.5 {fmt(summary['gt_f1'])} · AP {fmt(summary['gt_ap_dsb'])}"
            f" · mean IoU {fmt(summary['gt_mean_matched_iou'])}\n"
            f"precision {fmt(summary['gt_precision'])} · recall {fmt(summary['gt_recall'])}\n"
            f"{summary['gt_tp']} matched · {summary['gt_fp']} false positive · "
            f"{summary['gt_fn']} missed\n({summary['gt_n_gt']} true objects)"
        )
    if "clicks_f1" in summary:
        text = (
            f"vs clicks: count F1 {fmt(summary['clicks_f1'])}\nprecision "
            f"{fmt(summary['clicks_precision'])} · recall {fmt(summary['clicks_recall'])}\n"
            f"{summary['clicks_tp']} clicked objects found\n{summary['clicks_fp']} objects "
            f"without a click · {summary['clicks_fn']} clicks missed"
        )
        outside = int(summary.get("clicks_n_outside", 0))
        if outside:
            text += (f"\n{outside} of {summary['clicks_n_total']} clicks outside the image "
                     "(not scored)")
        return text
    return ""


# --------------------------------------------------------------------------- training
#: fewer held-out clicks / objects than this: the score says it cannot judge much
FEW_HELD_OUT = 10


def _held_out(kind: str | None) -> str:
    return {"count": "clicks", "mask": "objects", "count+mask": "clicks and objects"}.get(
        kind or "", "annotations")


def score_name(kind: str | None) -> str:
    """Legend of the score curve."""
    if kind == "iou":
        return "held-out labels: overlap"
    return f"held-out {_held_out(kind)} found (F1)"


def score_value(event) -> float | None:
    """The 0-1 score the plot shows: F1 of the counts, else the foreground IoU."""
    return event.val_f1 if event.val_f1 is not None else event.val_iou


def score_text(event) -> str:
    """'held-out clicks: 18 of 22 found · 3 objects without a click (F1 0.84)'; '' when
    the event carries no score."""
    kind, counts = event.val_kind, event.val_counts
    if counts is not None:
        tp, fp, fn = (int(c) for c in counts)
        what = _held_out(kind)
        extra = "objects without a click" if kind == "count" else "extra objects"
        f1 = f" (F1 {event.val_f1:.2f})" if event.val_f1 is not None else ""
        matched = "found" if kind == "count" else "matched"
        text = f"held-out {what}: {tp} of {tp + fn} {matched} · {fp} {extra}{f1}"
        if tp + fn < FEW_HELD_OUT:
            text += (f" (only {tp + fn}: too few to judge; annotate more nuclei in the bottom "
                     "fifth of the annotated area, which training holds out)")
        return text
    if event.val_iou is not None and np.isfinite(event.val_iou):
        return f"held-out labels: foreground overlap {event.val_iou:.2f}"
    return ""


def kept_text(event) -> str:
    """Which weights a finished training (its last event) kept, in words."""
    if event.start_kept:
        return ("the starting model kept (the fine-tuned weights did not do better on your "
                "held-out annotations)")
    if event.blend:
        return (f"a blend of the weights of step {event.kept_step} ({event.blend:.0%}) and the "
                f"starting model's ({1 - event.blend:.0%}) kept (its outlines fit your "
                "held-out masks better)")
    return f"the weights of step {event.kept_step} kept" if event.kept_step else \
        "the last weights kept"
