"""'Predict & measure' dock: segment an image with a model, count and measure the objects,
and score them against ground truth (labels or one click per object) when there is one.

Thin: predicting, measuring and scoring is one call of
:func:`napari_segkit.workflows.run_prediction` (shared with the CLI and the demo), run in a
``thread_worker``; the GUI only shows progress and turns the outcome into layers. The
post-processing controls re-run :func:`napari_segkit.workflows.refine` on the kept
probabilities (no new forward pass), also in a worker. Tabs below hold the object table
and histogram, the correction loop and a folder run (:mod:`.batch`).
"""

from __future__ import annotations

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
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QTabWidget

from .._common import classes_of
from ..measure import axis_names
from ..readable_table import GT_ID, OBJECT_ID
from ..workflows import DEFAULT_MODEL, PredictOutcome, PredictRequest, run_prediction
from .batch import BatchPanel
from .corrections import CorrectionPanel
from .histogram import HistogramPlot
from .layers import (
    full_width,
    layer_pixels,
    layers_of,
    scroll_page,
    spatial_shape,
    to_image_pixels,
    unit_of,
    warm_up_labels,
)
from .outcome_display import (
    OutcomeDisplay,
    StepChain,
    Superseded,
    prepare_display,
    with_display,
)
from .outcome_layers import STATUS_COLORS, outcome_layer_steps
from .postprocess_panel import PostprocessPanel
from .progress import Relay, Throttle, set_progress_quietly, watch_close
from .session import SESSION
from .table import ObjectTable

MODEL_FILE = "Model file..."
JUST_TRAINED = "Just trained"
NO_GT = "none"
__all__ = ["PredictWidget", "STATUS_COLORS", "points_in_image"]


# ---------------------------------------------------------------------------
# the dock


