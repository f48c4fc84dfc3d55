"""The Predict dock's folder panel: predict and measure every image of a folder with the
dock's model and settings, with progress, Cancel and one table of all objects.

Thin: the job is :func:`napari_segkit.workflows.predict_folder`, the path the CLI's
``predict`` command takes, run in a worker thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
from magicgui.widgets import Container, FileEdit, Label, ProgressBar, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt

from ..readable_table import readable_table
from ..workflows import predict_folder
from .layers import full_width
from .progress import Relay, Throttle, set_progress_quietly
from .table import ObjectTable

#: Where results go when no output folder is chosen (inside the image folder).
DEFAULT_OUT = "segkit_results"


def _shortened(path: str, keep: int = 44) -> str:
    return path if len(path) <= keep else "…" + path[-(keep - 1):]


def _chosen_folder(value: Any) -> Path | None:
    text = str(value or "")
    return None if text in ("", ".") else Path(text)


class BatchPanel(Container):
    """Folder in, label images + one objects table out; ``dock`` is the Predict dock."""

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.folder = FileEdit(label="Image folder", mode="d",
                               tooltip="every .tif image in this folder is predicted")
        self.out_folder = FileEdit(label="Save results to", mode="d",
                                   tooltip=f"empty: a '{DEFAULT_OUT}' folder inside the "
                                           "image folder")
        self.run_button = PushButton(text="Predict folder")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="Images")
        # one short line each: a label that grows lines after layout gets cut here
        self.status = Label(value="Uses the model and settings above.")
        self.where = Label(value=f"Results: the folder above, or '{DEFAULT_OUT}'.")
        super().__init__(widgets=[self.folder, self.out_folder, self.run_button,
                                  self.cancel_button, self.progress,
                                  full_width(self.status, self.where)])
        self.status.native.setAlignment(Qt.AlignmentFlag.AlignLeft)
        self.table = ObjectTable()
        self.table.hide()  # until there is something to show
        self.native.layout().addWidget(self.table)
        self.objects = pd.DataFrame()
        self.worker = None
        self.stop_event = threading.Event()
        self._relay = Relay()
        self._relay.progressed.connect(self._on_progress)
        self._show_progress = Throttle(self._draw_progress)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    def run(self):
        """Start predicting the folder in the background; returns the worker (or None)."""
        if self.worker is not None:
            show_info("A folder is already being predicted; cancel it or wait.")
            return None
        try:
            job = self._job()
        except ValueError as err:
            show_error(f"Predict folder: {err}")
            return None
        self.stop_event.clear()
        self._done = self._total = 0
        set_progress_quietly(self.progress, 0)
        self.status.value = "Starting..."
        self._out = job["out"]
        worker = thread_worker(predict_folder)(
            **job, progress=self._relay.progressed.emit, stop=self.stop_event, log=lambda _: None
        )
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled, self.cancel_button.enabled = False, True
        worker.start()
        return worker

    def _job(self) -> dict[str, Any]:
        folder = _chosen_folder(self.folder.value)
        if folder is None or not folder.is_dir():
            raise ValueError("choose a folder of .tif images first")
        out = _chosen_folder(self.out_folder.value) or folder / DEFAULT_OUT
        dock = self.dock
        return {"model": dock.chosen_model(), "images": folder, "out": out,
                "tta": bool(dock.tta.value), "settings": dock.postprocess.settings(),
                "diameter": dock.postprocess.chosen_diameter()}

    def cancel(self) -> None:
        """Stop after the current tile batch; finished images are kept."""
        self.stop_event.set()
        self.status.value = "Cancelling..."

    def on_dock_closed(self) -> None:
        """The Predict dock or the viewer closed: stop after the current tile batch (the
        finished images are kept) and show nothing more."""
        self.stop_event.set()
        self._show_progress.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        if self.dock.closed:
            return
        self._show_progress(done, total)  # drawn at most about once a second

    def _draw_progress(self, done: int, total: int) -> None:
        set_progress_quietly(self.progress, int(1000 * done / max(total, 1)))
        if done < total and not self.stop_event.is_set():
            self.status.value = f"Predicting image {done + 1} of {total}..."

    def _on_returned(self, objects: pd.DataFrame) -> None:
        self._show_progress.cancel()
        if self.dock.closed:
            return
        self.objects = readable_table(objects) if "label" in objects else objects
        self.table.set_frame(self.objects)
        self.table.show()
        n_images, total = getattr(self, "_done", 0), getattr(self, "_total", 0)
        # the whole path in the tooltip
        self.where.value = f"Saved (+ objects.csv) in {_shortened(str(self._out), 36)}"
        self.where.tooltip = str(self._out)
        if self.stop_event.is_set():
            self.status.value = f"Cancelled after {n_images} of {total} images."
            show_warning(f"Folder prediction cancelled; the {n_images} finished images are "
                         f"kept in {self._out}.")
            return
        set_progress_quietly(self.progress, 1000)
        self.status.value = f"Done: {n_images} images, {len(objects)} objects."
        show_info(f"Predicted {n_images} images ({len(objects)} objects): label images and "
                  f"objects.csv in {self._out}")

    def _on_errored(self, err: Exception) -> None:
        if not self.dock.closed:
            self.status.value = "Failed."
        if isinstance(err, (ValueError, FileNotFoundError)):
            show_error(f"Predict folder: {err}")
        else:
            show_error(f"Predict folder failed unexpectedly ({type(err).__name__}: {err})")

    def _on_finished(self) -> None:
        self.worker = None
        if not self.dock.closed:
            self.run_button.enabled, self.cancel_button.enabled = True, False
