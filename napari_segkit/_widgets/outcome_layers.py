"""The layers a prediction shows: probability, semantic classes, instances and, with ground
truth labels, the match status of each predicted object and the missed true objects.

Each is named after its image (``"<image> instances"``) and updated in place on a rerun;
layers that a run no longer produces (match status without ground truth) are removed.
"""

from __future__ import annotations

from typing import Any

import napari
import pandas as pd
from napari.layers import Image
from napari.utils.colormaps import DirectLabelColormap

from ..workflows import STATUS_VALUES, PredictOutcome
from .layers import set_output_layer

STATUS_COLORS = {"matched": "#2ecc40", "false positive": "#ff4136", "missed": "#ff9f1c"}


def show_outcome_layers(viewer: napari.Viewer, image: Image, outcome: PredictOutcome
                        ) -> dict[str, Any]:
    """Add or update the output layers of ``outcome``; returns them by kind."""
    name = image.name
    out: dict[str, Any] = {}
    levels = outcome.levels or {}  # block-wise predictions: multiscale labels on disk
    if outcome.probability is not None:
        out["probability"] = set_output_layer(
            viewer, f"{name} probability", outcome.probability, "image", like=image,
            colormap="magma", blending="additive", contrast_limits=(0.0, 1.0), visible=False,
        )  # fmt: skip
    elif f"{name} probability" in viewer.layers:  # an earlier in-memory run's
        viewer.layers.remove(f"{name} probability")
    out["semantic"] = set_output_layer(
        viewer, f"{name} semantic", levels.get("semantic", outcome.semantic), "labels",
        like=image, visible=False, **_multiscale(levels))
    names = outcome.class_names
    out["semantic"].features = pd.DataFrame({"index": range(len(names)), "class": names})
    out["instances"] = set_output_layer(
        viewer, f"{name} instances", levels.get("instances", outcome.instances), "labels",
        like=image, opacity=0.6, **_multiscale(levels))
    out["instances"].features = outcome.table.assign(index=outcome.table["label"])
    for key in ("status", "missed"):
        layer_name = f"{name} {'match status' if key == 'status' else 'missed'}"
        if getattr(outcome, key) is None and layer_name in viewer.layers:
            viewer.layers.remove(layer_name)
    if outcome.status is not None:
        colors = {STATUS_VALUES[s]: STATUS_COLORS[s] for s in STATUS_VALUES}
        out["status"] = set_output_layer(
            viewer, f"{name} match status", outcome.status, "labels", like=image,
            opacity=0.5, visible=False,
        )  # fmt: skip
        out["status"].colormap = DirectLabelColormap(
            color_dict={**colors, None: "transparent", 0: "transparent"}
        )
    if outcome.missed is not None:
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
    return out


def _multiscale(levels: dict) -> dict[str, Any]:
    """``multiscale=True`` for a list of label levels (napari would guess it too)."""
    return {"multiscale": True} if levels else {}
