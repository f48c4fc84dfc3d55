"""The layers a prediction shows: probability, semantic classes, instances and, with ground
truth labels, the match status of each predicted object and the missed true objects.

Each is named after its image (``"<image> instances"``) and updated in place on a rerun
(an unchanged one, e.g. the probability after a post-processing change, is left as it
is); layers that a run no longer produces (match status without ground truth) are
removed. :func:`outcome_layer_steps` gives the work one layer at a time, for the dock to
run one per event-loop turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import napari
import pandas as pd
from napari.layers import Image
from napari.utils.colormaps import DirectLabelColormap

from ..workflows import STATUS_VALUES, PredictOutcome
from .layers import set_output_layer

STATUS_COLORS = {"matched": "#2ecc40", "false positive": "#ff4136", "missed": "#ff9f1c"}


def outcome_layer_steps(viewer: napari.Viewer, image: Image, outcome: PredictOutcome,
                        out: dict[str, Any], instances: Any = None
                        ) -> list[Callable[[], None]]:
    """The layer work of ``outcome`` as steps, one layer each (adding a layer to napari is
    the costly part; run them one per event-loop turn). Each step fills ``out`` by kind.
    ``instances``: the pixels the instances layer shows (default: the outcome's own)."""
    name = image.name
    levels = outcome.levels or {}  # block-wise predictions: multiscale labels on disk

    def probability() -> None:
        if outcome.probability is None:  # block-wise: none kept; drop an earlier run's
            if f"{name} probability" in viewer.layers:
                viewer.layers.remove(f"{name} probability")
            return
        out["probability"] = set_output_layer(
            viewer, f"{name} probability", outcome.probability, "image", like=image,
            colormap="magma", blending="additive", contrast_limits=(0.0, 1.0), visible=False,
        )  # fmt: skip

    def semantic() -> None:
        out["semantic"] = set_output_layer(
            viewer, f"{name} semantic", levels.get("semantic", outcome.semantic), "labels",
            like=image, visible=False, **_multiscale(levels))
        names = outcome.class_names
        if list(out["semantic"].features.get("class", [])) != list(names):
            out["semantic"].features = pd.DataFrame({"index": range(len(names)),
                                                     "class": names})

    shown = outcome.instances if instances is None else instances

    def instances_step() -> None:
        out["instances"] = set_output_layer(
            viewer, f"{name} instances", levels.get("instances", shown), "labels",
            like=image, opacity=0.6, **_multiscale(levels))
        out["instances"].features = outcome.table.assign(index=outcome.table["label"])

    def stale() -> None:
        for key in ("status", "missed"):
            layer_name = f"{name} {'match status' if key == 'status' else 'missed'}"
            if getattr(outcome, key) is None and layer_name in viewer.layers:
                viewer.layers.remove(layer_name)

    def status() -> None:
        colors = {STATUS_VALUES[s]: STATUS_COLORS[s] for s in STATUS_VALUES}
        out["status"] = set_output_layer(
            viewer, f"{name} match status", outcome.status, "labels", like=image,
            opacity=0.5, visible=False,
        )  # fmt: skip
        out["status"].colormap = DirectLabelColormap(
            color_dict={**colors, None: "transparent", 0: "transparent"}
        )

    def missed() -> None:
        ids = outcome.missed_table["label"].tolist()
        out["missed"] = set_output_layer(
            viewer, f"{name} missed", outcome.missed, "labels", like=image, opacity=0.9
        )
        out["missed"].contour = 2
        out["missed"].colormap = DirectLabelColormap(
            color_dict={**dict.fromkeys(ids, STATUS_COLORS["missed"]), None: "transparent",
                        0: "transparent"}
        )
        out["missed"].features = outcome.missed_table.assign(index=outcome.missed_table["label"])

    steps = [probability, semantic, instances_step, stale]
    if outcome.status is not None:
        steps.append(status)
    if outcome.missed is not None:
        steps.append(missed)
    suffixes = {probability: "probability", semantic: "semantic", instances_step: "instances",
                status: "match status", missed: "missed"}
    for step, suffix in suffixes.items():  # adding a layer is long: a turn of its own
        step.own_turn = f"{name} {suffix}" not in viewer.layers
        step.repaints = True  # each layer repainted on its own
    return steps


def _multiscale(levels: dict) -> dict[str, Any]:
    """``multiscale=True`` for a list of label levels (napari would guess it too)."""
    return {"multiscale": True} if levels else {}
