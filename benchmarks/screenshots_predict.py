"""Screenshots of the Predict dock before, during and after a prediction (issue 13), to look at:
labels readable, nothing cut off, the histogram legible on the dark theme.

Run on a (virtual) screen::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/screenshots_predict.py /tmp/shots

Writes ``predict_<stage>_<tab>.png`` (the dock) and ``window_<stage>.png`` (the whole
napari window) into the folder given (default /tmp/segkit_predict_shots). Uses the
shipped default model on the ``fluo_512`` sample with its ground-truth labels (a live
split change, then the threshold and split fitted to those labels), then a folder run on
two crops of it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
import tifffile
from qtpy.QtWidgets import QApplication

from napari_segkit._sample_data import fluo_512
from napari_segkit._widgets.predict import PredictWidget


def _wait(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 980)
    for data, kwargs, kind in fluo_512():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    dock = PredictWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Predict & measure", area="right")
    dock.image.value = viewer.layers["fluo_512"]
    dock.ground_truth.value = viewer.layers["fluo_512 ground truth"]

    def shoot(stage: str) -> None:
        _settle()
        for i in range(dock.tabs.count()):
            dock.tabs.setCurrentIndex(i)
            _settle(0.2)
            name = dock.tabs.tabText(i).lower()
            dock.native.grab().save(str(out / f"predict_{stage}_{name}.png"))
        dock.tabs.setCurrentIndex(0)
        _settle(0.2)
        viewer.window._qt_window.grab().save(str(out / f"window_{stage}.png"))

    shoot("before")
    dock.run_button.native.click()
    _wait(lambda: dock.progress.value > 0 or dock.worker is None)
    shoot("during")
    _wait(lambda: dock.worker is None)
    shoot("after")
    # the histogram sits below the table in a scrolling tab: shot on its own as well
    dock.histogram.grab().save(str(out / "predict_after_histogram.png"))

    dock.split.value = 6  # a live post-processing change
    _wait(lambda: not dock.refining())
    shoot("after_split")

    dock.postprocess.fit_button.native.click()  # fit threshold and split to the labels
    _wait(lambda: dock.postprocess.fit_worker is None)
    _wait(lambda: not dock.refining())
    shoot("fitted")

    # one correction round: a click, a brush stroke that merges two objects, Retrain
    panel = dock.corrections
    panel.corrections_button.native.click()
    clicks = viewer.layers["fluo_512 corrections"]
    clicks.add(np.array([[40.0, 40.0]]))
    instances = dock.output["instances"]
    labels = np.asarray(instances.data)
    ids = [i for i in np.unique(labels) if i > 0]
    if len(ids) >= 2:  # paint the second object with the first one's label
        instances.data = np.where(labels == ids[1], ids[0], labels).astype(labels.dtype)
    shoot("corrections")
    panel.seconds.value = 5
    panel.retrain_button.native.click()
    _wait(lambda: panel.worker is None)
    _wait(lambda: dock.worker is None)
    shoot("retrained")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        image = viewer.layers["fluo_512"].data
        for i in range(2):
            tifffile.imwrite(folder / f"crop{i}.tif", image[256 * i: 256 * i + 256, :256])
        dock.batch.folder.value = folder
        dock.batch.out_folder.value = Path(tmp) / "out"
        dock.tabs.setCurrentIndex(2)
        dock.batch.run_button.native.click()
        _wait(lambda: dock.batch.worker is None)
        _settle()
        dock.native.grab().save(str(out / "predict_batch_done_folder.png"))
    print(f"screenshots in {out}")
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/segkit_predict_shots"))
