"""The Train and Predict docks on a 3-D image layer: training from a 3-D Labels layer and
from (z, y, x) clicks, prediction into 3-D Labels layers with the image's scale, and the
split-sensitivity control on a stack."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_segkit import model_io  # noqa: E402
from napari_segkit._widgets import layers  # noqa: E402
from napari_segkit._widgets.predict import MODEL_FILE, PredictWidget  # noqa: E402
from napari_segkit._widgets.train import TrainWidget  # noqa: E402
from napari_segkit.model_io import load_model  # noqa: E402
from napari_segkit.synthetic import synthetic_nuclei_stack  # noqa: E402

SCALE = (1.0, 0.25, 0.25)


@pytest.fixture(scope="module")
def stack():
    return synthetic_nuclei_stack((12, 80, 80), spacing=SCALE, seed=71, radius_um=(2.0, 3.0))


@pytest.fixture
def errors(monkeypatch):
    caught: list[str] = []
    monkeypatch.setattr(layers, "show_error", caught.append)
    return caught


def _train_dock(make_napari_viewer, stack, tiny_model_path, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(stack.image, name="stack", scale=SCALE)
    widget = TrainWidget(viewer)
    widget.image.value = viewer.layers["stack"]
    widget.init.value = "file"
    widget.init_file.value = tiny_model_path
    widget.patch.value = 128
    widget.minutes.value = 0.1
    widget.out.value = tmp_path / "stack.safetensors"
    return viewer, widget


def _train(qtbot, widget):
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=120_000)
    assert widget.failure is None, widget.failure
    assert widget.last_event.kind == "done"
    return load_model(widget.out.value)


def test_train_dock_from_a_3d_labels_layer(make_napari_viewer, qtbot, stack, tiny_model_path,
                                           tmp_path, errors):
    viewer, widget = _train_dock(make_napari_viewer, stack, tiny_model_path, tmp_path)
    viewer.add_labels(stack.labels, name="stack masks", scale=SCALE)
    widget.annotation_layer.value = viewer.layers["stack masks"]
    data = widget.collect_data()
    assert data["scale"] == [SCALE] and data["labels"][0].shape == stack.image.shape
    model = _train(qtbot, widget)
    assert model.provenance["training"]["labels"] == "instances"
    assert errors == []


def test_train_dock_from_3d_clicks_keeps_their_planes(make_napari_viewer, qtbot, stack,
                                                      tiny_model_path, tmp_path, errors):
    from skimage.measure import regionprops

    viewer, widget = _train_dock(make_napari_viewer, stack, tiny_model_path, tmp_path)
    clicks = np.array([np.round(r.centroid) for r in regionprops(stack.labels)])
    # the Points layer shares the image's scale, as when it is added over the shown stack
    viewer.add_points(clicks, name="stack clicks", scale=SCALE)
    widget.annotation_layer.value = viewer.layers["stack clicks"]
    coords, _ = widget.collect_data()["points"][0]
    np.testing.assert_allclose(coords, clicks)  # each click keeps its z
    model = _train(qtbot, widget)
    assert model.provenance["training"]["labels"] == "points"
    assert errors == []


def test_train_dock_refuses_2d_labels_on_a_stack(make_napari_viewer, stack, tiny_model_path,
                                                 tmp_path, errors):
    viewer, widget = _train_dock(make_napari_viewer, stack, tiny_model_path, tmp_path)
    viewer.add_labels(stack.labels[5], name="one plane")
    widget.annotation_layer.value = viewer.layers["one plane"]
    assert widget.start() is None
    assert errors and "shape" in errors[-1]


def test_predict_dock_on_a_stack_and_its_split_control(make_napari_viewer, qtbot, stack):
    viewer = make_napari_viewer()
    image = viewer.add_image(stack.image, name="stack", scale=SCALE)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = str(model_io.DEFAULT_MODEL_PATH)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    for suffix in ("semantic", "instances"):
        layer = viewer.layers[f"stack {suffix}"]
        assert layer.data.shape == stack.image.shape
        np.testing.assert_allclose(layer.scale, SCALE)
    counts = {}
    for level in (1, 10):
        widget.split.value = level
        qtbot.waitUntil(lambda: not widget.refining(), timeout=60_000)
        qtbot.wait(50)
        labels = viewer.layers["stack instances"].data
        assert labels.shape == stack.image.shape
        counts[level] = len(np.unique(labels)) - 1
    assert widget.outcome.error is None
    assert counts[10] > counts[1]  # more sensitive: more 3-D seeds, more objects
