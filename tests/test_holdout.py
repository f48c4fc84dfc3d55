"""Held-out strips: counting F1 against clicks, mask F1, the noise rule."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit.holdout import (
    HeldOut,
    HoldOutScore,
    count_matches,
    f1_noise,
    mask_matches,
    prefer_start,
    score_holdout,
    split_holdout,
    strip_start,
)
from napari_segkit.targets import instance_targets


def _squares(shape, corners, size=6):
    lab = np.zeros(shape, np.int32)
    for i, (r, c) in enumerate(corners, start=1):
        lab[r:r + size, c:c + size] = i
    return lab


def test_count_matches_scores_predicted_objects_against_strip_clicks():
    # strip from row 20 of a 40 x 60 crop
    pred = _squares((40, 60), [(2, 2), (22, 2), (22, 20), (30, 40), (22, 50)])
    pred[22:28, 26:32] = 3  # object 3 is wide: it holds two clicks (two nuclei merged)
    clicks = np.array([[4, 4],      # context row: not scored, its object neither
                       [24, 4],     # TP (object 2)
                       [24, 22], [24, 29],  # both in object 3: one TP, one FN
                       [35, 10]], float)     # on nothing: FN
    part = HeldOut(np.zeros((1, 40, 60)), 20, clicks, np.array([[32, 42]], float), None,
                   np.ones((40, 60), bool))
    tp, fp, fn = count_matches(pred, part)
    # object 4 holds a background click, object 5 no click: both false
    assert (tp, fp, fn) == (2, 2, 2)
    # outside the annotated region an unclicked object is not counted
    part.region[:, 45:] = False
    assert count_matches(pred, part) == (2, 1, 2)


def test_mask_matches_use_objects_whose_centre_is_in_the_strip():
    gt = _squares((40, 40), [(2, 2), (22, 2), (22, 20)])
    pred = gt.copy()
    pred[pred == 3] = 0  # missed
    pred[30:36, 30:36] = 9  # false
    part = HeldOut(np.zeros((1, 40, 40)), 20, None, None, gt, np.ones((40, 40), bool))
    assert mask_matches(pred, part) == (1, 1, 1)


def test_split_holdout_ignores_the_strip_for_training_and_keeps_context():
    labels = _squares((100, 80), [(5, 5), (50, 5), (85, 5), (85, 40)])
    t = instance_targets(labels)
    x = np.random.default_rng(0).random((1, 100, 80)).astype(np.float32)
    trained, part = split_holdout(x, t, 0.2, instances=labels)
    assert (trained.classes[80:] == -1).all() and (trained.classes[:80] >= 0).all()
    assert (t.classes[80:] >= 0).all()  # the input targets are not modified
    assert part.x.shape == (1, 52, 80) and part.first_row == 32
    assert part.instances.shape == (52, 80)
    # a region: the strip is the bottom of the region's rows
    region = np.zeros((100, 80), bool)
    region[10:60] = True
    assert strip_start(region, 0.2) == 50
    # nothing to score in the strip: no part
    _, none = split_holdout(x, t, 0.2, clicks=np.array([[10.0, 10.0]]))
    assert none is None


def test_noise_and_the_start_rule():
    assert f1_noise(0.8, 100) == pytest.approx(0.04)
    assert f1_noise(1.0, 10) == 0.0
    start = HoldOutScore(0.80, 80, 20, 20, "count")  # n = 100, noise 0.04
    assert not prefer_start(start, HoldOutScore(0.77, 77, 23, 23, "count"))
    assert prefer_start(start, HoldOutScore(0.70, 70, 30, 30, "count"))
    assert not prefer_start(start, HoldOutScore(0.70, 70, 30, 30, "count"), margin=3.0)


def test_score_holdout_pools_parts():
    gt = _squares((40, 40), [(22, 2), (22, 20)])
    clicks = np.array([[24, 4], [24, 22]], float)
    parts = [HeldOut(np.zeros((1, 40, 40)), 20, clicks, None, None, np.ones((40, 40), bool)),
             HeldOut(np.zeros((1, 40, 40)), 20, None, None, gt, np.ones((40, 40), bool))]
    s = score_holdout(parts, lambda x: gt)
    assert (s.tp, s.fp, s.fn, s.f1, s.kind) == (4, 0, 0, 1.0, "count+mask")