class PredictWidget(Container):
    """Segment an image, count and measure the objects, compare with ground truth."""

    def __init__(self, napari_viewer: napari.Viewer):
        self.viewer = napari_viewer
        warm_up_labels(napari_viewer)  # results are drawn as Labels layers
        self.image = ComboBox(label="Image", choices=self._images)
        self.model_source = ComboBox(label="Model", choices=[DEFAULT_MODEL, MODEL_FILE])
        self.model_file = FileEdit(label="Model file", mode="r", filter="*.safetensors")
        self.ground_truth = ComboBox(label="Ground truth", choices=self._gt_layers)
        self.tta = CheckBox(text="Average over mirror images (4x slower)", value=False,
                            tooltip="test-time augmentation: predict the image and its 3 "
                                    "mirror images and average")
        self.postprocess = PostprocessPanel(self)
        pp = self.postprocess
        self.threshold, self.min_size, self.split = pp.threshold, pp.min_size, pp.split
        self.diameter, self.estimate_button = pp.diameter, pp.estimate_button
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
                self.image, self.model_source, self.model_file, self.ground_truth, self.tta,
                self.diameter, self.estimate_button, self.run_button, self.cancel_button,
                self.progress, full_width(self.stage, pp.header), self.postprocess,
                full_width(self.counts, self.scores),
            ]
        )  # fmt: skip
        for label in (self.stage, self.counts, self.scores):  # short lines, no wrapping:
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft)  # wrapped labels get cut
        self.postprocess.native.layout().setContentsMargins(0, 0, 0, 0)
        self.table = ObjectTable()
        self.histogram = HistogramPlot()
        self.table.hide()  # both until there is something to show
        self.histogram.hide()
        self.predicted_image: Image | None = None  # the image of the last prediction shown
        self.corrections = CorrectionPanel(self)
        self.batch = BatchPanel(self)
        self.tabs = QTabWidget()
        objects = Container(widgets=[self.only_selected, self.export_table_button,
                                     self.export_summary_button])
        self.tabs.addTab(scroll_page(objects.native, self.table, self.histogram), "Objects")
        self.tabs.addTab(scroll_page(self.corrections.native), "Correct")
        self.tabs.addTab(scroll_page(self.batch.native), "Folder")
        self.native.layout().addWidget(self.tabs)

        self.worker = None
        self.stop_event = threading.Event()
        self.outcome: PredictOutcome | None = None
        self.request: PredictRequest | None = None  # what the last prediction was asked
        self.rows = pd.DataFrame()  # what the table shows: predicted objects + missed GT
        self.summary: dict[str, Any] = {}
        self.output: dict[str, Any] = {}  # layers of the last run
        self._chain = StepChain()  # draws a result in short steps
        self._relay = Relay()
        self._show_progress = Throttle(self._on_progress)  # about once a second
        self._relay.progressed.connect(self._show_progress)
        self._relay.staged.connect(self._on_stage)

        self.model_file.visible = False
        self.model_source.changed.connect(self._on_model_source)
        self.image.changed.connect(self._on_image)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.export_table_button.changed.connect(lambda: self.export_table())
        self.export_summary_button.changed.connect(lambda: self.export_summary())
        self.only_selected.changed.connect(self._on_only_selected)
        self.table.row_selected.connect(self.select_row)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        self.viewer.events.theme.connect(self._apply_theme)
        self._apply_theme()
        self._on_image(self.image.value)
        SESSION.model_trained.connect(self._on_model_trained)
        self.native.destroyed.connect(self._on_destroyed)
        #: the dock (or the viewer) was closed: a worker that ends later only updates state
        self.closed = False
        self._close_watch = watch_close(self.native, self._on_close)
        if SESSION.last_model_path:
            self._on_model_trained(SESSION.last_model_path, select=False)

    def _on_destroyed(self, *_) -> None:
        self._on_close()
        SESSION.model_trained.disconnect(self._on_model_trained, missing_ok=True)

    def _on_close(self, *_) -> None:
        """The dock or the viewer closed: stop what runs (a prediction, a folder run, a
        retraining, which saves the weights reached so far) and draw nothing more; napari
        would otherwise be handed layers after its window is gone."""
        if self.closed:
            return
        self.closed = True
        self.stop_event.set()
        self._show_progress.cancel()
        self.postprocess.stop()
        self._chain.abandon()
        self.batch.on_dock_closed()
        self.corrections.on_dock_closed()

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

    def _on_image(self, image: Image | None) -> None:
        if isinstance(image, Image):
            self.postprocess.set_dimensions(len(spatial_shape(image)))

    def _apply_theme(self, _event=None) -> None:
        theme = get_theme(self.viewer.theme)
        self.histogram.set_colors(theme.background.as_hex(), theme.text.as_hex())

    # ---- running -------------------------------------------------------------------
    def _request(self) -> PredictRequest:
        image: Image | None = self.image.value
        if image is None:
            raise ValueError("open or choose an image first")
        data = layer_pixels(image)
        ndim = len(spatial_shape(image))
        scale = tuple(float(s) for s in image.scale[-ndim:])
        translate = tuple(float(t) for t in image.translate[-ndim:])
        units = unit_of(image)
        scaled = units is not None or any(s != 1.0 for s in scale)
        model = self.chosen_model()
        changed = self.postprocess.use_model(model)
        if changed:
            show_info(changed)
        request = PredictRequest(
            image=data,  # numpy, or lazy: read block by block in the worker
            image_name=image.name,
            model=model,
            scale=scale if scaled else None,
            units=units,
            translate=translate if scaled else None,
            tta=bool(self.tta.value),
            diameter=self.postprocess.chosen_diameter(),
            settings=self.postprocess.settings(),
        )
        gt = self.ground_truth.value
        if gt is not None:
            request.gt_name = gt.name
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
        set_progress_quietly(self.progress, 0)
        self.stage.value = "Starting..."
        self._image_layer = self.image.value
        self._pending_request = request
        worker = thread_worker(with_display(run_prediction))(
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
        if total > 0 and self.worker is not None and not self.closed:
            set_progress_quietly(self.progress, int(1000 * min(done / total, 1.0)))
            self.stage.value = f"Predicting: {done}/{total} tiles"

    def _on_stage(self, text: str) -> None:
        if self.closed:
            return
        self._show_progress.cancel()  # a new stage: older tile counts are stale
        self.stage.value = text

    def _on_errored(self, err: Exception) -> None:
        show_error(f"Prediction failed: {err}")

    def _on_finished(self) -> None:
        if not self._chain.running:  # else the result is being drawn: it releases the dock
            self._release()

    def _release(self) -> None:
        self.worker = None
        if self.closed:
            return
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def drawing(self) -> bool:
        """True while a result is being drawn (layers, table, histogram)."""
        return self._chain.running

    def _on_returned(self, result: tuple[PredictOutcome, OutcomeDisplay | None]) -> None:
        outcome, display = result
        self._show_progress.cancel()
        if self.closed:
            return
        if outcome.cancelled:
            self.stage.value = "Cancelled."
            show_info("Prediction cancelled.")
            return
        if outcome.error:
            self.stage.value = "Failed."
            show_error(outcome.error)
            return
        self.request = self._pending_request
        self.stage.value = "Showing the result..."
        self.show_outcome(self._image_layer, outcome, display=display,
                          then=lambda err: self._on_shown(outcome, err))

    def _on_shown(self, outcome: PredictOutcome, err: Exception | None) -> None:
        self._release()
        if isinstance(err, Superseded):  # a newer result is being drawn
            return
        if err is not None:
            self.stage.value = "Failed."
            show_error(f"Could not show the prediction: {err}")
            return
        for text in outcome.warnings:
            show_warning(text)
        set_progress_quietly(self.progress, 1000)
        self.stage.value = _done_text(outcome)
        if outcome.settings != self.postprocess.settings():  # changed while predicting
            self.postprocess.refine()

    def refining(self) -> bool:
        """True while a post-processing change waits or runs."""
        return self.postprocess.refining()

    # ---- showing results -------------------------------------------------------------
    def show_outcome(self, image: Image, outcome: PredictOutcome, announce: bool = True,
                     display: OutcomeDisplay | None = None, then=None) -> None:
        """Add or update the output layers, the labels, the table and the histogram.

        Runs in short steps, one per event-loop turn (a layer, a slice of table rows, the
        histogram), so napari repaints and takes input meanwhile; ``then(error or None)``
        runs when all is shown. ``display``: prepared by the worker (else made here).
        """
        display = prepare_display(outcome) if display is None else display
        out: dict[str, Any] = {}

        def begin() -> None:
            self.outcome, self.predicted_image = outcome, image
            self.summary = dict(outcome.summary)
            self.output = out  # filled as the layers come

        def texts() -> None:
            self.ground_truth.reset_choices()
            self.rows = display.rows
            self.counts.value, self.scores.value = display.counts, display.scores

        def histogram() -> None:
            h = display.histogram
            self.histogram.show_counts(h.counts, h.edges, h.xlabel)
            self.table.show()
            self.histogram.show()

        def done(err: Exception | None) -> None:
            self.table.setUpdatesEnabled(True)  # also when the table was left half-filled
            if err is None and announce:
                show_info(display.counts)
            if then is not None:
                then(err)

        layers = outcome_layer_steps(self.viewer, image, outcome, out, display.instances)
        steps = [begin, *layers, texts, *self.table.fill_steps(display.rows, display.cells),
                 histogram]
        self._chain.start(steps, done)

    # ---- table interaction -----------------------------------------------------------
    def select_row(self, position: int) -> None:
        """Select the object of table row ``position``, center the view on it and zoom
        so that it fills about a quarter of the canvas."""
        if not 0 <= position < len(self.rows):
            return
        row = self.rows.iloc[position]
        missed = row.get("status") == "missed"
        layer = self.output.get("missed" if missed else "instances")
        if layer is None or layer not in self.viewer.layers:
            return
        layer.selected_label = int(row[GT_ID] if missed else row[OBJECT_ID])
        self.viewer.layers.selection.active = layer
        if missed:
            layer.visible = True
        ndim = layer.ndim
        centroid = np.array([row[f"centroid {a} (px)"] for a in axis_names(ndim)], dtype=float)
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
            self._zoom_to(layer, float(row.get("diameter (px)", 10.0) or 10.0))

    def _zoom_to(self, layer, diameter_px: float) -> None:
        """Zoom so that an object ``diameter_px`` across spans a quarter of the canvas."""
        spacing = float(np.mean(np.abs(layer.scale[-2:])))
        extent = 4.0 * max(diameter_px, 5.0) * spacing  # world units across the canvas
        canvas = [s for s in self.viewer.canvas.size if s > 0] or [600]
        self.viewer.camera.zoom = min(canvas) / extent

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


def _done_text(outcome: PredictOutcome) -> str:
    if outcome.diameter is None or outcome.model_diameter is None:
        return "Done."
    if outcome.zoom == 1.0:
        return (f"Done: nuclei of {outcome.diameter:.0f} px match the model's\n"
                f"{outcome.model_diameter:.0f} px; no rescaling.")
    return (f"Done: image rescaled x{outcome.zoom:.2g} so that nuclei of\n"
            f"{outcome.diameter:.0f} px match the model's {outcome.model_diameter:.0f} px.")


def _ask_path(parent, title: str, default: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, default, "CSV files (*.csv)")
    return path


def points_in_image(points: Points, image: Image) -> np.ndarray:
    """(N, D) coordinates of ``points`` in the image's data pixels (through world space)."""
    if points.ndim < image.ndim:
        raise ValueError(
            f"the points are {points.ndim}-D but the image is {image.ndim}-D; "
            "choose points drawn on this image"
        )
    return to_image_pixels(points, image, points.data)
