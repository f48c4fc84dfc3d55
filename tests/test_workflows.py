"""The Qt-free jobs the docks, the CLI and the demo share."""

from __future__ import annotations

import dataclasses
import io as text_io

import numpy as np
import pandas as pd
import pytest

from napari_segkit import io
from napari_segkit.training import TrainConfig
from napari_segkit.workflows import (
    PredictRequest,
    TrainingProgress,
    predict_and_measure,
    predict_folder,
    run_prediction,
    run_training,
)


def test_predict_and_measure_scores_against_labels_and_clicks(tiny_model, fluo_256):
    image, labels, coords, features = fluo_256
    request = PredictRequest(image, "fluo_256", tiny_model, gt_labels=labels, gt_points=coords,
                             gt_classes=features["class"].tolist(), scale=(0.5, 0.5), units="um")
    out = predict_and_measure(request)
    assert out.instances.shape == out.semantic.shape == out.probability.shape == image.shape
    assert {"label", "area_um2", "status"} <= set(out.table.columns)
    assert out.scores["n_gt"] == 53 and out.click_scores["n_clicks"] == 53
    assert out.summary["gt_n_gt"] == 53 and "clicks_f1" in out.summary
    assert out.summary["n_objects"] == len(out.table)
    assert set(np.unique(out.status)) <= {0, 1, 2}
    assert (out.missed_table["status"] == "missed").all()


def test_run_prediction_turns_bad_input_into_a_message(tiny_model, fluo_256):
    image, labels, _, _ = fluo_256
    out = run_prediction(PredictRequest(image, "fluo_256", tiny_model, gt_labels=labels[:10]))
    assert out.error and "ground truth shape" in out.error and out.table is None
    out = run_prediction(PredictRequest(image, "x", tiny_model), stop=lambda: True)
    assert out.cancelled and out.error is None


def test_predict_folder_writes_labels_and_one_table(tiny_model_path, fluo_256, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image = fluo_256[0]
    for name in ("a", "b"):
        io.write_labels(folder / f"{name}.tif", image)  # any integer TIFF is an image too
    lines: list[str] = []
    objects = predict_folder(str(tiny_model_path), folder, tmp_path / "out", log=lines.append)
    assert (tmp_path / "out" / "a_instances.tif").is_file()
    assert (tmp_path / "out" / "b_semantic.tif").is_file()
    assert list(objects.columns[:2]) == ["image", "label"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "objects.csv"), objects,
                                  check_dtype=False)
    assert lines[0].startswith("a: ")


def test_run_training_and_its_progress_bar(tiny_config, fluo_256):
    image, labels, _, _ = fluo_256
    stream = text_io.StringIO()
    progress = TrainingProgress(None, stream)
    events = []

    def on_event(event):
        events.append(event)
        progress(event)

    cfg = TrainConfig(steps=4, patch_size=64, batch_size=2, val_every=2, model=tiny_config,
                      num_threads=1)
    model = run_training([image], [labels], config=cfg, on_event=on_event)
    progress.close()
    assert events[0].kind == "start" and events[-1].kind == "done"
    assert events[-1].model is model and progress.last is events[-1]
    assert progress.bar.n == 4 and progress.bar.total == 4
    text = stream.getvalue()
    assert "4/4" in text and "loss" in text and "val" in text
    assert text.startswith(f"{events[0].message}\n")  # device and precision, once
    assert text.count("training on cpu") == 1
    timed = TrainingProgress(60.0, text_io.StringIO())
    timed(events[-1])
    assert timed.bar.total == 60.0 and timed.bar.n == 60.0  # "done" fills a time bar
    warned = TrainingProgress(None, text_io.StringIO())
    warned(dataclasses.replace(events[0], warnings=("masks look partial",)))
    assert warned.stream.getvalue().splitlines()[1] == "warning: masks look partial"


def test_demo_passes_training_settings_to_its_fine_tuning(tmp_path):
    """bench_finetune.py --set reaches the demo's training (a bad value is refused)."""
    from napari_segkit.demo import run_demo

    with pytest.raises(ValueError, match="TrainConfig.lr"):
        run_demo(tmp_path, steps=1, device="cpu", log=lambda *a: None, settings={"lr": -1.0})
