"""Held-out strips: counting F1 against clicks, mask F1, the noise rule."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit.holdout import (
    HeldOut,
    HoldOutScore,
    count_matches,
    f1_noise,
    mask_matches_at,
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
    assert tuple(mask_matches_at(pred, part, (0.5,))[0]) == (1, 1, 1)


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


def test_a_new_model_from_clicks_keeps_its_latest_weights(monkeypatch):
    """Scripted held-out scores: step 2 the best (0.80 +- 0.04), steps 4 and 6 clearly
    worse: counted, the weights of step 6 are kept (counting cannot see outlines); a
    mask-validated model keeps its best."""
    from napari_segkit import training

    scripted = {2: 0.80, 4: 0.60, 6: 0.70}
    for kind, kept in (("count", 6), ("mask", 2)):
        trainers: list = []

        def fake_score(parts, instances_of, _kind=kind, _trainers=trainers):
            f1 = scripted[_trainers[-1].step]
            tp = round(100 * f1)
            return HoldOutScore(f1, tp, 100 - tp, 100 - tp, _kind)

        init = training.Trainer.__init__

        def remember(self, *a, _init=init, _trainers=trainers, **k):
            _init(self, *a, **k)
            _trainers.append(self)

        monkeypatch.setattr(training.Trainer, "__init__", remember)
        monkeypatch.setattr(training, "score_holdout", fake_score)
        image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
        clicks = np.array([[20.0, 20.0], [60.0, 60.0], [80.0, 30.0]])
        cfg = training.TrainConfig(steps=6, patch_size=32, batch_size=2, val_every=2,
                                   num_threads=1, seed=0)
        gen = training.train([image], points=[(clicks, None)], config=cfg, init=None)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                model = done.value
                break
        best = model.provenance["training"]["best"]
        assert best["step"] == kept, kind
        if kind == "count":
            assert best["best_f1"] == 0.80 and best["val_f1"] == 0.70  # the counts are reported
        monkeypatch.undo()


def test_score_holdout_pools_parts():
    gt = _squares((40, 40), [(22, 2), (22, 20)])
    clicks = np.array([[24, 4], [24, 22]], float)
    parts = [HeldOut(np.zeros((1, 40, 40)), 20, clicks, None, None, np.ones((40, 40), bool)),
             HeldOut(np.zeros((1, 40, 40)), 20, None, None, gt, np.ones((40, 40), bool))]
    s = score_holdout(parts, lambda x: gt)
    assert (s.tp, s.fp, s.fn, s.f1, s.kind) == (4, 0, 0, 1.0, "count+mask")


def test_held_out_masks_also_score_how_well_the_outlines_fit():
    gt = _squares((40, 40), [(22, 2), (22, 20)], size=10)
    part = HeldOut(np.zeros((1, 40, 40)), 20, None, None, gt, np.ones((40, 40), bool))
    exact = score_holdout([part], lambda x: gt)
    assert exact.f1 == 1.0 and exact.outline == 1.0
    loose = gt.copy()
    loose[21, 2:12] = 1  # one row more on object 1: IoU 10 / 11, matched up to 0.9
    s = score_holdout([part], lambda x: loose)
    assert s.f1 == 1.0
    # matched by both at IoU 0.5 ... 0.9, by object 2 only at 0.95: (9 x 1 + 1 / 3) / 10
    assert s.outline == pytest.approx((9 + 1 / 3) / 10)
    clicks = HeldOut(np.zeros((1, 40, 40)), 20, np.array([[24.0, 4.0]]), None, None,
                     np.ones((40, 40), bool))
    assert score_holdout([clicks], lambda x: gt).outline is None  # counting sees no outline
