"""Screenshots of the three docks before, during and after their job, to look at.

    python benchmarks/screenshots.py [FOLDER] [--sample fluo_512] [--train-minutes 0.5]

Opens the viewer as ``napari-segkit`` does (sample image, the three docks tabified) on a
virtual screen (Xvfb, started here when no DISPLAY is set), drives each dock as a user
would (button clicks, clicks added to a Points layer) and saves, per dock and stage, the
whole window (``window_<dock>_<stage>.png``) and the dock alone (``dock_<dock>_<stage>.png``)
into FOLDER (default /tmp/segkit_shots; not committed). It also prints how long the
Annotate dock's live click preview keeps the GUI thread busy per click, and how long a
click waits for its mask. Training is short (a step-capped time budget, 1 torch thread).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _wait_until(condition, timeout_s: float, app) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    return bool(condition())


def _settle(app, seconds: float = 0.3) -> None:
    _wait_until(lambda: False, seconds, app)


def _preview_at(viewer, clicks, row: int, col: int) -> bool:
    """Whether the clicks' preview shows a mask at (row, col)."""
    from napari_segkit._widgets.click_preview import preview_name

    name = preview_name(clicks)
    return name in viewer.layers and viewer.layers[name].data[row, col] > 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="/tmp/segkit_shots")
    parser.add_argument("--sample", default="fluo_512")
    parser.add_argument("--train-minutes", type=float, default=0.5)
    parser.add_argument("--annotate-only", action="store_true", help="skip Train and Predict")
    args = parser.parse_args(argv)
    out = Path(args.folder)
    out.mkdir(parents=True, exist_ok=True)

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(out, args.sample, args.train_minutes, args.annotate_only)
    finally:
        if display is not None:
            display.stop()


def run(folder: Path, sample: str, train_minutes: float, annotate_only: bool = False) -> None:
    import numpy as np
    import torch
    from qtpy.QtWidgets import QApplication, QDockWidget

    from napari_segkit._widgets import click_preview
    from napari_segkit._widgets.launch import DOCKS, open_viewer

    torch.set_num_threads(1)
    # time the preview's work on the GUI thread (everything but the worker)
    gui_ms: dict[str, list[float]] = {"update": [], "_show": []}
    for name in gui_ms:
        real = getattr(click_preview.ClickPreview, name)

        def timed(self, *a, _real=real, **k):
            t = time.perf_counter()
            try:
                return _real(self, *a, **k)
            finally:
                gui_ms[_real.__name__].append((time.perf_counter() - t) * 1000)

        setattr(click_preview.ClickPreview, name, timed)

    viewer, docks = open_viewer(sample, show=True)
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.resize(1500, 950)
    _settle(app, 1.0)

    def shot(dock_name: str, stage: str) -> None:
        widget = docks[dock_name]
        parent = widget.native.parent()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parent()
        if parent is not None:
            parent.raise_()
        _settle(app, 0.4)
        key = dock_name.split()[0].lower()
        viewer.screenshot(str(folder / f"window_{key}_{stage}.png"), canvas_only=False, flash=False)
        widget.native.grab().save(str(folder / f"dock_{key}_{stage}.png"))

    annotate, train, predict = (docks[name] for name in DOCKS)
    sample_clicks = viewer.layers[f"{sample} clicks"]
    sample_clicks.visible = False

    # ---- Annotate: new clicks layer, clicks with live preview, a background click, convert
    shot(DOCKS[0], "before")
    annotate.new_clicks.native.click()
    clicks = annotate.annotation_layer.value
    nuclei = sample_clicks.data[sample_clicks.features["class"].astype(str) == "nucleus"]
    waits = []
    for point in nuclei[:12]:
        t = time.perf_counter()
        clicks.add(point[None])
        r, c = np.round(point).astype(int)
        _wait_until(lambda r=r, c=c: _preview_at(viewer, clicks, r, c) and not annotate.preview.busy,
                    20, app)
        waits.append((time.perf_counter() - t) * 1000)
    annotate.click_class.value = "background"
    clicks.add(np.array([[5.0, 5.0], [500.0, 500.0]]))
    annotate.preview.wait(20_000)
    shot(DOCKS[0], "during")
    annotate.convert_button.native.click()
    shot(DOCKS[0], "after")
    for name, ms in gui_ms.items():
        print(f"click preview, GUI thread in {name}: first {ms[0]:.0f} ms, then max "
              f"{max(ms[1:]):.0f} ms, median {np.median(ms[1:]):.0f} ms ({len(ms)} calls)")
    print(f"click -> its mask shown: median {np.median(waits):.0f} ms, max {max(waits):.0f} ms "
          f"({len(waits)} clicks)")

    if annotate_only:
        viewer.close()
        return

    # ---- Predict: default model on the sample, against its ground truth (before any training)
    predict.image.value = viewer.layers[sample]
    gt = f"{sample} ground truth"
    if gt in viewer.layers:
        predict.ground_truth.value = viewer.layers[gt]
    shot(DOCKS[2], "before")
    predict.run_button.native.click()
    _wait_until(lambda: predict.progress.value > 0, 60, app)
    shot(DOCKS[2], "during")
    _wait_until(lambda: predict.worker is None, 300, app)
    shot(DOCKS[2], "after")
    # ---- Train: on the sample clicks, from scratch, a short budget, then Stop
    train.image.value = viewer.layers[sample]
    train.annotation_layer.value = sample_clicks
    train.init.value = "none"
    train.minutes.value = max(train_minutes, 0.05)
    train.out.value = folder / "model" / "shots.safetensors"
    shot(DOCKS[1], "before")
    train.start_button.native.click()
    _wait_until(lambda: getattr(train, "last_event", None) is not None
                and (train.last_event.step >= 3 or not train.running), 300, app)
    shot(DOCKS[1], "during")
    _wait_until(lambda: not train.running, train_minutes * 60 + 120, app)
    shot(DOCKS[1], "after")

    print(f"screenshots in {folder}")
    viewer.close()


if __name__ == "__main__":
    main()
