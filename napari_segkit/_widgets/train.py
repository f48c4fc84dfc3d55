"""'Train' dock: train or fine-tune a UNet on annotated images without freezing napari.

Training runs in a worker thread that iterates ``napari_segkit.training.train`` (a
generator of progress events); the GUI thread only draws the events. torch releases the
GIL inside its kernels and the trainer leaves one CPU core to the GUI, so napari stays
responsive (benchmarks/bench_training.py measures it). Stop sets an event the trainer
checks between steps; the best weights so far are already on disk (written atomically).
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
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
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from .._common import classes_of
from .layers import LABELS_KIND_KEY, layers_of, spatial_shape, to_image_pixels, user_errors
from .plots import TrainingPlot
from .session import SESSION

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


def region_of(shapes: Shapes, image: Image, shape: tuple[int, ...]) -> np.ndarray:
    """The fully annotated region drawn as rectangles / polygons in ``shapes``, as a
    bool mask of ``image``'s pixels."""
    from ..annotations import polygons_to_labels

    polygons = [to_image_pixels(shapes, image, np.asarray(d))[:, -2:] for d in shapes.data]
    if not polygons:
        raise ValueError(f"{shapes.name} has no shapes: draw the fully annotated rectangle, "
                         "or choose 'whole image'")
    with warnings.catch_warnings():  # shapes off the image: the error below says so
        warnings.simplefilter("ignore", UserWarning)
        mask = polygons_to_labels(polygons, shape) > 0
    if not mask.any():
        raise ValueError(f"the shapes of {shapes.name} do not overlap {image.name}")
    return mask


