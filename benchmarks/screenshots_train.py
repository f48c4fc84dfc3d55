"""Screenshots of the Train dock before, during and after a training, to look at.

Opens napari with napari-segkit's docks on a sample, fine-tunes the default model from
the sample's clicks for ``--seconds`` and saves the window and the dock alone, at each
stage, as PNG files in ``--out`` (default /tmp/segkit_screens; not part of the repository).

Run::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/screenshots_train.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", default="fluo_256")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--init", default="default", choices=["default", "none"])
    parser.add_argument("--out", default="/tmp/segkit_screens")
    args = parser.parse_args(argv)

    from qtpy.QtWidgets import QApplication, QDockWidget

    from napari_segkit._widgets.launch import open_viewer
    from napari_segkit._widgets.train import TrainWidget

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer, docks = open_viewer(args.sample, show=True)
    viewer.window._qt_window.resize(1500, 950)
    app = QApplication.instance()
    train = next(w for w in docks.values() if isinstance(w, TrainWidget))
    dock = train.native
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    dock.raise_()

    def pump(seconds: float, until=lambda: False) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not until():
            app.processEvents()
            time.sleep(0.02)

    def shoot(stage: str) -> None:
        pump(0.5)
        viewer.window._qt_window.grab().save(str(out / f"train_{stage}_window.png"))
        dock.grab().save(str(out / f"train_{stage}_dock.png"))
        print(f"{stage}: {train.status.value!r}")

    pump(2.0)
    shoot("before")
    train.init.value = args.init
    train.minutes.value = args.seconds / 60.0
    train.out.value = Path(tempfile.mkdtemp()) / "screens.safetensors"
    train.start_button.native.click()
    pump(300, lambda: train.last_event is not None and train.last_event.kind == "step"
         and train.last_event.step >= 3)
    pump(3.0)
    shoot("during")
    pump(args.seconds + 300, lambda: train.start_button.enabled and not train.running)
    shoot("after")
    print(f"screenshots in {out}")
    viewer.close()


if __name__ == "__main__":
    main()
