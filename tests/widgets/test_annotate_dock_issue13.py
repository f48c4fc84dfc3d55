"""Issue 13, Annotate dock and cosmetics, driven as a user would: a real viewer, Points
layers filled through the layer API (as canvas clicks fill them), button clicks.

Items: 7 (background clicks), 8 (a second conversion keeps the first), 14 (per-click
preview), 15 (tab titles, status text, no private napari API, "automatic" learning rate).
"""

from __future__ import annotations

import sys
import threading
import warnings

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QTabBar

from napari_segkit._common import is_background
from napari_segkit._sample_data import POINT_COLORS, fluo_256
from napari_segkit._widgets.annotate import AnnotateWidget
from napari_segkit._widgets.launch import DOCKS


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


@pytest.fixture
def dock(viewer):
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["fluo_256"]
    yield widget
    if hasattr(widget, "preview"):  # no background computation outlives the test
        widget.preview.wait(10_000)


def press(qtbot, button) -> None:
    """A real mouse click on a dock button."""
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def sample_nuclei(viewer) -> np.ndarray:
    sample = viewer.layers["fluo_256 clicks"]
    return sample.data[sample.features["class"] == "nucleus"]


def rgba(hex_colour: str) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(hex_colour)[0]


# ---- item 7: background clicks ---------------------------------------------------------
def test_class_selector_makes_new_clicks_background(viewer, dock, qtbot):
    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    assert dock.click_class.value == "nucleus" and dock.click_class.enabled
    clicks.add([[40.0, 40.0]])
    dock.click_class.value = "background"
    clicks.add([[5.0, 5.0]])
    clicks.add([[250.0, 5.0]])
    dock.click_class.value = "nucleus"
    clicks.add([[120.0, 120.0]])
    classes = list(clicks.features["class"].astype(str))
    assert classes == ["nucleus", "background", "background", "nucleus"]
    assert [is_background(c) for c in classes] == [False, True, True, False]
    # seen on the canvas: background clicks get their own face colour
    np.testing.assert_allclose(clicks.face_color[1], rgba(POINT_COLORS["background"]))
    np.testing.assert_allclose(clicks.face_color[0], rgba(POINT_COLORS["nucleus"]))
    assert "background" in dock.status.value.lower() or "nucleus" in dock.status.value.lower()


def test_class_selector_follows_the_chosen_layer_and_relabels_selected_clicks(viewer, dock, qtbot):
    sample = viewer.layers["fluo_256 clicks"]
    press(qtbot, dock.new_clicks)
    mine = dock.annotation_layer.value
    dock.click_class.value = "background"
    dock.annotation_layer.value = sample
    assert dock.click_class.value == "nucleus"  # the sample layer's own current class
    dock.annotation_layer.value = mine
    assert dock.click_class.value == "background"
    # a user layer without a class column gets one when they pick a class
    plain = viewer.add_points(np.array([[30.0, 30.0]]), name="plain")
    dock.annotation_layer.value = plain
    dock.click_class.value = "background"
    plain.add([[60.0, 60.0]])
    assert list(plain.features["class"].astype(str)) == ["nucleus", "background"]
    # selected clicks take the class the user picks (a wrong class is fixed in place)
    plain.selected_data = {0}
    dock.click_class.value = "background"
    dock.click_class.value = "nucleus"
    dock.click_class.value = "background"
    assert str(plain.features["class"].iloc[0]) == "background"
    # shapes have no class
    press(qtbot, dock.new_polygons)
    assert not dock.click_class.enabled


def test_background_clicks_stay_background_in_the_masks(viewer, dock, qtbot):
    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    dock.preview_box.value = False
    clicks.add(sample_nuclei(viewer)[:10])
    dock.click_class.value = "background"
    clicks.add([[2.0, 2.0], [253.0, 253.0]])
    press(qtbot, dock.convert_button)
    out = viewer.layers[dock.last_output_name]
    assert len(np.unique(out.data[out.data > 0])) == 10
    assert out.data[2, 2] == 0 and out.data[253, 253] == 0


