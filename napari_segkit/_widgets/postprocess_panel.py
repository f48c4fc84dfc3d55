"""The Predict dock's post-processing controls: probability threshold, minimum object size,
split sensitivity for touching nuclei, and the expected nucleus diameter.

The first three are live: a change re-runs post-processing only
(:func:`napari_segkit.workflows.refine` on the probabilities of the last prediction, in a
worker thread; no new forward pass), debounced so that dragging a control runs it once.
The diameter rescales the image to the model's training size at the next Predict (as
Cellpose's diameter); *Estimate* fills it from the last result. *Fit to the ground truth*
sets the threshold and split level that match a Labels layer of the predicted image best
(:func:`napari_segkit.workflows.fit_to_ground_truth`, in a worker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import Container, FloatSpinBox, Label, PushButton, Slider, SpinBox
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer

from ..model_io import fitted_postprocess_of
from ..object_size import estimate_diameter
from ..postprocess import DEFAULT_SIZES
from ..prediction_results import SPLIT_LEVELS, PostprocessSettings
from ..workflows import PredictOutcome, fit_to_ground_truth, refine
from .outcome_display import OutcomeDisplay, Superseded, with_display
from .progress import stop_timer

#: Quiet time after the last control change before post-processing runs again (ms).
DEBOUNCE_MS = 200
class PostprocessPanel(Container):
    """Controls of the Predict dock ``dock`` and the live re-run of post-processing.

    ``header``, ``diameter`` and ``estimate_button`` belong to the panel but the dock places
    them (the diameter above Predict: it changes the prediction itself).
    """

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.header = Label(value="Post-processing (updates the result live):")
        self.threshold = FloatSpinBox(
            label="Probability threshold", value=0.5, min=0.05, max=0.95, step=0.05,
            tooltip="a pixel belongs to a nucleus when the model's probability exceeds "
                    "this; higher: fewer, smaller objects",
        )  # fmt: skip
        self.min_size = SpinBox(
            label="Min. object size (px)", value=DEFAULT_SIZES[2][0], min=0, max=100_000,
            tooltip="objects smaller than this many pixels (voxels in 3-D) are removed",
        )  # fmt: skip
        self.split = Slider(
            label="Split touching nuclei", value=0, min=0, max=SPLIT_LEVELS,
            tooltip="0: the model's default seeds. 1-10: one seed per peak of the model's "
                    "centre map that stands out by enough; higher values split touching "
                    "nuclei more (and may cut large ones)",
        )  # fmt: skip
        self.diameter = FloatSpinBox(
            label="Nucleus diameter (px)", value=0.0, min=0.0, max=1000.0, step=1.0,
            tooltip="0: predict the image as it is. Otherwise the image is rescaled so "
                    "that nuclei of this diameter match the size the model was trained on "
                    "(applies at the next Predict; needs a model that records its "
                    "training nucleus size)",
        )  # fmt: skip
        # 0 shows as "as it is" (no rescaling), not as a diameter of "0.00" px
        self.diameter.native.setSpecialValueText("off: image as it is")
        self.estimate_button = PushButton(text="Estimate diameter from the result")
        self.fit_button = PushButton(
            text="Fit threshold and split to the ground truth",
            tooltip="try thresholds and split levels on the last prediction and keep the "
                    "pair whose objects match the Ground truth labels best (F1 at IoU 0.5)",
        )  # fmt: skip
        self.header.native.setAlignment(Qt.AlignmentFlag.AlignLeft)
        super().__init__(widgets=[self.threshold, self.min_size, self.split, self.fit_button])
        self.worker = None
        self.fit_worker = None
        self._again = False
        self._model_key: tuple | None = None  # the model whose fitted settings were applied
        self._fitted_shown: tuple | None = None  # (threshold, split) applied from a fit
        self._drawing = False  # a post-processed result is being drawn
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_quiet)
        for control in (self.threshold, self.min_size, self.split):
            control.changed.connect(lambda *_: self._timer.start())
        self.estimate_button.changed.connect(self.estimate_diameter)
        self.fit_button.changed.connect(self.fit)
        self.diameter.changed.connect(self._on_diameter)

    # ---- settings ------------------------------------------------------------------
    def settings(self) -> PostprocessSettings:
        threshold, split = self._shown()
        return PostprocessSettings(fg_threshold=threshold, min_size=int(self.min_size.value),
                                   split=split)

    def _shown(self) -> tuple[float, int]:
        """(threshold, split level) as the controls show them."""
        return round(float(self.threshold.value), 4), int(self.split.value)

    def use_model(self, model: Any) -> str | None:
        """Show the post-processing fitted to ``model`` (a path or "default"), if any, when
        the model changes; a model without it puts back the defaults over the last fitted
        values (values the user changed stay). Returns a line saying what changed, or None."""
        path = Path(str(model))
        key = (str(model), path.stat().st_mtime_ns if path.is_file() else None)
        if key == self._model_key:
            return None
        self._model_key = key
        fitted = fitted_postprocess_of(model)
        shown = self._shown()
        if fitted is not None:
            new = (round(float(fitted["fg_threshold"]), 4), int(fitted["split"]))
        elif self._fitted_shown is not None and shown == self._fitted_shown:
            new = (0.5, 0)
        else:
            return None
        self._fitted_shown = new if fitted is not None else None
        if new == shown:
            return None
        with self.threshold.changed.blocked(), self.split.changed.blocked():
            self.threshold.value, self.split.value = new
        if fitted is None:
            return "This model has no fitted post-processing: threshold and split back to 0.50, 0."
        return (f"Using the post-processing fitted to this model: threshold {new[0]:.2f}, split "
                f"level {new[1]} (F1 {fitted.get('fitted_f1', float('nan')):.3f} on its "
                f"annotated images, defaults {fitted.get('default_f1', float('nan')):.3f}).")

    def chosen_diameter(self) -> float | None:
        value = float(self.diameter.value)
        return value if value > 0 else None

    def set_dimensions(self, ndim: int) -> None:
        """Default minimum size for 2-D images (pixels) or 3-D stacks (voxels), unless the
        user chose another."""
        defaults = {d: sizes[0] for d, sizes in DEFAULT_SIZES.items()}
        if self.min_size.value in defaults.values():
            with self.min_size.changed.blocked():
                self.min_size.value = defaults.get(ndim, defaults[2])
        self.min_size.label = f"Min. object size ({'voxels' if ndim == 3 else 'px'})"

    # ---- live re-run ---------------------------------------------------------------
    def stop(self) -> None:
        """Forget a pending change (the dock is closing: its controls are going away)."""
        stop_timer(self._timer)
        self._again = False

    def _on_quiet(self) -> None:
        if self.dock.outcome is not None and self.dock.worker is None:
            self.refine()

    def refine(self):
        """Re-run post-processing with the current controls on the kept probabilities.
        Returns the worker; None when one runs (it runs again when that one ends) or when
        there is nothing to post-process."""
        dock = self.dock
        if dock.outcome is None or dock.request is None:
            return None
        if self.worker is not None:
            self._again = True
            return None
        worker = thread_worker(with_display(refine))(dock.outcome, dock.request,
                                                     self.settings())
        worker.returned.connect(self._on_refined)
        worker.errored.connect(lambda err: show_error(f"Post-processing failed: {err}"))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        dock.stage.value = "Post-processing..."
        worker.start()
        return worker

    def refining(self) -> bool:
        """True while a change waits for the quiet time or its post-processing runs."""
        return self._timer.isActive() or self.worker is not None or self._again

    def _on_refined(self, result: tuple[PredictOutcome, OutcomeDisplay | None]) -> None:
        outcome, display = result
        dock = self.dock
        image = dock.predicted_image
        if dock.closed or image is None or image not in dock.viewer.layers:
            return
        current = dock.outcome
        if current is None or current.probabilities is not outcome.probabilities:
            return  # a new prediction arrived meanwhile: this result is stale
        self._drawing = True
        dock.show_outcome(image, outcome, announce=False, display=display,
                          then=lambda err: self._on_drawn(outcome, err))

    def _on_drawn(self, outcome: PredictOutcome, err: Exception | None) -> None:
        self._drawing = False
        if isinstance(err, Superseded):  # a newer result is being drawn
            pass
        elif err is not None:
            show_error(f"Could not show the post-processed result: {err}")
        else:
            s = outcome.settings
            split = "default" if s.split == 0 else f"{s.split}/{SPLIT_LEVELS}"
            unit = "voxels" if outcome.instances.ndim == 3 else "px"
            self.dock.stage.value = (f"Post-processed: threshold {s.fg_threshold:.2f} · "
                                     f"min. {s.min_size} {unit} · split {split}")
        self._finish()

    def _on_finished(self) -> None:
        if not self._drawing:  # else the drawing's end finishes
            self._finish()

    def _finish(self) -> None:
        self.worker = None
        if self._again and not self.dock.closed:
            self._again = False
            self.refine()

    # ---- nucleus diameter ----------------------------------------------------------
    def _on_diameter(self, value: float) -> None:
        if self.dock.outcome is not None:
            self.dock.stage.value = (
                "Nucleus diameter changed:\npress Predict to rescale the image" if value
                else "Nucleus diameter 0:\npress Predict to predict the image as it is")

    def estimate_diameter(self) -> float | None:
        """Estimate the nucleus diameter (px) from the last result's foreground; fill the
        diameter box when the model can rescale to it."""
        outcome = self.dock.outcome
        if outcome is None or outcome.probability is None:
            show_error("Estimate diameter: press Predict first")
            return None
        if outcome.probability.ndim != 2:
            show_error("Estimate diameter: rescaling works on 2-D images only")
            return None
        found = estimate_diameter(outcome.probability > self.settings().fg_threshold)
        if found is None:
            show_error("Estimate diameter: no nuclei found in the result; lower the threshold")
            return None
        if outcome.model_diameter is None:
            show_info(f"Nuclei here are about {found:.0f} px across, but this model records "
                      "no training nucleus size, so it cannot rescale to it.")
            return found
        self.diameter.value = round(found, 1)
        show_info(f"Nuclei here are about {found:.0f} px across (the model was trained on "
                  f"{outcome.model_diameter:.0f} px); press Predict to rescale.")
        return found

    # ---- fitted to ground truth ----------------------------------------------------
    def fit(self):
        """Fit the threshold and split level to the dock's ground truth labels on the last
        prediction (in a worker); the controls take the result and the live re-run draws
        it. Returns the worker, or None when there is nothing to fit (a message says why)."""
        dock = self.dock
        gt = dock.ground_truth.value
        if self.fit_worker is not None:
            return None
        if dock.worker is not None:
            show_error("Fit: wait for the prediction to finish, then fit")
            return None
        if dock.outcome is None:
            show_error("Fit: press Predict first (with the Ground truth chosen), then fit")
            return None
        if not isinstance(gt, Labels):
            show_error("Fit: choose as Ground truth a Labels layer with every nucleus of this "
                       "image painted (clicks say where nuclei are, not their outlines)")
            return None
        labels = gt.data[0] if gt.multiscale else gt.data
        worker = thread_worker(fit_to_ground_truth)(dock.outcome, labels,
                                                    int(self.min_size.value))
        worker.returned.connect(self._on_fitted)
        worker.errored.connect(self._on_fit_error)
        worker.finished.connect(self._on_fit_finished)
        self.fit_worker = worker
        self.fit_button.enabled = False
        dock.stage.value = f"Fitting to {gt.name!r}..."
        worker.start()
        return worker

    def _on_fitted(self, fit) -> None:
        if self.dock.closed:
            return
        s = fit.settings
        shown = self._shown()
        self.threshold.value, self.split.value = s.fg_threshold, s.split  # re-runs live
        if shown == (round(float(s.fg_threshold), 4), int(s.split)):
            self.dock.stage.value = "Fitted: the settings shown are already the best"
        show_info(f"Fitted to this image: {fit.summary()}. A fit to one image may not suit "
                  "others: check it on another annotated image before relying on it.")

    def _on_fit_error(self, err: Exception) -> None:
        if not self.dock.closed:
            self.dock.stage.value = "Fit failed"
        show_error(f"Fit: {err}")

    def _on_fit_finished(self) -> None:
        self.fit_worker = None
        if not self.dock.closed:
            self.fit_button.enabled = True
