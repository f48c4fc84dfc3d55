"""The main command's viewer: three docks and a sample image with its annotations."""

from __future__ import annotations

from napari_segkit._widgets.launch import DOCKS, open_viewer


def test_open_viewer_docks_everything_with_sample_data(qtbot):
    viewer, docks = open_viewer("fluo_256", show=False)
    try:
        assert set(docks) == set(DOCKS)
        assert [layer.name for layer in viewer.layers] == [
            "fluo_256", "fluo_256 ground truth", "fluo_256 clicks"]
        assert docks["Train"].image.value is viewer.layers["fluo_256"]
        assert docks["Annotate and convert"].image.value is viewer.layers["fluo_256"]
    finally:
        viewer.close()
