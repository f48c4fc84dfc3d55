"""Issue 13, the Predict dock as a biologist meets it: honest scores (item 9), live
post-processing controls (11), a readable object table (12), a folder in one go (13) and a
histogram that reads on the dark theme (15). Each test drives the dock as a user would:
real layers, button clicks, waiting for the workers."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import tifffile

pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402

from napari_segkit import model_io, prediction, workflows  # noqa: E402
from napari_segkit._sample_data import fluo_256  # noqa: E402
from napari_segkit._widgets import batch as batch_module  # noqa: E402
from napari_segkit._widgets import postprocess_panel as panel_module  # noqa: E402
from napari_segkit._widgets import predict as predict_module  # noqa: E402
from napari_segkit._widgets.predict import MODEL_FILE, PredictWidget  # noqa: E402

SCALE = (0.5, 0.5)


@pytest.fixture
def notes(monkeypatch):
    """Notifications the docks show, by kind."""
    caught: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for module in (predict_module, batch_module, panel_module):
        for kind in caught:
            monkeypatch.setattr(module, f"show_{kind}", caught[kind].append, raising=False)
    return caught


def _dock(make_napari_viewer, model_path, units=None):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        extra = {"scale": SCALE}
        if units and kind == "image":
            extra["units"] = units
        getattr(viewer, f"add_{kind}")(data, **{**kwargs, **extra})
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = viewer.layers["fluo_256"]
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = model_path
    return viewer, widget


@pytest.fixture
def dock(make_napari_viewer, tiny_model_path):
    return _dock(make_napari_viewer, tiny_model_path)


def _click(qtbot, button):
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def _predict(qtbot, widget):
    _click(qtbot, widget.run_button)
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


def _wait_refined(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.refining(), timeout=30_000)


# --------------------------------------------------------------------------- item 9
def test_gt_clicks_partly_outside_warn_and_say_how_many(dock, qtbot, notes):
    viewer, widget = dock
    clicks = viewer.layers["fluo_256 clicks"]
    n_inside = len(clicks.data)
    # three clicks beyond the image's 256 x 256 pixels (the layer has the image's scale)
    outside = np.array([[-20.0, 10.0], [280.0, 60.0], [30.0, 400.0]])
    clicks.data = np.concatenate([clicks.data, outside])
    widget.ground_truth.value = clicks
    _predict(qtbot, widget)
    assert notes["error"] == []
    warned = [w for w in notes["warning"] if "outside" in w]
    assert len(warned) == 1 and f"3 of {n_inside + 3}" in warned[0]
    assert "3 of" in widget.scores.value and "outside" in widget.scores.value


def test_all_gt_clicks_outside_is_nothing_to_score(dock, qtbot, notes):
    viewer, widget = dock
    layer = viewer.add_points(np.array([[-30.0, -30.0], [500.0, 5.0]]), name="far clicks")
    widget.ground_truth.value = layer
    _predict(qtbot, widget)
    assert "nothing to score against" in widget.scores.value
    assert "recall" not in widget.scores.value
    assert any("2 of 2" in w for w in notes["warning"])


@pytest.mark.parametrize("kind", ["points", "labels"])
def test_empty_ground_truth_is_nothing_to_score(dock, qtbot, notes, kind):
    viewer, widget = dock
    if kind == "points":
        layer = viewer.add_points(np.empty((0, 2)), name="no clicks", scale=SCALE)
    else:
        layer = viewer.add_labels(np.zeros((256, 256), np.uint16), name="empty", scale=SCALE)
    widget.ground_truth.value = layer
    _predict(qtbot, widget)
    assert notes["error"] == []
    text = widget.scores.value
    assert "nothing to score against" in text and layer.name in text
    assert "recall 1.00" not in text and "F1" not in text
    assert any("nothing to score against" in w for w in notes["warning"])


# --------------------------------------------------------------------------- item 11
def test_threshold_and_min_size_rerun_post_processing_only(make_napari_viewer, qtbot, notes,
                                                           monkeypatch):
    viewer, widget = _dock(make_napari_viewer, str(model_io.DEFAULT_MODEL_PATH))
    forward_passes = []
    real = prediction.predict_probabilities

    def counting(*args, **kwargs):
        forward_passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(prediction, "predict_probabilities", counting)
    assert widget.threshold.value == 0.5 and widget.min_size.value == 12
    _predict(qtbot, widget)
    assert len(forward_passes) == 1
    probability = np.asarray(viewer.layers["fluo_256 probability"].data)
    instances = viewer.layers["fluo_256 instances"]

    # threshold: the foreground follows the probability map, with no new forward pass
    before = float(np.mean(np.asarray(instances.data) > 0))
    cut = 0.9
    widget.threshold.value = cut
    _wait_refined(qtbot, widget)
    labels = np.asarray(instances.data)
    assert len(forward_passes) == 1
    after = float(np.mean(labels > 0))
    assert after < before
    assert np.mean(probability[labels > 0] > cut) > 0.9  # small holes are filled
    assert widget.stage.value.startswith("Post-processed")

    # minimum size: no object left below it, table and counts follow
    widget.min_size.value = 60
    _wait_refined(qtbot, widget)
    assert len(forward_passes) == 1
    areas = np.bincount(np.asarray(instances.data).ravel())[1:]
    assert areas.size == 0 or areas[areas > 0].min() >= 60
    assert len(widget.rows) == int(np.count_nonzero(areas))
    assert widget.counts.value.startswith(f"{len(widget.rows)} object")
    assert notes["error"] == []


def test_split_sensitivity_and_diameter_estimate(make_napari_viewer, qtbot, notes):
    viewer, widget = _dock(make_napari_viewer, str(model_io.DEFAULT_MODEL_PATH))
    _predict(qtbot, widget)
    counts = {}
    for level in (1, 10):
        widget.split.value = level
        _wait_refined(qtbot, widget)
        counts[level] = int(len(np.unique(viewer.layers["fluo_256 instances"].data))) - 1
    assert counts[10] > counts[1]  # more sensitive: touching nuclei split into more objects
    # the nuclei's diameter is estimated; this model cannot rescale: the box stays at 0
    _click(qtbot, widget.estimate_button)
    median = float(np.median(widget.outcome.table["equivalent_diameter_px"]))
    said = [text for text in notes["info"] if "px across" in text]
    assert len(said) == 1 and "records no training nucleus size" in said[0]
    estimate = float(said[0].split("about ")[1].split(" px")[0])
    assert 0.5 * median < estimate < 2.0 * median
    assert widget.diameter.value == 0
    assert notes["error"] == []


def test_diameter_rescales_to_the_models_training_size(make_napari_viewer, qtbot, notes,
                                                       tiny_model, tmp_path, monkeypatch):
    path = tmp_path / "sized.safetensors"
    sized = model_io.SegModel(tiny_model.net, tiny_model.config, object_diameter=10.0)
    model_io.save_model(sized, path)
    viewer, widget = _dock(make_napari_viewer, str(path))
    shapes = []
    real = prediction.predict_probabilities

    def spy(model, image, **kwargs):
        shapes.append(np.asarray(image).shape)
        return real(model, image, **kwargs)

    monkeypatch.setattr(prediction, "predict_probabilities", spy)
    widget.diameter.value = 20.0
    _predict(qtbot, widget)
    assert shapes == [(128, 128)]  # nuclei of 20 px brought to the model's 10 px
    assert viewer.layers["fluo_256 instances"].data.shape == (256, 256)
    assert "0.5" in widget.stage.value and "10" in widget.stage.value
    # Estimate fills the box from the result (a model that records its training size)
    widget.diameter.value = 0.0
    assert widget.diameter.native.text() == "off: image as it is"  # not "0.00" px
    _click(qtbot, widget.estimate_button)
    assert widget.diameter.value > 0
    assert notes["error"] == []


def test_diameter_with_a_model_that_records_none_says_what_to_do(dock, qtbot, notes):
    _, widget = dock
    widget.diameter.value = 25.0
    _predict(qtbot, widget)
    assert len(notes["error"]) == 1
    assert "Nucleus diameter" in notes["error"][0] and "0" in notes["error"][0]


# --------------------------------------------------------------------------- item 12
def test_object_table_reads_well_and_rows_zoom(make_napari_viewer, tiny_model_path, qtbot,
                                               notes):
    viewer, widget = _dock(make_napari_viewer, tiny_model_path, units=("um", "um"))
    widget.ground_truth.value = viewer.layers["fluo_256 ground truth"]
    widget.threshold.value = 0.7  # an untrained model: some objects, several missed
    _predict(qtbot, widget)
    rows = widget.rows
    headers = [widget.table.horizontalHeaderItem(i).text()
               for i in range(widget.table.columnCount())]
    assert headers == list(rows.columns)
    for name in ("object id", "status", "ground-truth id", "centroid y (px)",
                 "centroid x (px)", "area (px²)", "area (µm²)"):
        assert name in rows, name
    assert not any("-" in h and h.startswith("centroid") for h in headers)
    assert set(rows["status"]) <= {"matched", "false positive", "missed"}
    assert "false" not in set(rows["status"])
    np.testing.assert_allclose(rows["area (µm²)"], rows["area (px²)"] * 0.25)
    missed = rows[rows["status"] == "missed"]
    assert len(missed) == widget.summary["gt_fn"] > 0
    assert missed["object id"].isna().all()  # GT ids never sit in the predicted-id column
    predicted = rows[rows["status"] != "missed"]
    assert set(predicted["object id"].astype(int)) == set(
        np.unique(viewer.layers["fluo_256 instances"].data)) - {0}

    # clicking a missed row: its GT object selected, the camera zooms onto it
    position = int(missed.index[0])
    zoom_before = viewer.camera.zoom
    table_row = next(r for r in range(widget.table.rowCount())
                     if widget.table.frame_row_of(r) == position)
    qtbot.mouseClick(widget.table.viewport(), Qt.MouseButton.LeftButton,
                     pos=widget.table.visualRect(widget.table.model().index(table_row, 0)).center())
    row = rows.loc[position]
    assert viewer.layers["fluo_256 missed"].selected_label == int(row["ground-truth id"])
    expected = np.array([row["centroid y (px)"], row["centroid x (px)"]]) * SCALE
    np.testing.assert_allclose(viewer.camera.center[-2:], expected, atol=1e-6)
    assert viewer.camera.zoom > 1.5 * zoom_before
    assert "µm²" in widget.counts.value
    assert notes["error"] == []


# --------------------------------------------------------------------------- item 13
def _write_folder(folder, n):
    folder.mkdir()
    image = fluo_256()[0][0]
    for i in range(n):
        tifffile.imwrite(folder / f"crop{i}.tif", image[64 * i: 64 * i + 128, :128])
    return folder


def test_batch_folder_predicts_and_measures_into_one_table(dock, qtbot, notes, tmp_path):
    _, widget = dock
    folder = _write_folder(tmp_path / "images", 2)
    panel = widget.batch
    panel.folder.value = folder
    panel.out_folder.value = tmp_path / "out"
    _click(qtbot, panel.run_button)
    assert panel.worker is not None and panel.cancel_button.enabled
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert notes["error"] == []
    assert panel.progress.value == 1000
    table = panel.objects
    assert set(table["image"]) <= {"crop0", "crop1"} and "object id" in table
    assert panel.table.rowCount() == len(table)
    assert (tmp_path / "out" / "crop1_instances.tif").exists()
    written = pd.read_csv(tmp_path / "out" / "objects.csv")
    assert len(written) == len(table)
    assert "2 images" in panel.status.value


def test_batch_cancel_stops_between_images(dock, qtbot, notes, tmp_path, monkeypatch):
    _, widget = dock
    folder = _write_folder(tmp_path / "images", 3)
    real = workflows.predict_and_measure

    def slow(*args, **kwargs):
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr(workflows, "predict_and_measure", slow)
    panel = widget.batch
    panel.folder.value = folder
    panel.out_folder.value = tmp_path / "out"
    _click(qtbot, panel.run_button)
    qtbot.waitUntil(lambda: panel.progress.value > 0, timeout=30_000)
    _click(qtbot, panel.cancel_button)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=30_000)
    assert "Cancelled" in panel.status.value
    assert not (tmp_path / "out" / "crop2_instances.tif").exists()
    assert panel.run_button.enabled and not panel.cancel_button.enabled
    assert notes["error"] == []


def test_batch_without_a_folder_says_what_to_do(dock, qtbot, notes):
    _, widget = dock
    _click(qtbot, widget.batch.run_button)
    assert widget.batch.worker is None
    assert len(notes["error"]) == 1 and "folder" in notes["error"][0]


# --------------------------------------------------------------------------- item 15
def test_histogram_hidden_until_prediction_dark_and_whole_counts(dock, qtbot, notes):
    viewer, widget = dock
    assert viewer.theme == "dark"
    assert widget.histogram.isHidden()
    _predict(qtbot, widget)
    assert not widget.histogram.isHidden()
    histogram = widget.histogram
    assert np.mean(_rgb(histogram.background)) < 0.4  # dark like the dock, not white
    assert np.mean(_rgb(histogram.foreground)) > 0.6  # light text on the dark background
    image = histogram.grab().toImage()
    corner = image.pixelColor(2, 2)
    assert max(corner.red(), corner.green(), corner.blue()) < 100  # drawn dark
    ticks = histogram.y_ticks()
    assert all(isinstance(t, int) for t in ticks) and ticks[-1] >= histogram.counts.max()
    assert histogram.counts.sum() == len(widget.outcome.table)  # one count per object
    assert "px²" in histogram.xlabel


def _rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)
