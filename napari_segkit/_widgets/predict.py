"""'Predict & measure' dock: segment an image with a model, count and measure the objects,
and score them against ground truth (labels or one click per object) when there is one.

Thin: predicting, measuring and scoring is one call of
:func:`napari_segkit.workflows.run_prediction` (shared with the CLI and the demo), run in a
``thread_worker``; the GUI only shows progress and turns the outcome into layers.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image, Labels, Points
from napari.qt.threading import thread_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QFileDialog

from .._common import classes_of
from ..workflows import (
    DEFAULT_MODEL,
    STATUS_VALUES,
    PredictOutcome,
    PredictRequest,
    counts_text,
    display_order,
    run_prediction,
    scores_text,
    size_column,
    size_unit,
)
from .corrections import CorrectionPanel
from .layers import layers_of, set_output_layer, spatial_shape
from .plots import HistogramCanvas
from .session import SESSION
from .table import ObjectTable

log = logging.getLogger("napari_segkit")

MODEL_FILE = "Model file..."
JUST_TRAINED = "Just trained"
NO_GT = "none"

STATUS_COLORS = {"matched": "#2ecc40", "false": "#ff4136", "missed": "#ff9f1c"}


# ---------------------------------------------------------------------------
# the dock


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signals)."""

    progressed = Signal(int, int)
    staged = Signal(str)


