"""'Train' dock: train or fine-tune a UNet on annotated images without freezing napari.

Training runs in a worker thread (:mod:`.train_worker`) that imports torch, loads the
starting model and iterates ``napari_segkit.training.train`` (a generator of progress
events); the GUI thread only collects the layers' arrays and draws the events. torch
releases the GIL inside its kernels and the trainer leaves one CPU core to the GUI, so
napari stays responsive (benchmarks/bench_gui.py measures it). Stop, closing the dock or
closing the viewer set an event the trainer checks between steps; the best weights so far
are kept (written atomically). The progress bar follows elapsed / time budget.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer

from ..outcome_text import kept_text, score_name, score_text, score_value
from .layers import LABELS_KIND_KEY, layers_of, spatial_shape, user_errors, wrap_status
from .plots import TrainingPlot
from .progress import (
    REPAINT_EVERY_MS,
    set_progress_quietly,
    stop_timer,
    warning_lines,
    watch_close,
)
from .session import SESSION
from .train_worker import TrainFailure, training_worker, warm_up_imports
from .training_inputs import clicks_inside, region_of

WHOLE_IMAGE = "whole image"

INIT_CHOICES = [
    ("Fine-tune the default nuclei model", "default"),
    ("New model (from scratch)", "none"),
    ("Fine-tune a model file", "file"),
]


def default_model_path(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "model"
    return Path.home() / "napari-segkit" / "models" / f"{safe}-{stamp}.safetensors"


def _format_s(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "--"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TrainWidget(Container):
    """Pick image / annotation pairs, a starting model and a time budget; press Train."""

    def __init__(self, napari_viewer: napari.Viewer):
        warm_up_imports()  # torch loads in the background while the user sets things up
        self.viewer = napari_viewer
        self.image = ComboBox(label="Image", choices=self._images)
        self.annotation_layer = ComboBox(
            label="Annotations", choices=self._annotations,
            tooltip="Labels (masks) or Points (one click per nucleus) drawn on the image; "
                    "hidden layers (e.g. a sample's ground truth) are listed last",
        )
        self.labels_kind = ComboBox(
            label="Labels are", value="auto",
            choices=[("auto", "auto"), ("objects (instance masks)", "instances"),
                     ("classes (semantic)", "semantic"), ("sparse (from clicks)", "sparse")],
            tooltip="auto: 'sparse' for layers made by 'Clicks -> sparse training labels' "
                    "(the Annotate dock marks them), else one id per object",
        )
        self.region = ComboBox(
            label="Fully annotated", choices=self._regions,
            tooltip="Where every nucleus is annotated: the whole image, or the rectangles / "
                    "polygons of a Shapes layer. With clicks, unclicked objects there are "
                    "background, and a new model's click masks grow there as with 'one "
                    "click on every object'; outside it nothing is assumed",
        )
        self.add_pair = PushButton(text="Add pair")
        self.clear_pairs = PushButton(text="Clear pairs")
        self.pairs_label = Label(value="Pairs: the image and annotations above")
        self.init = ComboBox(label="Start from", choices=INIT_CHOICES, value="default")
        self.init_file = FileEdit(label="Model file", mode="r", filter="*.safetensors", visible=False)
        self.keep_known = CheckBox(
            text="Keep what the start model knew", value=False,
            tooltip="Fine-tuning: mix patches of the default model's own training images into "
                    "every batch (replay), also when your images have full masks (from clicks "
                    "it always does). The model may then forget less of other kinds of images, "
                    "at some cost on yours (measured in the README, 'Forgetting the other "
                    "domain'). Leave it off for a model used only on images like yours.",
        )
        self.minutes = FloatSpinBox(label="Time budget (min)", value=3.0, min=0.05, max=24 * 60, step=0.5)
        self.patch = ComboBox(label="Patch size", choices=[128, 192, 256], value=128)
        self.lr = FloatSpinBox(
            label="Learning rate", value=0.0, min=0.0, max=1.0, step=1e-4,
            tooltip="automatic: 3e-3 for a new model, 5e-4 when fine-tuning",
        )
        self.lr.native.setDecimals(4)
        self.lr.native.setSpecialValueText("automatic")  # 0 shows as "automatic", not "0.0000"
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.out = FileEdit(label="Save model as", mode="w", filter="*.safetensors",
                            value=default_model_path("model"))
        self.start_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="Progress", value=0, min=0, max=1000)
        self.status = Label(value="")
        wrap_status(self.status)
        self.plot = TrainingPlot()
        super().__init__(widgets=[
            self.image, self.annotation_layer, self.labels_kind, self.region, self.add_pair, self.clear_pairs, self.pairs_label,
            self.init, self.init_file, self.keep_known, self.minutes, self.patch, self.lr, self.seed, self.out,
            self.start_button, self.stop_button, self.progress, self.status,
        ])  # fmt: skip
        self.native.layout().addWidget(self.plot)
        self._theme_plot()
        self.pairs: list[tuple[Image, Labels | Points, Shapes | None]] = []
        self.worker = None
        self.stop_event = threading.Event()
        self.model_path: Path | None = None
        self.last_event = None
        self.last_score = ""  # the last validation, in words
        self.warnings: tuple[str, ...] = ()  # about the annotations, from the start event
        self.failure: TrainFailure | None = None
        self._budget_s = 0.0
        self._t_press = self._t_event = 0.0
        # the bar, the clock and the plot are redrawn at most about once a second: under
        # a software-rendered screen each repaint of the window costs tens of ms
        self._clock = QTimer()
        self._clock.setInterval(REPAINT_EVERY_MS)
        self._t_render = 0.0
        self._clock.timeout.connect(self._tick)

        self.add_pair.changed.connect(self._add_pair)
        self.clear_pairs.changed.connect(self._clear_pairs)
        self.init.changed.connect(self._on_init)
        self.image.changed.connect(self._suggest_out)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        # closing the dock (napari un-parents its widget) or the viewer (the widget is
        # destroyed) stops training; the best weights so far are kept, as Stop does
        self._closed = False
        self._close_watch = watch_close(self.native, self._on_close)
        self._suggest_out(self.image.value)

    def _on_init(self, value) -> None:
        self.init_file.visible = value == "file"
        self.keep_known.visible = value != "none"  # only a fine-tuning has something to keep

    def _theme_plot(self) -> None:
        try:
            from napari.utils.theme import get_theme

            self.plot.set_foreground(get_theme(self.viewer.theme).text.as_hex())
        except Exception:  # noqa: BLE001 - a plot in the palette's colours is fine too
            pass

    # ---- choices -----------------------------------------------------------------------
    def _images(self, _=None) -> list:
        return layers_of(self.viewer, Image)

    def _annotations(self, _=None) -> list:
        """Visible annotation layers first (top of the layer list first), hidden ones last;
        with no visible one, an empty first choice: never a hidden layer by default."""
        layers = layers_of(self.viewer, Labels, Points)[::-1]
        shown = [(layer.name, layer) for layer in layers if layer.visible]
        hidden = [(f"{layer.name} (hidden)", layer) for layer in layers if not layer.visible]
        return shown + hidden if shown else [("(choose annotations)", None), *hidden]

    def _regions(self, _=None) -> list:
        return [(WHOLE_IMAGE, None), *layers_of(self.viewer, Shapes)]

    def _refresh_choices(self, _event=None) -> None:
        self.image.reset_choices()
        self.annotation_layer.reset_choices()
        self.region.reset_choices()
        open_ = self.viewer.layers
        self.pairs = [(i, a, r) for i, a, r in self.pairs
                      if i in open_ and a in open_ and (r is None or r in open_)]
        self._show_pairs()

    def _suggest_out(self, image) -> None:
        if image is not None and not self.running:
            self.out.value = default_model_path(image.name)

    def _add_pair(self) -> None:
        pair = (self.image.value, self.annotation_layer.value, self.region.value)
        if None in pair[:2]:
            show_error("Choose an image and its annotations (Labels or Points) first.")
            return
        if pair not in self.pairs:
            self.pairs.append(pair)
        self._show_pairs()

    def _clear_pairs(self) -> None:
        self.pairs = []
        self._show_pairs()

    def _show_pairs(self) -> None:
        if not self.pairs:
            self.pairs_label.value = "Pairs: the image and annotations above"
        else:
            self.pairs_label.value = "Pairs: " + "; ".join(
                f"{i.name} + {a.name}" + (f" in {r.name}" if r is not None else "")
                for i, a, r in self.pairs)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    # ---- training --------------------------------------------------------------------
    def collect_data(self) -> dict:
        """Arrays for ``training.train`` from the chosen pairs; ValueError on bad input."""
        pairs = self.pairs or [(self.image.value, self.annotation_layer.value, self.region.value)]
        if any(p is None for pair in pairs for p in pair[:2]):
            raise ValueError("choose an image and its annotations (Labels or Points) first")
        images, labels, points, regions, scales = [], [], [], [], []
        for image, ann, region in pairs:
            shape = spatial_shape(image)
            if len(shape) != 2 and (len(shape) != 3 or image.rgb):
                raise ValueError(f"{image.name}: training takes 2-D images or grayscale 3-D "
                                 f"stacks (z, y, x); this one is {shape}")
            if len(shape) == 3 and region is not None:
                raise ValueError(f"{image.name} is a 3-D stack: annotate it whole (choose "
                                 "'whole image' as the fully annotated region)")
            images.append(np.asarray(image.data))
            scales.append(tuple(float(s) for s in image.scale[-3:]) if len(shape) == 3 else None)
            if isinstance(ann, Labels):
                data = np.asarray(ann.data)
                if data.shape != shape:
                    raise ValueError(
                        f"{ann.name} has shape {data.shape} but {image.name} has {shape}: "
                        "annotate the same image"
                    )
                if not data.any():
                    raise ValueError(f"{ann.name} is empty: paint some objects first")
                labels.append(data)
                points.append(None)
            else:
                labels.append(None)
                points.append(clicks_inside(ann, image, shape))
            regions.append(None if region is None else region_of(region, image, shape))
        # stacks: their voxel sizes (the layers' scale) for clicks and 3-D validation
        scale = scales if any(s is not None for s in scales) else None
        return {"images": images, "labels": labels, "points": points, "regions": regions,
                "scale": scale, "labels_kind": self._labels_kind([a for _, a, _ in pairs if isinstance(a, Labels)])}

    def _labels_kind(self, layers: list) -> str:
        if self.labels_kind.value != "auto":
            return self.labels_kind.value
        sparse = [layer.metadata.get(LABELS_KIND_KEY) == "sparse" for layer in layers]
        if any(sparse) and not all(sparse):
            raise ValueError("mix of sparse and full labels: train them separately or set 'Labels are'")
        return "sparse" if sparse and all(sparse) else "instances"

    def _init_value(self):
        if self.init.value == "file":
            path = Path(self.init_file.value)
            if not path.is_file():
                raise ValueError("choose the model file to fine-tune (Model file)")
            return str(path)
        return None if self.init.value == "none" else self.init.value

    def start(self):
        """Collect the layers' arrays and start training in a worker; returns the worker.

        Nothing heavy happens here: torch, the config and the starting model are loaded
        by the worker."""
        if self.running:
            return None
        with user_errors("Training"):
            data = self.collect_data()
            init = self._init_value()
            self._budget_s = float(self.minutes.value) * 60.0
            settings = {
                "time_budget_s": self._budget_s,
                "steps": 10**7,  # the time budget decides
                "patch_size": int(self.patch.value),
                "lr": float(self.lr.value) or None,
                "seed": int(self.seed.value),
                "labels_kind": data["labels_kind"],
            }
            out = Path(self.out.value)
            out.parent.mkdir(parents=True, exist_ok=True)
            self.model_path = out
            self.stop_event.clear()
            self.plot.clear()
            set_progress_quietly(self.progress, 0)
            self.last_event, self.last_score, self.failure = None, "", None
            self.warnings = ()
            self.worker = training_worker(data, settings, init, str(out), self.stop_event,
                                          keep_known=bool(self.keep_known.value))
            self.worker.yielded.connect(self._on_event)
            self.worker.finished.connect(self._on_finished)
            self.start_button.enabled = False
            self.stop_button.enabled = True
            self._t_press = self._t_event = time.perf_counter()
            self.status.value = "Starting: loading the model and preparing the training data..."
            self._clock.start()
            self.worker.start()
            return self.worker
        return None

    def stop(self) -> None:
        """Stop between two steps; the best weights so far are kept."""
        self.stop_event.set()
        self.status.value = "Stopping..."

    def _on_close(self, *_) -> None:
        """The dock was closed (or the viewer): stop training; later events only update state."""
        if self._closed:
            return
        self._closed = True
        self.stop_event.set()
        stop_timer(self._clock)

    # ---- progress ----------------------------------------------------------------------
    def _elapsed_s(self) -> float:
        """Training time now: the last event's, plus the time since it came."""
        now = time.perf_counter()
        if self.last_event is None:
            return now - self._t_press
        return self.last_event.elapsed_s + (now - self._t_event)

    def _time_text(self, elapsed: float) -> str:
        return f"{_format_s(elapsed)} / {_format_s(self._budget_s)}"

    def _tick(self, force: bool = False) -> None:
        """Redraw the bar, the status and the plot, unless that was done less than about a
        second ago (``force``: now)."""
        now = time.perf_counter()
        if not force and now - self._t_render < 0.9 * REPAINT_EVERY_MS / 1000:
            return
        if not self.running or self._closed or self.stop_event.is_set():
            return
        self._t_render = now
        elapsed = self._elapsed_s()
        value = int(1000 * min(elapsed / self._budget_s, 0.999)) if self._budget_s else 0
        event = self.last_event
        if event is not None and event.kind in ("step", "validation", "checkpoint"):
            text = self._running_text(event, elapsed)
            if text != self.status.value:
                self.status.value = text
        self.plot.refresh()
        if value > self.progress.value:
            set_progress_quietly(self.progress, value)

    def _running_text(self, event, elapsed: float) -> str:
        loss = f" · loss {event.loss:.3f}" if event.loss is not None else ""
        text = f"Training · step {event.step}{loss} · {self._time_text(elapsed)} · {event.device}"
        score = f"\n{self.last_score}" if self.last_score else ""
        return text + score + warning_lines(self.warnings)

    def _on_event(self, event) -> None:
        if isinstance(event, TrainFailure):
            self.failure = event
            return
        self.last_event = event
        self._t_event = time.perf_counter()
        if self._closed:
            return
        kind = event.kind
        if event.loss is not None and kind == "step":
            self.plot.add_loss(event.step, event.loss)
            self._tick()  # redraws when it is due
            return
        if kind == "validation":
            self.plot.add_score(event.step, score_value(event), score_name(event.val_kind))
            self.last_score = score_text(event)
            if event.step == 0 and self.init.value != "none":
                self.last_score = "starting model: " + self.last_score
        if kind in ("done", "stopped"):
            if event.model_path:
                self.model_path = Path(event.model_path)
            return  # _on_finished says how it ended
        if kind == "start":
            set_progress_quietly(self.progress, max(self.progress.value, int(1000 * event.fraction)))
            scoring = ("; scoring the starting model first" if self.init.value != "none"
                       else "")
            self.warnings = event.warnings  # e.g. masks that look partial
            self.status.value = (f"Training started: {event.message}{scoring}..."
                                 f"{warning_lines(self.warnings)}")
            for text in self.warnings:
                show_warning(text)
        else:
            self._tick(force=True)

    def _on_finished(self) -> None:
        self._clock.stop()
        event, failure = self.last_event, self.failure
        saved = (event is not None and event.kind in ("done", "stopped")
                 and self.model_path is not None and self.model_path.is_file())
        if self._closed:
            if saved:
                SESSION.publish_model(str(self.model_path))
                show_info("Training stopped because the Train dock was closed; the best "
                          f"weights so far are saved: {self.model_path}")
            elif failure is not None:
                show_error(failure.message)
            return
        self.start_button.enabled = True
        self.stop_button.enabled = False
        if failure is not None:
            set_progress_quietly(self.progress, 0)
            self.status.value = failure.message.replace("Training could not run", "Training failed", 1)
            show_error(failure.message)
            return
        if not saved:
            self.status.value = "Training ended without a model."
            return
        self.plot.mark_kept(event.kept_step)
        self.plot.update()
        self._say_how_it_ended(event)
        self.status.value += warning_lines(self.warnings)
        SESSION.publish_model(str(self.model_path))

    def _say_how_it_ended(self, event) -> None:
        score = score_text(event)
        score = f"\n{score}" if score else ""
        fine_tune = self.init.value != "none"
        if event.kind == "done":
            set_progress_quietly(self.progress, 1000)
        if event.step == 0:
            what = "the starting model is saved unchanged" if fine_tune else "nothing was learned"
            self.status.value = (f"The time budget ended before the first training step: {what}. "
                                 f"Give it more time.\nSaved: {self.model_path}")
            show_warning(f"Training: no step fitted in the time budget; {what}.")
            return
        if event.diverged:
            self.status.value = f"{event.message[:1].upper()}{event.message[1:]}.{score}\n" \
                                f"Saved: {self.model_path}"
            kept = "the starting model was kept; " if event.kept_step == 0 else ""
            show_warning(f"Training diverged at step {event.step}: {kept}train again with a "
                         "lower learning rate.")
            return
        if event.start_kept:
            self.status.value = (
                f"Finished after {event.step} steps, but the starting model was kept: the "
                f"fine-tuned weights did not do better on your held-out annotations.{score}\n"
                f"Saved (the starting weights): {self.model_path}")
            show_info("Training kept the starting model: fine-tuning did not improve it on "
                      f"your held-out annotations. Saved: {self.model_path}")
            return
        if event.kind == "stopped":
            head = f"Training stopped at {self._time_text(event.elapsed_s)}; {kept_text(event)}"
        else:
            head = f"Training finished ({event.step} steps); {kept_text(event)}"
        self.status.value = f"{head}.{score}\nSaved: {self.model_path}"
        show_info(f"Model saved: {self.model_path}")
