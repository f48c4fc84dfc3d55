"""Open napari with napari-segkit's docks and a sample image: ``python -m napari_segkit._widgets.launch``."""

from __future__ import annotations

import argparse

DOCKS = ("Annotate and convert", "Train", "Predict and measure")


def open_viewer(sample: str = "fluo_512", show: bool = True, freeze_startup: bool = False):
    """napari with the sample and the three docks; ``freeze_startup``: once the background
    imports are done, keep the objects alive then out of the garbage collector's scans
    (see :func:`.train_worker.warm_up_imports`), for a process started for napari-segkit."""
    import napari

    if freeze_startup:
        from .train_worker import warm_up_imports

        warm_up_imports(freeze_after=True)  # before the Train dock starts it without
    viewer = napari.Viewer(title="napari-segkit", show=show)
    viewer.open_sample("napari-segkit", sample)
    docks = {}
    for name in DOCKS:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-segkit", name, tabify=True)
        docks[name] = widget
    viewer.layers.selection.active = viewer.layers[sample]
    return viewer, docks


def main(argv: list[str] | None = None) -> None:
    import napari

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", default="fluo_512", help="fluo_512, fluo_dense, fluo_256 or he_rgb")
    args = parser.parse_args(argv)
    open_viewer(args.sample, freeze_startup=True)
    napari.run()


if __name__ == "__main__":
    main()
