"""'Predict & measure' dock, driven as a user would (a tiny untrained model, real sample)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from napari_segkit import model_io  # noqa: E402
from napari_segkit._sample_data import fluo_256  # noqa: E402
from napari_segkit._widgets import predict as predict_module  # noqa: E402
from napari_segkit._widgets.predict import MODEL_FILE, PredictWidget  # noqa: E402
from napari_segkit._widgets.session import SESSION  # noqa: E402

SCALE = (0.5, 0.5)


@pytest.fixture
def errors(predict_errors):
    return predict_errors


@pytest.fixture
def dock(make_napari_viewer, tiny_model_path):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **{**kwargs, "scale": SCALE})
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = viewer.layers["fluo_256"]
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model_path
    return viewer, widget


def _run(qtbot, widget):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    return worker


def test_predict_with_gt_labels_end_to_end(dock, qtbot, tmp_path, errors):
    viewer, widget = dock
    widget.ground_truth.value = viewer.layers["fluo_256 ground truth"]
    _run(qtbot, widget)
    assert errors == []
    for suffix in ("probability", "semantic", "instances", "match status", "missed"):
        layer = viewer.layers[f"fluo_256 {suffix}"]
        np.testing.assert_allclose(layer.scale, SCALE)
    instances = viewer.layers["fluo_256 instances"]
    features = instances.features
    assert "label" in features
    assert {"best_iou", "status"} <= set(features.columns)
    assert len(features) == len(np.unique(instances.data)) - (instances.data == 0).any()
    assert widget.progress.value == 1000
    assert "object" in widget.counts.value and "foreground" in widget.counts.value
    assert "F1@0.5" in widget.scores.value
    # table: predicted objects + missed ground truth objects, one row each
    n_missed = widget.summary["gt_fn"]
    assert widget.table.rowCount() == len(features) + n_missed
    assert set(widget.rows["status"]) <= {"matched", "false positive", "missed"}
    assert (widget.rows["status"] == "missed").sum() == n_missed

    # clicking a row selects the object and centres the camera on it
    widget.table.select_frame_row(0)
    row = widget.rows.iloc[0]
    missed = row["status"] == "missed"
    layer = viewer.layers["fluo_256 missed" if missed else "fluo_256 instances"]
    assert layer.selected_label == int(row["ground-truth id" if missed else "object id"])
    expected = np.array([row["centroid y (px)"], row["centroid x (px)"]]) * SCALE
    np.testing.assert_allclose(viewer.camera.center[-2:], expected, atol=1e-6)

    # export
    table_csv = widget.export_table(tmp_path / "objects.csv")
    exported = pd.read_csv(table_csv)
    assert {"object id", "centroid y (px)", "centroid x (px)", "area (px²)", "best IoU",
            "status", "ground-truth id"} <= set(exported)
    assert len(exported) == len(widget.rows)
    summary_csv = widget.export_summary(tmp_path / "summary.csv")
    summary = pd.read_csv(summary_csv)
    assert {"n_objects", "foreground_fraction", "gt_f1", "gt_ap_dsb"} <= set(summary)

    # a rerun (now without ground truth) updates the same layers, no duplicates
    n_layers = len(viewer.layers)
    widget.ground_truth.value = None
    _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert len(names) == len(set(names))
    assert names.count("fluo_256 instances") == 1
    assert "fluo_256 match status" not in names and "fluo_256 missed" not in names
    assert len(viewer.layers) == n_layers - 2
    assert widget.scores.value == ""
    assert errors == []


def test_gt_points_give_count_scores(dock, qtbot, errors):
    viewer, widget = dock
    widget.ground_truth.value = viewer.layers["fluo_256 clicks"]
    _run(qtbot, widget)
    assert errors == []
    assert {"clicks_f1", "clicks_precision", "clicks_recall"} <= set(widget.summary)
    assert "count F1" in widget.scores.value


def test_mirror_averaging_reaches_the_prediction(dock, qtbot, monkeypatch, errors):
    _, widget = dock
    seen = []
    real = predict_module.run_prediction

    def spy(request, **kwargs):
        seen.append(request.tta)
        return real(request, **kwargs)

    monkeypatch.setattr(predict_module, "run_prediction", spy)
    widget.tta.value = True
    _run(qtbot, widget)
    assert seen == [True] and errors == []
    assert widget.summary["n_objects"] == len(widget.outcome.table)


def test_corrupt_model_file_is_a_notification(dock, qtbot, tmp_path, errors):
    _, widget = dock
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model")
    widget.model_file.value = bad
    _run(qtbot, widget)
    assert len(errors) == 1 and "broken.safetensors" in errors[0]
    assert widget.run_button.enabled


def test_just_trained_model_is_offered(dock, tiny_model_path, monkeypatch):
    _, widget = dock
    monkeypatch.setattr(SESSION, "last_model_path", None)
    SESSION.publish_model(str(tiny_model_path))
    assert widget.model_source.value == "Just trained"
    assert widget.chosen_model() == str(tiny_model_path)


def test_cancel_stops_the_prediction(dock, qtbot, monkeypatch):
    _, widget = dock
    infos: list[str] = []
    monkeypatch.setattr(predict_module, "show_info", infos.append)
    widget.stop_event.set()  # as if Cancel was pressed before the first tile batch
    monkeypatch.setattr(widget.stop_event, "clear", lambda: None)
    _run(qtbot, widget)
    assert widget.stage.value == "Cancelled."
    assert any("cancelled" in text for text in infos)


@pytest.mark.parametrize(
    ("shape", "rgb"), [((64, 80, 3), True), ((3, 48, 64), False)], ids=["rgb", "stack"]
)
def test_rgb_and_stacks(make_napari_viewer, qtbot, tiny_model_path, errors, shape, rgb):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    image = viewer.add_image(data, name="img", rgb=rgb, scale=(2.0,) * (len(shape) - rgb))
    widget = PredictWidget(viewer)
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model_path
    _run(qtbot, widget)
    assert errors == []
    spatial = shape[:-1] if rgb else shape
    for suffix in ("probability", "semantic", "instances"):
        layer = viewer.layers[f"img {suffix}"]
        assert layer.data.shape == spatial
        np.testing.assert_allclose(layer.scale, image.scale)
    assert "label" in viewer.layers["img instances"].features
    assert viewer.layers["img semantic"].features["class"].tolist() == [
        "background",
        "interior",
        "boundary",
    ]


def test_missing_default_model_is_a_notification(dock, qtbot, tmp_path, monkeypatch, errors):
    _, widget = dock
    monkeypatch.setattr(model_io, "DEFAULT_MODEL_PATH", tmp_path / "absent.safetensors")
    widget.model_source.value = "Default nuclei model"
    _run(qtbot, widget)
    assert len(errors) == 1 and "default nuclei model" in errors[0]


def test_a_model_with_fitted_postprocessing_sets_the_controls(dock, qtbot, tiny_model,
                                                              tiny_model_path, tmp_path,
                                                              monkeypatch, errors):
    import dataclasses

    viewer, widget = dock
    infos: list[str] = []
    monkeypatch.setattr(predict_module, "show_info", infos.append)
    fitted = dataclasses.replace(tiny_model, postprocess={
        "fg_threshold": 0.35, "split": 6, "fitted_f1": 0.9, "default_f1": 0.8, "n_objects": 53})
    path = model_io.save_model(fitted, tmp_path / "fitted.safetensors")
    widget.model_file.value = path
    _run(qtbot, widget)
    assert errors == []
    assert (widget.request.settings.fg_threshold, widget.request.settings.split) == (0.35, 6)
    assert (widget.postprocess.threshold.value, widget.postprocess.split.value) == (0.35, 6)
    assert any("fitted to this model: threshold 0.35, split level 6" in i for i in infos)
    # the same model again: nothing to say, and a value the user changes stays
    infos.clear()
    widget.postprocess.split.value = 2
    qtbot.waitUntil(lambda: not widget.postprocess.refining(), timeout=20_000)
    _run(qtbot, widget)
    assert widget.request.settings.split == 2 and not any("fitted" in i for i in infos)
    # a model without fitted settings puts back the defaults over the fitted values only
    widget.postprocess.split.value = 6
    qtbot.waitUntil(lambda: not widget.postprocess.refining(), timeout=20_000)
    widget.model_file.value = tiny_model_path
    _run(qtbot, widget)
    assert (widget.request.settings.fg_threshold, widget.request.settings.split) == (0.5, 0)
    assert any("no fitted post-processing" in i for i in infos)
    qtbot.waitUntil(lambda: not widget.postprocess.refining(), timeout=20_000)


def test_a_pending_postprocessing_change_does_not_outlive_the_dock(dock, qtbot):
    viewer, widget = dock
    _run(qtbot, widget)
    widget.postprocess.split.value = 3  # starts the quiet-time timer
    widget.native.close()
    widget.native.deleteLater()
    qtbot.wait(400)  # longer than the quiet time: the timer must not fire on deleted widgets


def test_fit_to_the_ground_truth_sets_the_controls_and_redraws(dock, qtbot, monkeypatch, errors):
    import dataclasses

    from napari_segkit._widgets import postprocess_panel

    viewer, widget = dock
    panel = widget.postprocess
    said: list[str] = []
    monkeypatch.setattr(postprocess_panel, "show_error", said.append)
    monkeypatch.setattr(postprocess_panel, "show_info", said.append)
    panel.fit()  # nothing predicted yet
    assert panel.fit_worker is None and "press Predict first" in said[-1]
    gt = viewer.layers["fluo_256 ground truth"]
    widget.ground_truth.value = gt
    _run(qtbot, widget)
    # a prediction whose foreground is faint (0.45) on every nucleus: the default threshold
    # finds nothing, a lower one finds them
    faint = np.where(gt.data > 0, 0.45, 0.05).astype(np.float32)
    probs = np.stack([1.0 - faint, faint, np.zeros_like(faint)])
    widget.outcome = dataclasses.replace(widget.outcome, probabilities=probs, n_classes=3,
                                         probability=faint)
    worker = panel.fit()
    assert worker is not None and not panel.fit_button.enabled
    qtbot.waitUntil(lambda: panel.fit_worker is None, timeout=20_000)
    qtbot.waitUntil(lambda: not panel.refining(), timeout=20_000)
    assert panel.fit_button.enabled and errors == []
    assert panel.threshold.value in (0.3, 0.4)
    assert "Fitted to this image: threshold" in said[-1] and "defaults 0.50, 0: 0.000" in said[-1]
    # the live re-run drew the fitted objects, scored against the ground truth
    assert widget.outcome.settings.fg_threshold == panel.threshold.value
    assert widget.outcome.scores["f1"] > 0.5
    assert viewer.layers["fluo_256 instances"].data.max() > 0
    # fitting again finds what is shown and says so
    fitted = (panel.threshold.value, panel.split.value)
    panel.fit()
    qtbot.waitUntil(lambda: panel.fit_worker is None, timeout=20_000)
    assert (panel.threshold.value, panel.split.value) == fitted
    assert widget.stage.value == "Fitted: the settings shown are already the best"
    # clicks cannot fit a threshold
    viewer.add_points([[10, 10]], name="clicks")
    widget.ground_truth.value = viewer.layers["clicks"]
    assert panel.fit() is None and "Labels layer with every nucleus" in said[-1]
