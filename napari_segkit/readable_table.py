"""Per-object tables as people read them: plain column names with units, predicted
objects and missed ground-truth objects in one frame without mixing their ids.

:func:`napari_segkit.measure.object_table` names columns for code (``label``,
``centroid-0``, ``area_um2``); :func:`readable_table` renames them for the docks and
their CSV exports (``object id``, ``centroid y (px)``, ``area (µm²)``) and keeps the ids
apart: ``object id`` is the predicted object's id (empty on a missed ground-truth row),
``ground-truth id`` the ground-truth object's id (the matched one on a predicted row).
"""

from __future__ import annotations

import pandas as pd

from .measure import axis_names

OBJECT_ID = "object id"
GT_ID = "ground-truth id"

_UNIT_TEXT = {"um": "µm", "scaled": "scaled units"}
_POWERS = {"2": "²", "3": "³"}


def _unit(suffix: str) -> str:
    """'um2' -> 'µm²', 'px' -> 'px²' (areas), 'scaled' -> 'scaled units'."""
    power = _POWERS.get(suffix[-1], "") if suffix else ""
    name = suffix[:-1] if power else suffix
    return _UNIT_TEXT.get(name, name) + power


def readable_name(column: str, ndim: int = 2) -> str:
    """The readable name of one :func:`~napari_segkit.measure.object_table` column."""
    if column == "label":
        return OBJECT_ID
    if column == "matched_gt":
        return GT_ID
    if column == "best_iou":
        return "best IoU"
    if column.startswith("centroid-"):
        return f"centroid {axis_names(ndim)[int(column.split('-')[1])]} (px)"
    if column.startswith("centroid_"):
        _, axis, unit = column.split("_", 2)
        return f"centroid {axis} ({_unit(unit)})"
    for prefix, word in (("area_", "area"), ("volume_", "volume"),
                         ("equivalent_diameter_", "diameter")):
        if column.startswith(prefix):
            unit = column[len(prefix):]
            if unit == "px":
                unit = "px" if word == "diameter" else "px²"
            elif unit == "vox":
                unit = "voxels"
            elif unit == "scaled" and word != "diameter":
                unit = "scaled units" + ("²" if word == "area" else "³")
            else:
                unit = _unit(unit)
            return f"{word} ({unit})"
    return column.replace("_", " ")


def readable_table(objects: pd.DataFrame, missed: pd.DataFrame | None = None,
                   ndim: int = 2) -> pd.DataFrame:
    """Predicted ``objects`` and ``missed`` ground-truth objects (both as
    :func:`~napari_segkit.measure.object_table` / ``missed_objects`` give them) in one
    frame with readable columns: ids first, then status, IoU, sizes, positions."""
    frames = []
    pred = objects.copy()
    if "matched_gt" in pred:
        pred["matched_gt"] = pred["matched_gt"].where(pred["matched_gt"] > 0)
    frames.append(pred)
    if missed is not None and len(missed):
        gt = missed.copy()
        gt["matched_gt"] = gt["label"]
        gt["label"] = pd.NA
        frames.append(gt)
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else pred
    for column in ("label", "matched_gt"):
        if column in rows:
            rows[column] = pd.array(rows[column], dtype="Int64")
    rows = rows.rename(columns={c: readable_name(str(c), ndim) for c in rows.columns})
    return rows[_order(list(rows.columns))]


def _order(columns: list[str]) -> list[str]:
    first = ["image", OBJECT_ID, "status", "best IoU", GT_ID]
    lead = [c for c in first if c in columns]
    for word in ("area", "volume", "diameter", "centroid"):
        lead += [c for c in columns if c.startswith(word + " (") or
                 (word == "centroid" and c.startswith("centroid "))]
    seen = set()
    lead = [c for c in lead if not (c in seen or seen.add(c))]
    return lead + [c for c in columns if c not in lead]
