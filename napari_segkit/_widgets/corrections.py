"""The Predict dock's correction loop: suggest where to click, correct, retrain, predict again.

1. *Suggest where to click* adds a Points layer ``"<image> suggestions"``: the places where
   the current model is least sure, ranked (1 = most useful click).
2. *Add corrections layer* adds ``"<image> corrections"``: click each nucleus the model
   missed (class ``nucleus``) and each false object (class ``background``); paint / erase
   on the ``"<image> instances"`` layer (each nucleus of a merged object painted with its
   own label: clicks on them cut it only roughly, README; the pieces of a nucleus merged
   by painting them with one label; a false object erased). Drawn and
   erased pixels are kept for the next rounds, on top of each new prediction.
3. *Retrain with corrections* fine-tunes the current model on the corrected prediction of
   this image and of every image corrected before in this session (in a worker thread,
   with a Stop button; closing the Predict dock or the viewer stops it too; the status
   says when a nucleus click is alone in an unusually large object, which is then taught
   as one nucleus: :func:`napari_segkit.corrections.lone_clicks_in_large_objects`),
   publishes the new model as "Just trained" and predicts again. Its progress is redrawn
   about once a second, as the Train dock's.

Thin: the targets and the training are :mod:`napari_segkit.corrections` and
:mod:`napari_segkit.suggestions`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from magicgui.widgets import Container, Label, ProgressBar, PushButton, SpinBox
from napari.layers import Image, Points
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning

from .._common import classes_of, counted, is_rgb
from .._sample_data import points_layer_kwargs
from ..corrections import Corrections, correction_training, corrections_from_layers
from ..suggestions import contradicts_clicks
from ..training import TrainConfig
from ..workflows import open_model
from .layers import layer_pixels, spatial_shape, to_image_pixels, user_errors, wrap_status
from .progress import Throttle, set_progress_quietly, warning_lines
from .session import SESSION
from .train import default_model_path

SUGGESTION_COLOR = "#ff4fd8"


class CorrectionPanel(Container):
    """Correction loop controls; ``dock`` is the Predict dock it belongs to."""

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.viewer = dock.viewer
        self.header = Label(value="Correct and retrain (after Predict):")
        self.suggest_button = PushButton(text="Suggest where to click")
        self.corrections_button = PushButton(text="Add corrections layer")
        self.seconds = SpinBox(label="Retrain for (s)", value=60, min=5, max=3600, step=5)
        self.retrain_button = PushButton(text="Retrain with corrections")
        self.stop_button = PushButton(text="Stop retraining", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="Retraining")
        self.status = Label(value="")
        wrap_status(self.status)
        super().__init__(widgets=[self.header, self.suggest_button, self.corrections_button,
                                  self.seconds, self.retrain_button, self.stop_button,
                                  self.progress, self.status])
        #: every image corrected in this session: name -> (2-D image, its corrections)
        self.history: dict[str, tuple[np.ndarray, Corrections]] = {}
        self.worker = None
        self.stop_event = threading.Event()
        self.last_event = None
        self.warnings: tuple[str, ...] = ()  # about the corrections, from the start event
        self._show_event = Throttle(self._draw_event)  # about once a second
        self.suggest_button.changed.connect(self.suggest)
        self.corrections_button.changed.connect(self.add_corrections_layer)
        self.retrain_button.changed.connect(self.retrain)
        self.stop_button.changed.connect(self.stop_event.set)

    # ---- what is corrected ---------------------------------------------------------
    def _predicted_image(self) -> Image:
        image = self.dock.predicted_image
        if image is None or self.dock.outcome is None or self.dock.outcome.instances is None:
            raise ValueError("press Predict first: corrections fix a prediction")
        if image not in self.viewer.layers:
            raise ValueError(f"the image {image.name!r} that was predicted is no longer open")
        if len(spatial_shape(image)) != 2:
            raise ValueError("the correction loop works on 2-D images (gray or RGB); "
                             "for a stack, train on clicks in the Train dock")
        return image

    def _image_data(self, image: Image) -> np.ndarray:
        data = np.asarray(layer_pixels(image))
        return data if (data.ndim == 2 or is_rgb(data.shape)) else data.squeeze()

    def _layer_of(self, image: Image, what: str):
        """The layer ``"<image> <what>"``, or None."""
        name = f"{image.name} {what}"
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def suggestions_layer(self, image: Image) -> Points | None:
        layer = self._layer_of(image, "suggestions")
        return layer if isinstance(layer, Points) else None

    def corrections_layer(self, image: Image) -> Points | None:
        return self._layer_of(image, "corrections")

    def add_corrections_layer(self) -> Points | None:
        """An empty Points layer ``"<image> corrections"`` in add mode (class nucleus)."""
        with user_errors("Corrections"):
            image = self._predicted_image()
            layer = self.corrections_layer(image)
            if layer is None:
                kwargs = points_layer_kwargs(pd.DataFrame({"class": []}),
                                             f"{image.name} corrections")
                layer = self.viewer.add_points(np.empty((0, 2)), scale=image.scale[-2:],
                                               translate=image.translate[-2:], **kwargs)
            layer.mode = "add"
            self.viewer.layers.selection.active = layer
            self.status.value = ("Click missed nuclei (class nucleus) and false objects "
                                 "(class background). Where one object merged several "
                                 "nuclei, paint each nucleus with its own label on the "
                                 "instances layer (M picks an unused label; clicks there "
                                 "cut it only roughly); one label over the pieces of a "
                                 "nucleus merges them. Then Retrain.")
            return layer
        return None

    def current_corrections(self, image: Image) -> Corrections:
        """The clicks of ``"<image> corrections"`` and the edits of the instances layer."""
        layer = self.corrections_layer(image)
        coords = np.zeros((0, 2))
        classes = None
        if layer is not None and len(layer.data):
            coords = to_image_pixels(layer, image, np.asarray(layer.data))[:, -2:]
            classes = classes_of(layer.features)
        instances = self.dock.output.get("instances")
        edited = None if instances is None else np.asarray(instances.data)
        return corrections_from_layers(coords, classes, edited, self.dock.outcome.instances)

    # ---- suggestions -----------------------------------------------------------------
    def suggest(self, before: str = ""):
        """Rank where a click would teach the current model most (worker thread);
        ``before``: a line kept above the result in the status."""
        with user_errors("Suggestions"):
            image = self._predicted_image()
            model = self.dock.chosen_model()
            data = self._image_data(image)
            done = self.current_corrections(image)
            worker = thread_worker(_suggest)(model, data, done.coords, list(done.classes))
            worker.returned.connect(lambda result: self._show_suggestions(image, *result,
                                                                          before=before))
            worker.errored.connect(lambda err: show_error(f"Suggestions failed: {err}"))
            self.status.value = before + "Looking for the most useful clicks..."
            worker.start()
            return worker
        return None

    def _show_suggestions(self, image: Image, coords, scores, reasons, before: str = "") -> None:
        if self.dock.closed:  # the viewer may be gone: it takes no new layer
            return
        name = f"{image.name} suggestions"
        features = pd.DataFrame({"rank": np.arange(1, len(coords) + 1), "score": scores,
                                 "reason": reasons})
        coords = np.asarray(coords, float).reshape(-1, 2)
        layer = self._layer_of(image, "suggestions")
        if isinstance(layer, Points):  # a new round updates the layer in place
            layer.data = coords
            layer.features = features
            layer.scale, layer.translate = image.scale[-2:], image.translate[-2:]
        else:
            if layer is not None:  # a layer of another kind took the name
                self.viewer.layers.remove(layer)
            layer = self.viewer.add_points(
                coords, name=name, features=features, scale=image.scale[-2:],
                translate=image.translate[-2:], symbol="ring", size=14,
                face_color="transparent", border_color=SUGGESTION_COLOR, border_width=0.15,
                text={"string": "{rank}", "color": SUGGESTION_COLOR, "anchor": "upper_left"},
            )  # fmt: skip
        self.viewer.layers.selection.active = layer
        contradicted = sum(contradicts_clicks(r) for r in reasons)
        still = (f" {contradicted} of them are places you clicked that the model still "
                 "gets wrong: retrain longer, or paint them on the instances layer."
                 if contradicted else "")
        where = "the corrections layer" if self.corrections_layer(image) is not None else \
            "a corrections layer (Add corrections layer)"
        self.status.value = before + (
            f"{len(coords)} suggestions (1 = most useful): click there in {where} where the "
            f"model is wrong.{still}" if len(coords) else
            "No place looks uncertain to the model.")

    # ---- retraining ------------------------------------------------------------------
    def retrain(self):
        """Fine-tune the current model on the corrections of every corrected image."""
        if self.worker is not None:
            show_info("Retraining is already running; Stop it or wait.")
            return None
        with user_errors("Retrain with corrections"):
            image = self._predicted_image()
            data = self._image_data(image)
            earlier = self.history.get(image.name)
            corrections = self.current_corrections(image)
            if earlier is not None and np.shape(earlier[0]) == np.shape(data):
                corrections = corrections.with_earlier_edits(earlier[1])  # edits of past rounds
            if corrections.empty:
                raise ValueError("nothing to learn from yet: add a corrections layer and click "
                                 "missed nuclei (class nucleus) or false objects (class "
                                 "background), or paint on the instances layer")
            self.history[image.name] = (data, corrections)
            images = [im for im, _ in self.history.values()]
            fixes = [c for _, c in self.history.values()]
            model = self.dock.chosen_model()  # loaded by the worker, off the GUI thread
            config = TrainConfig(time_budget_s=float(self.seconds.value), steps=10**7)
            out_path = default_model_path(f"{image.name}-corrected")
            out_path.parent.mkdir(parents=True, exist_ok=True)
            self.stop_event.clear()
            worker = thread_worker(_retrain)(model, images, fixes, config, str(out_path),
                                             self.stop_event)
            worker.yielded.connect(self._on_event)
            worker.errored.connect(lambda err: show_error(f"Retraining failed: {err}"))
            worker.finished.connect(self._on_finished)
            self.worker, self.last_event = worker, None
            self.retrain_button.enabled, self.stop_button.enabled = False, True
            set_progress_quietly(self.progress, 0)
            n = sum(len(c) for c in fixes)
            drawn = sum(c.painted is not None or c.erased is not None for c in fixes)
            edits = f", edits on {counted(drawn, 'images')}" if drawn else ""
            self.warnings = ()
            self.status.value = (f"Retraining on {counted(len(images), 'images')}, "
                                 f"{counted(n, 'correction clicks')}{edits}...")
            worker.start()
            return worker
        return None

    def _on_event(self, event) -> None:
        self.last_event = event
        if event.kind == "start":  # not throttled: kept under every later status line
            self.warnings = event.warnings  # e.g. a click alone in a merged object
            if not self.dock.closed:
                for text in self.warnings:
                    show_warning(text)
        if not self.dock.closed:
            self._show_event(event)

    def _draw_event(self, event) -> None:
        set_progress_quietly(self.progress, int(1000 * event.fraction))
        if event.kind == "step":
            self.status.value = (f"Retraining: step {event.step}, {event.elapsed_s:.0f}/"
                                 f"{event.budget_s or 0:.0f} s on {event.device}"
                                 f"{warning_lines(self.warnings)}")

    def on_dock_closed(self) -> None:
        """The Predict dock or the viewer closed: stop retraining (the weights reached so
        far are saved, as Stop does); nothing is predicted afterwards."""
        self.stop_event.set()
        self._show_event.cancel()

    def _on_finished(self) -> None:
        self.worker = None
        self._show_event.cancel()
        if self.dock.closed:
            return
        self.retrain_button.enabled, self.stop_button.enabled = True, False
        event = self.last_event
        if event is None or event.kind not in ("done", "stopped") or not event.model_path:
            self.status.value = "Retraining did not finish; the model is unchanged."
            return
        set_progress_quietly(self.progress, 1000)
        done = (f"Retrained ({event.step} steps), saved as {Path(event.model_path).name}; the "
                f"prediction above is redone with it.{warning_lines(self.warnings)}")
        self.status.value = done
        self.status.tooltip = str(event.model_path)
        SESSION.publish_model(str(event.model_path))  # the Predict dock selects it
        if event.kind == "stopped":
            show_warning("Retraining stopped early; the weights reached so far are used.")
        predicting = self.dock.run()
        image = self.dock.predicted_image
        if predicting is not None and image is not None \
                and self.suggestions_layer(image) is not None:
            # the suggestions shown are the old model's: rank again once it has predicted
            predicting.finished.connect(lambda: self._suggest_again(done))

    def _suggest_again(self, done: str) -> None:
        if not self.dock.closed:
            self.suggest(before=done + "\n")


def _suggest(model, image, coords, classes):
    from ..suggestions import suggest_clicks

    return suggest_clicks(open_model(model), image, coords if len(coords) else None, n=10,
                          classes=classes or None)


def _retrain(model, images, corrections, config, out_path, stop_event):
    yield from correction_training(open_model(model), images, corrections, config=config,
                                   out_path=out_path, stop=stop_event)