def test_every_nucleus_clicked_mode_previews_and_converts_whole_masks(viewer, dock, qtbot):
    """'One click on every object': the preview and the conversion grow each click with
    no unclicked object competing (clicks_to_labels(all_clicked=True))."""
    from napari_segkit.annotations import clicks_to_labels

    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    clicks.add(sample_nuclei(viewer))
    dock.mode.value = "click-all"
    preview_name = f"{clicks.name} preview"
    qtbot.waitUntil(lambda: preview_name in viewer.layers, timeout=20_000)
    dock.preview.wait(20_000)
    image = viewer.layers["fluo_256"].data
    every = clicks_to_labels(image, clicks.data, all_clicked=True)
    some = clicks_to_labels(image, clicks.data)
    assert (every != some).any()  # the sample has nuclei with two centres
    qtbot.waitUntil(lambda: np.array_equal(viewer.layers[preview_name].data, every),
                    timeout=20_000)
    press(qtbot, dock.convert_button)
    out = viewer.layers[dock.last_output_name]
    np.testing.assert_array_equal(out.data, every)


# ---- item 8: a second conversion does not replace the first ----------------------------
def test_each_annotation_layer_gets_its_own_output(viewer, dock, qtbot):
    press(qtbot, dock.new_polygons)
    polygons = dock.annotation_layer.value
    polygons.add_polygons([np.array([[5, 5], [5, 40], [40, 5]], float)])
    press(qtbot, dock.convert_button)
    press(qtbot, dock.new_boxes)
    boxes = dock.annotation_layer.value
    boxes.add_rectangles([np.array([[60, 60], [60, 90], [90, 90], [90, 60]], float)])
    dock.mode.value = "fill"
    press(qtbot, dock.convert_button)
    outputs = [layer for layer in viewer.layers if layer.name.endswith("masks")]
    names = sorted(layer.name for layer in outputs)
    assert len(outputs) == 2, names
    from_polygons = next(layer for layer in outputs if polygons.name in layer.name)
    from_boxes = next(layer for layer in outputs if boxes.name in layer.name)
    assert from_polygons.data[10, 10] == 1 and from_polygons.data[70, 70] == 0
    assert from_boxes.data[70, 70] == 1 and from_boxes.data[10, 10] == 0
    # converting the same layer again updates its own output, not the other one
    n = len(viewer.layers)
    press(qtbot, dock.convert_button)
    assert len(viewer.layers) == n and from_polygons.data[10, 10] == 1


# ---- item 14: per-click preview ---------------------------------------------------------
def test_each_click_shows_its_mask_at_once(viewer, dock, qtbot, monkeypatch):
    from napari_segkit._widgets import click_preview

    threads = []
    real = click_preview.clicks_to_labels

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(click_preview, "clicks_to_labels", spy)
    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    assert dock.mode.value == "click" and dock.preview_box.value
    nuclei = sample_nuclei(viewer)
    clicks.add(nuclei[:1])
    preview_name = f"{clicks.name} preview"
    qtbot.waitUntil(lambda: preview_name in viewer.layers, timeout=20_000)
    preview = viewer.layers[preview_name]
    r, c = np.round(nuclei[0]).astype(int)
    qtbot.waitUntil(lambda: preview.data[r, c] > 0, timeout=20_000)
    # the user goes on clicking into the same Points layer, which stays on top
    assert viewer.layers.selection.active is clicks and clicks.mode == "add"
    assert viewer.layers.index(preview) < viewer.layers.index(clicks)
    clicks.add(nuclei[1:3])
    qtbot.waitUntil(lambda: len(np.unique(preview.data[preview.data > 0])) == 3, timeout=20_000)
    for r, c in np.round(nuclei[1:3]).astype(int):
        assert preview.data[r, c] > 0
    assert threads and all(t is not threading.main_thread() for t in threads)
    # deleting a click updates the preview too
    clicks.selected_data = {2}
    clicks.remove_selected()
    qtbot.waitUntil(lambda: len(np.unique(preview.data[preview.data > 0])) == 2, timeout=20_000)
    # the preview is not training data and leaves with its clicks
    dock.preview.wait(10_000)
    viewer.layers.remove(clicks)
    assert preview_name not in viewer.layers


