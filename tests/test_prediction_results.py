"""Post-processing settings, honest scores and readable tables (no Qt)."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_segkit import outcome_text, workflows
from napari_segkit.prediction_results import (
    SPLIT_LEVELS,
    PostprocessSettings,
    measure_prediction,
)
from napari_segkit.readable_table import readable_name, readable_table


def _probabilities(shape=(40, 40)):
    """Three classes + a centre map: two separate discs."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    fg = np.zeros(shape, np.float32)
    center = np.zeros(shape, np.float32)
    for cy, cx in ((10, 10), (28, 28)):
        d = np.hypot(yy - cy, xx - cx)
        fg = np.maximum(fg, (d < 6).astype(np.float32))
        center = np.maximum(center, np.clip(1 - d / 6, 0, 1))
    interior = fg * 0.9
    return np.stack([1 - fg * 0.95, interior, fg * 0.05, center]).astype(np.float32)


@pytest.mark.parametrize("kwargs", [{"fg_threshold": 0.0}, {"fg_threshold": 1.0},
                                    {"min_size": -1}, {"split": SPLIT_LEVELS + 1}])
def test_bad_settings_say_what_is_wrong(kwargs):
    with pytest.raises(ValueError, match="threshold|size|split"):
        PostprocessSettings(**kwargs)


def test_split_levels_map_to_seeds():
    assert "seed_method" not in PostprocessSettings(split=0).postprocess_kwargs(True)
    low = PostprocessSettings(split=1).postprocess_kwargs(True)
    high = PostprocessSettings(split=SPLIT_LEVELS).postprocess_kwargs(True)
    assert low["seed_method"] == high["seed_method"] == "h_maxima"
    assert low["seed_h"] > high["seed_h"]  # lower h: more seeds, more splitting
    no_center = PostprocessSettings(split=SPLIT_LEVELS).postprocess_kwargs(False)
    assert no_center["seed_threshold"] > 0.5
    zoomed = PostprocessSettings(min_size=30).postprocess_kwargs(True, zoom=0.5)
    assert zoomed["min_size"] == 30 and zoomed["min_seed_size"] == 16  # 4 px / 0.5**2


def test_threshold_and_min_size_change_the_instances():
    probs = _probabilities()
    image = probs[1]
    base = measure_prediction(probs, 3, image)
    assert len(base.table) == 2
    big = measure_prediction(probs, 3, image, settings=PostprocessSettings(min_size=500))
    assert len(big.table) == 0


def test_empty_ground_truth_is_nothing_to_score():
    probs = _probabilities()
    for kwargs in ({"gt_labels": np.zeros((40, 40), np.uint16)},
                   {"gt_points": np.empty((0, 2))}):
        out = measure_prediction(probs, 3, probs[1], gt_name="gt", **kwargs)
        assert "nothing_to_score" in out.summary and out.scores is None
        assert out.click_scores is None
        assert "nothing to score against" in out.warnings[0]
        text = outcome_text.scores_text(out.summary)
        assert "nothing to score against" in text and "recall" not in text


def test_clicks_outside_are_counted_and_reported():
    probs = _probabilities()
    clicks = np.array([[10.0, 10.0], [28.0, 28.0], [-5.0, 3.0], [3.0, 99.0]])
    out = measure_prediction(probs, 3, probs[1], gt_points=clicks, gt_name="clicks")
    assert out.summary["clicks_n_outside"] == 2 and out.summary["clicks_f1"] == 1.0
    assert out.warnings == ["2 of 4 ground-truth clicks of 'clicks' lie outside the image and "
                            "were not scored."]
    assert "2 of 4 clicks outside the image" in outcome_text.scores_text(out.summary)
    far = measure_prediction(probs, 3, probs[1], gt_points=clicks[2:], gt_name="clicks")
    assert "all 2 of 2 clicks" in far.summary["nothing_to_score"]
    background = measure_prediction(probs, 3, probs[1], gt_points=clicks[:1],
                                    gt_classes=["background"])
    assert "only background" in background.summary["nothing_to_score"]


def test_readable_table_keeps_predicted_and_ground_truth_ids_apart():
    pred = np.zeros((20, 20), np.uint16)
    pred[2:6, 2:6] = 1
    pred[10:14, 10:14] = 2
    gt = np.zeros_like(pred)
    gt[2:6, 2:6] = 7
    gt[15:19, 1:5] = 9  # missed
    from napari_segkit import measure

    table = measure.object_table(pred, gt=gt, scale=(0.5, 0.5), units="um")
    missed = measure.missed_objects(gt, pred, scale=(0.5, 0.5), units="um")
    rows = readable_table(table, missed)
    assert list(rows.columns[:4]) == ["object id", "status", "best IoU", "ground-truth id"]
    assert rows["status"].tolist() == ["matched", "false positive", "missed"]
    assert rows["object id"].tolist()[:2] == [1, 2] and rows["object id"].isna().tolist()[2]
    assert rows["ground-truth id"].tolist()[0] == 7 and pd.isna(rows["ground-truth id"][1])
    assert rows["ground-truth id"].tolist()[2] == 9
    np.testing.assert_allclose(rows["area (µm²)"], rows["area (px²)"] * 0.25)
    assert readable_name("centroid-2", 3) == "centroid x (px)"
    assert readable_name("volume_vox", 3) == "volume (voxels)"
    assert readable_name("area_scaled") == "area (scaled units²)"


def test_predict_folder_reports_progress_and_stops(tmp_path, tiny_model, fluo_256):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"im{i}.tif", fluo_256[0][:64, 64 * i: 64 * i + 64])
    seen = []
    objects = workflows.predict_folder(tiny_model, folder, tmp_path / "all", log=lambda _: None,
                                       progress=lambda d, n: seen.append((d, n)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert set(objects["image"]) <= {"im0", "im1", "im2"}
    stop = threading.Event()

    def stop_after_first(done, total):
        if done == 1:
            stop.set()

    part = workflows.predict_folder(tiny_model, folder, tmp_path / "part", log=lambda _: None,
                                    progress=stop_after_first, stop=stop)
    assert set(part["image"]) <= {"im0"}
    assert (tmp_path / "part" / "im0_instances.tif").exists()
    assert not (tmp_path / "part" / "im1_instances.tif").exists()
    assert len(pd.read_csv(tmp_path / "part" / "objects.csv")) == len(part)