def _format_s(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "--"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TrainWidget(Container):
    """Pick image / annotation pairs, a starting model and a time budget; press Train."""

    def __init__(self, napari_viewer: napari.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="Image", choices=self._images)
        self.annotation_layer = ComboBox(
            label="Annotations", choices=self._annotations,
            tooltip="Labels (masks) or Points (one click per nucleus) drawn on the image",
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
                    "polygons of a Shapes layer (with clicks, unclicked objects there are "
                    "background; outside it nothing is assumed)",
        )
        self.add_pair = PushButton(text="Add pair")
        self.clear_pairs = PushButton(text="Clear pairs")
        self.pairs_label = Label(value="Pairs: the image and annotations above")
        self.init = ComboBox(label="Start from", choices=INIT_CHOICES, value="default")
        self.init_file = FileEdit(label="Model file", mode="r", filter="*.safetensors", visible=False)
        self.minutes = FloatSpinBox(label="Time budget (min)", value=3.0, min=0.05, max=24 * 60, step=0.5)
        self.patch = ComboBox(label="Patch size", choices=[128, 192, 256], value=128)
        self.lr = FloatSpinBox(
            label="Learning rate", value=0.0, min=0.0, max=1.0, step=1e-4,
            tooltip="0 = automatic: 3e-3 for a new model, 5e-4 when fine-tuning",
        )
        self.lr.native.setSpecialValueText("auto")  # 0 shows as "auto", not "0.0000"
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.out = FileEdit(label="Save model as", mode="w", filter="*.safetensors",
                            value=default_model_path("model"))
        self.start_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="Progress", value=0, min=0, max=1000)
        self.status = Label(value="")
        self.plot = TrainingPlot()
        super().__init__(widgets=[
            self.image, self.annotation_layer, self.labels_kind, self.region, self.add_pair, self.clear_pairs, self.pairs_label,
            self.init, self.init_file, self.minutes, self.patch, self.lr, self.seed, self.out,
            self.start_button, self.stop_button, self.progress, self.status,
        ])  # fmt: skip
        self.native.layout().addWidget(self.plot)
        self.pairs: list[tuple[Image, Labels | Points, Shapes | None]] = []
        self.worker = None
        self.stop_event = threading.Event()
        self.model_path: Path | None = None
        self.last_event = None

        self.add_pair.changed.connect(self._add_pair)
        self.clear_pairs.changed.connect(self._clear_pairs)
        self.init.changed.connect(lambda v: setattr(self.init_file, "visible", v == "file"))
        self.image.changed.connect(self._suggest_out)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        # closing the dock or the viewer stops training cleanly
        self._closed = False
        self.native.destroyed.connect(self._on_close)
        self._suggest_out(self.image.value)

    # ---- choices -----------------------------------------------------------------------
    def _images(self, _=None) -> list:
        return layers_of(self.viewer, Image)

    def _annotations(self, _=None) -> list:
        return layers_of(self.viewer, Labels, Points)

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
        images, labels, points, regions = [], [], [], []
        for image, ann, region in pairs:
            shape = spatial_shape(image)
            if len(shape) != 2:
                raise ValueError(f"{image.name}: training takes 2-D images (this one is {shape})")
            images.append(np.asarray(image.data))
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
                coords = to_image_pixels(ann, image, ann.data)
                if len(coords) == 0:
                    raise ValueError(f"{ann.name} has no points: click on the nuclei first")
                labels.append(None)
                points.append((coords, classes_of(ann.features)))
            regions.append(None if region is None else region_of(region, image, shape))
        return {"images": images, "labels": labels, "points": points, "regions": regions,
                "labels_kind": self._labels_kind([a for _, a, _ in pairs if isinstance(a, Labels)])}

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
        if self.running:
            return None
        with user_errors("Training"):
            from ..training import TrainConfig

            data = self.collect_data()
            config = TrainConfig(
                time_budget_s=float(self.minutes.value) * 60.0,
                steps=10**7,  # the time budget decides
                patch_size=int(self.patch.value),
                lr=float(self.lr.value) or None,
                seed=int(self.seed.value),
                labels_kind=data["labels_kind"],
            )
            out = Path(self.out.value)
            out.parent.mkdir(parents=True, exist_ok=True)
            self.model_path = out
            self.stop_event.clear()
            self.plot.clear()
            self.progress.value = 0
            self.worker = _training_worker(data, config, self._init_value(), str(out), self.stop_event)
            self.worker.yielded.connect(self._on_event)
            self.worker.errored.connect(self._on_error)
            self.worker.finished.connect(self._on_finished)
            self.start_button.enabled = False
            self.stop_button.enabled = True
            self.status.value = "Starting..."
            self.worker.start()
            return self.worker
        return None

    def stop(self) -> None:
        """Stop between two steps; the best weights so far are already saved."""
        self.stop_event.set()
        self.status.value = "Stopping..."

    def _on_close(self, *_) -> None:
        """The dock's Qt widgets are gone: stop training; later events only update state."""
        self._closed = True
        self.stop_event.set()

    def _on_event(self, event) -> None:
        self.last_event = event
        if self._closed:
            return
        kind = event.kind
        if event.loss is not None and kind == "step":
            self.plot.add_loss(event.step, event.loss)
        if kind == "validation":
            self.plot.add_validation(event.step, event.val_iou, event.val_f1)
        total = event.total_steps or 0
        self.progress.value = int(1000 * event.fraction)
        val = ""
        if event.val_iou is not None:
            val = f" · val IoU {event.val_iou:.2f}"
        if event.val_f1 is not None:
            val += f" · val F1 {event.val_f1:.2f}"
        loss = f" · loss {event.loss:.3f}" if event.loss is not None else ""
        steps = f"{event.step}" if event.budget_s else f"{event.step}/{total or '?'}"
        self.status.value = (
            f"{kind} · step {steps}{loss}{val} · {event.device} · "
            f"elapsed {_format_s(event.elapsed_s)} · ETA {_format_s(event.eta_s)}"
        )
        if kind in ("done", "stopped") and event.model_path:
            self.model_path = Path(event.model_path)

    def _on_error(self, err: Exception) -> None:
        show_error(f"Training failed: {err}")

    def _on_finished(self) -> None:
        event = self.last_event
        if self._closed:
            if event is not None and event.model_path:
                SESSION.publish_model(str(event.model_path))
            return
        self.start_button.enabled = True
        self.stop_button.enabled = False
        self.plot.redraw()
        if event is not None and event.kind in ("done", "stopped") and self.model_path and self.model_path.is_file():
            self.progress.value = 1000 if event.kind == "done" else self.progress.value
            how = "finished" if event.kind == "done" else "stopped; best weights kept"
            self.status.value = f"Training {how}: {self.model_path}"
            show_info(f"Model saved: {self.model_path}")
            SESSION.publish_model(str(self.model_path))


@thread_worker
def _training_worker(data: dict, config, init, out_path: str, stop_event: threading.Event):
    from ..training import train

    yield from train(
        data["images"],
        labels=data["labels"],
        points=data["points"],
        regions=data.get("regions"),
        config=config,
        init=init,
        out_path=out_path,
        stop=stop_event,
    )
