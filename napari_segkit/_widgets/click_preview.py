"""Live preview of click masks: the mask of each click appears as it is placed.

The masks come from :func:`napari_segkit.annotations.clicks_to_labels` (the conversion the
'click' mode runs), computed in a worker thread: about 0.15 s for a 256 x 256 image and
0.5 s for a 512 x 512 one (133 clicks) on one CPU core would freeze the canvas if it ran
on the GUI thread. Clicks placed while a computation runs are gathered into one rerun
with the latest clicks.
"""

from __future__ import annotations

import atexit
import time
import warnings
from collections.abc import Callable

import napari
import numpy as np
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication

from .._common import background_mask, classes_of
from .._common import spatial_shape as label_shape
from ..annotations import clicks_to_labels
from .layers import geometry_of, layer_pixels, log, spatial_shape, to_image_pixels

#: Opacity of the preview masks (the clicks stay visible above them).
PREVIEW_OPACITY = 0.45


#: Seconds Python waits at exit for worker threads (previews) still running.
EXIT_WAIT_S = 5.0


def preview_name(points: Points) -> str:
    """Name of the preview Labels layer of a clicks layer."""
    return f"{points.name} preview"


def _click_masks(
    pixels: np.ndarray, coords: np.ndarray, classes: np.ndarray | None, scale: tuple,
    all_clicked: bool = False,
) -> tuple[np.ndarray | None, str]:
    """(masks, message) for one preview; masks None when the clicks cannot be converted
    (runs in a worker: lazy pixels are read here, not on the GUI thread)."""
    pixels = np.asarray(pixels)
    shape = label_shape(pixels.shape)
    n_objects = int(np.sum(~background_mask(classes, len(coords))))
    if n_objects == 0:
        return np.zeros(shape, np.uint16), "Preview: no nucleus clicks yet."
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = clicks_to_labels(pixels, coords, classes=classes, scale=scale,
                                      all_clicked=all_clicked)
    except ValueError as err:
        return None, f"No preview: {err}"
    n = int(np.unique(labels[labels > 0]).size)
    n_background = len(coords) - n_objects
    note = f" ({caught[0].message})" if caught else ""
    return labels, (f"Preview: {n} masks from {n_objects} nucleus clicks"
                    f" ({n_background} background clicks){note}.")


@atexit.register
def _await_running_workers() -> None:
    """At exit, let worker threads (a preview computing) end: one still running while
    Python tears down its Qt objects aborts the interpreter (a script that closes the
    viewer right after a click; closing the viewer also re-selects the next clicks layer,
    which starts a preview). ``napari.run()`` waits for its workers itself when the app
    quits; this does the same for scripts that never run it."""
    QThreadPool.globalInstance().waitForDone(int(EXIT_WAIT_S * 1000))


class ClickPreview:
    """Keeps a Labels layer ``"<clicks> preview"`` equal to the masks of a clicks layer.

    ``follow(points, image)`` starts, ``follow(None, None)`` stops (and removes the
    preview layer). ``on_message`` receives a one-line status after each update.
    """

    def __init__(self, viewer: napari.Viewer, on_message: Callable[[str], None] | None = None):
        self.viewer = viewer
        self.on_message = on_message or (lambda _message: None)
        self.points: Points | None = None
        self.image: Image | None = None
        self.all_clicked = False  # every object has a click ('click-all' mode)
        self._worker = None
        self._pending = False
        viewer.layers.events.removed.connect(self._on_layer_removed)

    # ---- what is previewed -----------------------------------------------------------
    def follow(self, points: Points | None, image: Image | None,
               all_clicked: bool = False) -> None:
        """Preview the clicks of ``points`` on ``image``; None stops the preview.
        ``all_clicked``: every object has a click ('click-all' mode)."""
        rule_changed, self.all_clicked = all_clicked != self.all_clicked, all_clicked
        if points is self.points and image is self.image:
            if rule_changed and self.points is not None and len(self.points.data):
                self.update()
            return
        old = self.points
        if old is not None:
            old.events.data.disconnect(self._on_data)
            self._remove_layer(old)
        self.points, self.image = (points, image) if points is not None and image is not None else (None, None)
        if self.points is not None:
            self.points.events.data.connect(self._on_data)
            self._layer(self.points, self.image)  # now, not at the first click: adding is slow
            if len(self.points.data):
                self.update()

    def clear(self) -> None:
        """Remove the preview layer (it comes back with the next click)."""
        if self.points is not None:
            self._remove_layer(self.points)

    def _on_data(self, event) -> None:
        action = str(getattr(event, "action", "changed"))
        if action in ("added", "removed", "changed"):
            self.update()

    def _on_layer_removed(self, event) -> None:
        if self.points is not None and any(event.value is layer for layer in (self.points, self.image)):
            self.follow(None, None)

    def _remove_layer(self, points: Points) -> None:
        name = preview_name(points)
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            self.viewer.layers.remove(name)

    # ---- computing -------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a preview is being computed."""
        return self._worker is not None

    def update(self) -> None:
        """Recompute the preview now, or right after the computation that runs."""
        if self.points is None:
            return
        if self._worker is not None:
            self._pending = True
            return
        points, image = self.points, self.image
        coords = to_image_pixels(points, image, points.data)
        classes = classes_of(points.features)
        scale = tuple(image.scale[-len(spatial_shape(image)):])
        worker = create_worker(_click_masks, layer_pixels(image), coords, classes, scale,
                               self.all_clicked)
        worker.returned.connect(lambda result: self._show(points, image, *result))
        worker.errored.connect(lambda err: log.warning("click preview failed: %s", err))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self.update()

    def _show(self, points: Points, image: Image, labels: np.ndarray | None, message: str) -> None:
        self.on_message(message)
        if points is not self.points or labels is None or points not in self.viewer.layers:
            return
        layer = self._layer(points, image)
        current = layer.data
        if isinstance(current, np.ndarray) and current.shape == labels.shape and current.dtype == labels.dtype:
            if not np.array_equal(current, labels):  # in place: cheaper than a new array
                current[...] = labels
                layer.refresh()
        else:
            layer.data = labels

    def _layer(self, points: Points, image: Image) -> Labels:
        """The preview layer of ``points``, added (empty) below it when missing; the clicks
        stay the active layer, in their mode, so the user goes on clicking."""
        name = preview_name(points)
        layers = self.viewer.layers
        if name in layers and isinstance(layers[name], Labels):
            return layers[name]
        active, mode = layers.selection.active, points.mode
        preview = self.viewer.add_labels(
            np.zeros(spatial_shape(image), np.uint16), name=name, opacity=PREVIEW_OPACITY,
            **geometry_of(image),
        )
        preview.metadata = {**preview.metadata, "segkit_preview_of": points.name}
        layers.move(layers.index(preview), layers.index(points))
        layers.selection.active = active if active in layers else points
        points.mode = mode
        return preview

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Process Qt events until no preview is being computed; whether it finished."""
        deadline = time.monotonic() + timeout_ms / 1000
        app = QApplication.instance()
        while (self._worker is not None or self._pending) and time.monotonic() < deadline:
            if app is not None:
                app.processEvents()
            time.sleep(0.005)
        return self._worker is None