def test_preview_off_or_other_modes_compute_nothing(viewer, dock, qtbot, monkeypatch):
    from napari_segkit._widgets import click_preview

    calls = []
    monkeypatch.setattr(click_preview, "clicks_to_labels", lambda *a, **k: calls.append(1))
    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    dock.preview_box.value = False
    clicks.add([[40.0, 40.0]])
    dock.mode.value = "sparse"
    dock.preview_box.value = True
    clicks.add([[80.0, 80.0]])
    dock.preview.wait(10_000)
    assert calls == []
    assert f"{clicks.name} preview" not in viewer.layers


# ---- item 15: cosmetics ---------------------------------------------------------------------
def test_tab_titles_show_no_mnemonic_ampersand(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in DOCKS:
        viewer.window.add_plugin_dock_widget("napari-segkit", name, tabify=True)
    texts = [
        bar.tabText(i)
        for bar in viewer.window._qt_window.findChildren(QTabBar)
        for i in range(bar.count())
    ]
    assert any("Train" in t for t in texts), texts
    assert not [t for t in texts if "&" in t.replace("&&", "")], texts


def test_status_follows_what_the_user_does(viewer, dock, qtbot):
    press(qtbot, dock.new_clicks)
    clicks = dock.annotation_layer.value
    dock.preview_box.value = False
    clicks.add(sample_nuclei(viewer)[:5])
    press(qtbot, dock.convert_button)
    done = dock.status.value
    assert "5 objects" in done
    press(qtbot, dock.new_polygons)
    assert dock.status.value != done and "5 objects" not in dock.status.value
    dock.annotation_layer.value = clicks
    assert "5 objects" not in dock.status.value
    # a failed conversion does not leave the last success on screen
    press(qtbot, dock.convert_button)
    assert "5 objects" in dock.status.value
    dock.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    dock.mode.value = "outline"
    press(qtbot, dock.convert_button)
    assert "objects" not in dock.status.value and "fail" in dock.status.value.lower()


def test_no_private_napari_layer_type_string(viewer, dock, qtbot, monkeypatch):
    """napari 0.10 drops ``Layer._type_string``: reruns must not read it."""
    from napari.layers import Layer

    def private(self):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("napari_segkit"):  # napari itself may read its own internals
            warnings.warn("Layer._type_string is private and goes away", FutureWarning, stacklevel=2)
        return type(self).__name__.lower()

    monkeypatch.setattr(Layer, "_type_string", property(private))
    press(qtbot, dock.new_polygons)
    dock.annotation_layer.value.add_polygons([np.array([[5, 5], [5, 40], [40, 5]], float)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        press(qtbot, dock.convert_button)
        press(qtbot, dock.convert_button)  # the rerun updates the existing layer
    assert sum(layer.name.endswith("masks") for layer in viewer.layers) == 1


def test_train_dock_says_auto_learning_rate(viewer):
    from napari_segkit._widgets.train import TrainWidget

    widget = TrainWidget(viewer)
    assert widget.lr.value == 0.0
    assert widget.lr.native.text() == "automatic"
    widget.lr.value = 3e-3
    assert widget.lr.native.text() != "automatic"


CLOSE_RIGHT_AFTER_A_CLICK = """
import numpy as np
import napari
from napari_segkit._sample_data import fluo_256
from napari_segkit._widgets.annotate import AnnotateWidget
viewer = napari.Viewer(show=False)
data, kwargs, _ = fluo_256()[0]
viewer.add_image(data, **kwargs)
dock = AnnotateWidget(viewer)
viewer.window.add_dock_widget(dock)
clicks = viewer.add_points(np.array([[40.0, 40.0], [100.0, 120.0]]), name="clicks")
viewer.add_points(np.array([[60.0, 60.0]]), name="more clicks")
dock.annotation_layer.value = clicks
clicks.add([[80.0, 80.0]])  # a preview starts computing
viewer.close()  # closing also re-selects 'more clicks', which starts another
print("CLOSED", flush=True)
"""


def test_a_script_that_closes_the_viewer_right_after_a_click_exits_cleanly(tmp_path):
    """A preview worker still running when Python exits aborted the interpreter (exit code
    134, 'wrapped C/C++ object ... has been deleted'); previews are now waited for at exit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CLOSE_RIGHT_AFTER_A_CLICK], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "CLOSED" in out.stdout, out.stderr[-2000:]
    assert out.returncode == 0, out.stderr[-2000:]