class PredictWidget(Container):
    """Segment an image, count and measure the objects, compare with ground truth."""

    def __init__(self, napari_viewer: napari.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="Image", choices=self._images)
        self.model_source = ComboBox(label="Model", choices=[DEFAULT_MODEL, MODEL_FILE])
        self.model_file = FileEdit(label="Model file", mode="r", filter="*.safetensors")
        self.ground_truth = ComboBox(label="Ground truth", choices=self._gt_layers)
        self.tta = CheckBox(text="Average over mirror images (4x slower)", value=False,
                            tooltip="test-time augmentation: predict the image and its 3 "
                                    "mirror images and average")
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="Progress")
        self.stage = Label(value="")
        self.counts = Label(value="")
        self.scores = Label(value="")
        self.only_selected = CheckBox(text="Show only the selected object", value=False)
        self.export_table_button = PushButton(text="Export table (CSV)")
        self.export_summary_button = PushButton(text="Export summary (CSV)")
        super().__init__(
            widgets=[
                self.image,
                self.model_source,
                self.model_file,
                self.ground_truth,
                self.tta,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.stage,
                self.counts,
                self.scores,
                self.only_selected,
                self.export_table_button,
                self.export_summary_button,
            ]
        )
        self.table = ObjectTable()
        self.histogram = HistogramCanvas()
        self.native.layout().addWidget(self.table)
        self.native.layout().addWidget(self.histogram)
        self.predicted_image: Image | None = None  # the image of the last prediction shown
        self.corrections = CorrectionPanel(self)
        self.native.layout().addWidget(self.corrections.native)

        self.worker = None
        self.stop_event = threading.Event()
        self.outcome: PredictOutcome | None = None
        self.rows = pd.DataFrame()  # what the table shows: predicted objects + missed GT
        self.summary: dict[str, Any] = {}
        self.output: dict[str, Any] = {}  # layers of the last run
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._relay.staged.connect(self._on_stage)

        self.model_file.visible = False
        self.model_source.changed.connect(self._on_model_source)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.export_table_button.changed.connect(lambda: self.export_table())
        self.export_summary_button.changed.connect(lambda: self.export_summary())
        self.only_selected.changed.connect(self._on_only_selected)
        self.table.row_selected.connect(self.select_row)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        SESSION.model_trained.connect(self._on_model_trained)
        self.native.destroyed.connect(
            lambda *_: SESSION.model_trained.disconnect(self._on_model_trained, missing_ok=True)
        )
        if SESSION.last_model_path:
            self._on_model_trained(SESSION.last_model_path, select=False)

    # ---- choices -------------------------------------------------------------------
    def _images(self, _=None) -> list:
        return layers_of(self.viewer, Image)

    def _gt_layers(self, _=None) -> list:
        produced = (
            {id(layer) for layer in self.output.values()} if hasattr(self, "output") else set()
        )
        layers = [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, (Labels, Points)) and id(layer) not in produced
        ]
        return [(NO_GT, None), *layers]

    def _refresh_choices(self, _event=None) -> None:
        self.image.reset_choices()
        self.ground_truth.reset_choices()

    def _on_model_source(self, value: str) -> None:
        self.model_file.visible = value == MODEL_FILE

    def _on_model_trained(self, path: str, select: bool = True) -> None:
        try:
            self._offer_just_trained(select)
        except RuntimeError:  # this dock was closed: its Qt widgets are gone
            SESSION.model_trained.disconnect(self._on_model_trained, missing_ok=True)

    def _offer_just_trained(self, select: bool) -> None:
        if JUST_TRAINED not in self.model_source.choices:
            self.model_source.choices = [*self.model_source.choices, JUST_TRAINED]
        if select:
            self.model_source.value = JUST_TRAINED

    def chosen_model(self) -> str:
        """The model the dock would predict with: a file path or DEFAULT_MODEL."""
        source = self.model_source.value
        if source == MODEL_FILE:
            path = str(self.model_file.value or "")
            if not path or path == "." or Path(path).is_dir():
                raise ValueError("choose a model file (.safetensors) first")
            return path
        if source == JUST_TRAINED:
            if not SESSION.last_model_path:
                raise ValueError(
                    "no model has been trained in this session yet; use the Train dock"
                )
            return SESSION.last_model_path
        return DEFAULT_MODEL

    # ---- running -------------------------------------------------------------------
    def _request(self) -> PredictRequest:
        image: Image | None = self.image.value
        if image is None:
            raise ValueError("open or choose an image first")
        data = image.data[0] if image.multiscale else image.data
        ndim = len(spatial_shape(image))
        scale = tuple(float(s) for s in image.scale[-ndim:])
        translate = tuple(float(t) for t in image.translate[-ndim:])
        units = _unit_of(image)
        scaled = units is not None or any(s != 1.0 for s in scale)
        request = PredictRequest(
            image=np.asarray(data),
            image_name=image.name,
            model=self.chosen_model(),
            scale=scale if scaled else None,
            units=units,
            translate=translate if scaled else None,
            tta=bool(self.tta.value),
        )
        gt = self.ground_truth.value
        if isinstance(gt, Labels):
            request.gt_labels = np.asarray(gt.data[0] if gt.multiscale else gt.data)
        elif isinstance(gt, Points):
            request.gt_points = points_in_image(gt, image)
            classes = classes_of(gt.features)
            request.gt_classes = None if classes is None else classes.tolist()
        return request

    def run(self):
        """Start predicting the chosen image in the background; returns the worker."""
        if self.worker is not None:
            show_info("A prediction is already running; cancel it or wait.")
            return None
        try:
            request = self._request()
        except ValueError as err:
            show_error(f"Predict: {err}")
            return None
        self.stop_event.clear()
        self.progress.value = 0
        self.stage.value = "Starting..."
        self._image_layer = self.image.value
        worker = thread_worker(run_prediction)(
            request,
            progress=self._relay.progressed.emit,
            stop=self.stop_event,
            stage=self._relay.staged.emit,
        )
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running prediction at the next batch of tiles."""
        self.stop_event.set()
        self.stage.value = "Cancelling..."

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.value = int(1000 * min(done / total, 1.0))
            self.stage.value = f"Predicting: {done}/{total} tiles"

    def _on_stage(self, text: str) -> None:
        self.stage.value = text

    def _on_errored(self, err: Exception) -> None:
        show_error(f"Prediction failed: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def _on_returned(self, outcome: PredictOutcome) -> None:
        if outcome.cancelled:
            self.stage.value = "Cancelled."
            show_info("Prediction cancelled.")
            return
        if outcome.error:
            self.stage.value = "Failed."
            show_error(outcome.error)
            return
        try:
            self.show_outcome(self._image_layer, outcome)
        except Exception as err:  # noqa: BLE001 - e.g. the image layer was deleted meanwhile
            log.exception("showing the prediction failed")
            show_error(f"Could not show the prediction: {err}")
        self.progress.value = 1000
        self.stage.value = "Done."

    # ---- showing results -------------------------------------------------------------
    def show_outcome(self, image: Image, outcome: PredictOutcome) -> None:
        """Add or update the output layers, the labels, the table and the histogram."""
        self.outcome = outcome
        self.predicted_image = image
        self.summary = dict(outcome.summary)
        name = image.name
        viewer = self.viewer
        out: dict[str, Any] = {}
        out["probability"] = set_output_layer(
            viewer, f"{name} probability", outcome.probability, "image", like=image,
            colormap="magma", blending="additive", contrast_limits=(0.0, 1.0), visible=False,
        )  # fmt: skip
        out["semantic"] = set_output_layer(
            viewer, f"{name} semantic", outcome.semantic, "labels", like=image, visible=False
        )
        names = outcome.class_names
        out["semantic"].features = pd.DataFrame({"index": range(len(names)), "class": names})
        features = outcome.table.assign(index=outcome.table["label"])
        out["instances"] = set_output_layer(
            viewer, f"{name} instances", outcome.instances, "labels", like=image, opacity=0.6
        )
        out["instances"].features = features
        for key in ("status", "missed"):
            layer_name = f"{name} {'match status' if key == 'status' else 'missed'}"
            if getattr(outcome, key) is None:
                if layer_name in viewer.layers:
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
                color_dict={
                    **dict.fromkeys(ids, STATUS_COLORS["missed"]),
                    None: "transparent",
                    0: "transparent",
                }
            )
            out["missed"].features = outcome.missed_table.assign(
                index=outcome.missed_table["label"]
            )
        self.output = out
        self.ground_truth.reset_choices()

        frames = [outcome.table]
        if outcome.missed_table is not None and len(outcome.missed_table):
            frames.append(outcome.missed_table)
        rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else outcome.table
        self.rows = rows[display_order(rows.columns)]
        self.table.set_frame(self.rows)
        self.counts.value = counts_text(self.summary, outcome.table)
        self.scores.value = scores_text(self.summary)
        if "best_iou" in outcome.table:
            values = self.rows["best_iou"].to_numpy(dtype=float)
            self.histogram.show_values(values, "best IoU with ground truth", value_range=(0, 1))
        else:
            col = size_column(outcome.table)
            self.histogram.show_values(
                outcome.table[col].to_numpy(dtype=float), f"area ({size_unit(col)})"
            )
        show_info(self.counts.value)

    # ---- table interaction -----------------------------------------------------------
    def select_row(self, position: int) -> None:
        """Select the object of table row ``position`` and center the view on it."""
        if not 0 <= position < len(self.rows):
            return
        row = self.rows.iloc[position]
        missed = row.get("status") == "missed"
        layer = self.output.get("missed" if missed else "instances")
        if layer is None or layer not in self.viewer.layers:
            return
        layer.selected_label = int(row["label"])
        self.viewer.layers.selection.active = layer
        if missed:
            layer.visible = True
        ndim = layer.ndim
        centroid = np.array([row[f"centroid-{i}"] for i in range(ndim)], dtype=float)
        world = np.asarray(layer.data_to_world(centroid), dtype=float)
        dims = self.viewer.dims
        offset = dims.ndim - ndim
        displayed = list(dims.displayed)
        for i in range(ndim):
            if offset + i not in displayed:
                dims.set_point(offset + i, world[i])
        center = [world[a - offset] for a in displayed if a - offset >= 0]
        if len(center) == len(displayed):
            self.viewer.camera.center = tuple(center)

    def _on_only_selected(self, value: bool) -> None:
        layer = self.output.get("instances")
        if layer is not None:
            layer.show_selected_label = bool(value)

    # ---- export ------------------------------------------------------------------------
    def export_table(self, path: str | Path | None = None) -> Path | None:
        """Write the per-object table (with missed ground-truth objects) to a CSV file."""
        if self.rows is None or self.rows.empty and not len(self.rows.columns):
            return self._export(None, path, "Save object table", "objects.csv", "")
        return self._export(self.rows, path, "Save object table", "objects.csv",
                            f"{len(self.rows)} objects")

    def export_summary(self, path: str | Path | None = None) -> Path | None:
        """Write the counts and scores of the last run as a one-row CSV file."""
        frame = pd.DataFrame([self.summary]) if self.summary else None
        return self._export(frame, path, "Save summary", "summary.csv", "the summary")

    def _export(self, frame: pd.DataFrame | None, path, title: str, default: str,
                what: str) -> Path | None:
        """Write ``frame`` to ``path`` (asked for when None); None when nothing was written."""
        if frame is None:
            show_error("Nothing to export yet: run a prediction first.")
            return None
        path = path or _ask_path(self.native, title, default)
        if not path:
            return None
        path = Path(path)
        frame.to_csv(path, index=False)
        show_info(f"Saved {what} to {path}")
        return path


def _ask_path(parent, title: str, default: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, default, "CSV files (*.csv)")
    return path


def points_in_image(points: Points, image: Image) -> np.ndarray:
    """(N, D) coordinates of ``points`` in the image's data pixels (through world space)."""
    ndim = image.ndim
    coords = np.asarray(points.data, dtype=float)
    if coords.size == 0:
        return coords.reshape(0, ndim)
    # layer.world_to_data takes one position; the transforms take arrays of them
    world = np.asarray(points._data_to_world(coords), dtype=float)
    if world.shape[1] < ndim:
        raise ValueError(
            f"the points are {world.shape[1]}-D but the image is {ndim}-D; "
            "choose points drawn on this image"
        )
    return np.asarray(image._data_to_world.inverse(world[:, -ndim:]), dtype=float)


def _unit_of(image: Image) -> str | None:
    """The image's unit name (e.g. 'micrometer'), or None for napari's default 'pixel'."""
    units = getattr(image, "units", None)
    if units is None:
        return None
    names = {str(u) for u in units}
    if len(names) != 1:
        return None
    name = names.pop()
    return None if name in ("pixel", "pixels", "px", "") else name
