"""From a prediction's probabilities to what a user judges: instances made with the chosen
post-processing settings, the object table, the match with ground truth and honest scores.

:func:`measure_prediction` is the part of :func:`napari_segkit.workflows.predict_and_measure`
after the forward pass. The Predict dock runs it alone on the probabilities it kept when a
post-processing control changes (no new forward pass).

Ground truth that cannot be scored is said so instead of scored: an empty label image,
a Points layer without object clicks, or clicks that all lie outside the image give no
scores but a ``nothing_to_score`` reason; clicks partly outside give a warning that says
how many were left out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import measure, metrics
from ._common import background_mask
from .postprocess import SPLIT_H_RANGE, SPLIT_LEVELS, STACK_SPLIT_H_RANGE, split_kwargs
from .prediction import instances_of
from .test_time_zoom import scaled_sizes

__all__ = ["SPLIT_H_RANGE", "SPLIT_LEVELS", "STACK_SPLIT_H_RANGE", "Measured",
           "PostprocessSettings", "measure_prediction"]

#: Values of the match-status image: matched and false-positive predicted objects.
STATUS_VALUES = {"matched": 1, "false positive": 2}


@dataclass(frozen=True)
class PostprocessSettings:
    """What the user may change after a prediction without predicting again.

    fg_threshold
        A pixel is foreground when its foreground probability exceeds this (0-1).
    min_size
        Objects smaller than this many pixels (voxels) of the image are removed; None
        keeps the default (12 px in 2-D, 40 voxels in 3-D, scaled with a test-time zoom).
    split
        0: the model's default seeds (centre map > 0.5); 1..:data:`SPLIT_LEVELS`: seeds
        that split touching nuclei more as the level rises (h-maxima of the centre map
        with h from 0.5 down to 0.05; for a model without a centre map, interior seeds at
        a threshold rising from 0.54 to 0.9).
    """

    fg_threshold: float = 0.5
    min_size: int | None = None
    split: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.fg_threshold) < 1.0:
            raise ValueError(f"the probability threshold must lie between 0 and 1, got "
                             f"{self.fg_threshold}")
        if self.min_size is not None and int(self.min_size) < 0:
            raise ValueError(f"the minimum object size must be >= 0 pixels, got {self.min_size}")
        if not 0 <= int(self.split) <= SPLIT_LEVELS:
            raise ValueError(f"the split level must be 0..{SPLIT_LEVELS}, got {self.split}")

    def postprocess_kwargs(self, has_center: bool, zoom: float = 1.0,
                           stack: bool = False) -> dict[str, Any]:
        """Keyword arguments of :func:`napari_segkit.postprocess.instances_from_probabilities`
        for probabilities at the image's pixels (after a test-time ``zoom``), or of
        :func:`napari_segkit.instances3d.stack_instances` for a ``stack`` (the split level
        sets the h of its 3-D seeds)."""
        kwargs: dict[str, Any] = scaled_sizes({}, zoom) if zoom != 1.0 else {}
        kwargs["fg_threshold"] = float(self.fg_threshold)
        if self.min_size is not None:
            kwargs["min_size"] = int(self.min_size)
        kwargs.update(split_kwargs(int(self.split), has_center, stack))
        return kwargs


@dataclass
class Measured:
    """Instances of a prediction with their table, match with ground truth and scores."""

    instances: np.ndarray
    table: pd.DataFrame
    missed_table: pd.DataFrame | None = None
    missed: np.ndarray | None = None  # labels of the missed GT objects (GT ids)
    status: np.ndarray | None = None  # 1 matched, 2 false positive, per predicted pixel
    scores: dict | None = None
    click_scores: dict | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def measure_prediction(
    probabilities: np.ndarray, n_classes: int, image: np.ndarray, *,
    settings: PostprocessSettings | None = None, zoom: float = 1.0,
    geometry: dict | None = None, gt_labels: np.ndarray | None = None,
    gt_points: np.ndarray | None = None, gt_classes: list | None = None,
    gt_name: str = "ground truth", tile_size: int = 256,
) -> Measured:
    """Instances of ``probabilities`` (K class channels then the extra ones, at the image's
    pixels), their table and, with ground truth, the match and the scores.

    ``settings`` None gives :func:`napari_segkit.prediction.predict`'s defaults;
    ``geometry`` holds ``scale``, ``units``, ``translate`` for the physical columns.
    """
    probs = np.asarray(probabilities)
    has_center = probs.shape[0] > n_classes
    if settings is None:
        kwargs = scaled_sizes({}, zoom) if zoom != 1.0 else {}
    else:
        kwargs = settings.postprocess_kwargs(has_center, zoom, stack=probs.ndim == 4)
    geometry = geometry or {}
    if probs.ndim == 4 and geometry.get("scale") is not None:  # a stack: 3-D voxel size
        kwargs["scale"] = tuple(float(v) for v in np.ravel(geometry["scale"]))[-3:]
    instances = np.asarray(instances_of(probs, n_classes, tile_size=tile_size, **kwargs))
    match = None
    out = Measured(instances=instances, table=pd.DataFrame())
    if gt_labels is not None:
        gt = np.asarray(gt_labels)
        if gt.shape != instances.shape:
            raise ValueError(
                f"ground truth shape {gt.shape} differs from the image's {instances.shape}; "
                "choose the ground truth labels of this image"
            )
        if gt.any():
            match, out.scores = metrics.match_and_evaluate(gt, instances)
            out.missed_table = measure.missed_objects(gt, instances, image, match=match,
                                                      **geometry)
            out.missed = np.where(np.isin(gt, match.missed_gt), gt, 0)
            out.summary.update({f"gt_{key}": value for key, value in out.scores.items()})
        else:
            _nothing_to_score(out, f"ground truth {gt_name!r} has no objects")
    out.table = measure.object_table(instances, image, match=match, **geometry)
    if match is not None:
        out.status = status_image(instances, out.table)
    if gt_points is not None:
        _score_clicks(out, np.asarray(gt_points, float), gt_classes, gt_name)
    return out


def _nothing_to_score(out: Measured, reason: str) -> None:
    out.summary["nothing_to_score"] = reason
    out.warnings.append(f"{reason[0].upper()}{reason[1:]}: nothing to score against.")


def _score_clicks(out: Measured, points: np.ndarray, classes, gt_name: str) -> None:
    """Count scores against one click per object; says what was left out and why."""
    instances = out.instances
    pts = points.reshape(-1, instances.ndim) if points.size == 0 else points
    total = len(pts)
    if pts.ndim != 2 or pts.shape[1] != instances.ndim:
        raise ValueError(f"the clicks are {pts.shape[-1]}-D but the image is "
                         f"{instances.ndim}-D; choose clicks drawn on this image")
    idx = np.round(pts)
    inside = np.all(np.isfinite(pts), axis=1) & np.all(
        (idx >= 0) & (idx < np.asarray(instances.shape)), axis=1)
    n_outside = int(total - inside.sum())
    out.summary.update(clicks_n_total=total, clicks_n_outside=n_outside)
    objects = inside & ~background_mask(classes, total)
    if total == 0:
        return _nothing_to_score(out, f"ground truth {gt_name!r} has no clicks")
    if n_outside == total:
        return _nothing_to_score(
            out, f"all {n_outside} of {total} clicks of {gt_name!r} lie outside the image")
    if n_outside:
        out.warnings.append(f"{n_outside} of {total} ground-truth clicks of {gt_name!r} lie "
                            "outside the image and were not scored.")
    if not objects.any():
        return _nothing_to_score(out, f"{gt_name!r} has only background clicks "
                                      "in the image")
    with warnings.catch_warnings():  # the clicks outside are reported above
        warnings.simplefilter("ignore", UserWarning)
        out.click_scores = metrics.points_vs_instances(pts, instances, classes)
    out.summary.update({f"clicks_{key}": value for key, value in out.click_scores.items()})


def status_image(instances: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """1 on matched predicted objects, 2 on false positives (uint8)."""
    lut = np.zeros(int(instances.max(initial=0)) + 1, np.uint8)
    for status, value in STATUS_VALUES.items():
        ids = table.loc[table["status"] == status, "label"].to_numpy(dtype=np.int64)
        lut[ids] = value
    return lut[instances]
