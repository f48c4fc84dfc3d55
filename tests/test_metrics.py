import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_segkit.metrics import (
    average_precision_dsb,
    count_error,
    evaluate_instances,
    iou_matrix,
    match_and_evaluate,
    match_instances,
    points_vs_instances,
    semantic_scores,
    summarise,
)


def square(shape, top, left, size_y, size_x, label=1, out=None):
    out = np.zeros(shape, dtype=np.uint16) if out is None else out
    out[top : top + size_y, left : left + size_x] = label
    return out


def test_iou_matrix_hand_case():
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    pred = np.array([[3, 3, 3, 5], [3, 3, 3, 0]])
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    assert gt_ids.tolist() == [1, 2]
    assert pred_ids.tolist() == [3, 5]
    np.testing.assert_allclose(iou, [[4 / 6, 0.0], [2 / 8, 1 / 4]])


def test_iou_matrix_huge_ids_and_3d():
    gt = np.zeros((3, 4, 4), dtype=np.uint64)
    gt[1:, :2, :2] = 2**40
    pred = np.zeros((3, 4, 4), dtype=np.int32)
    pred[1:, :2, :2] = 7
    pred[0, 0, 0] = 9
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    assert gt_ids.tolist() == [2**40]
    assert pred_ids.tolist() == [7, 9]
    np.testing.assert_allclose(iou, [[1.0, 0.0]])


def test_perfect_match_with_other_ids():
    gt = square((30, 30), 2, 2, 8, 8, 1)
    square((30, 30), 15, 15, 10, 10, 2, gt)
    pred = np.where(gt == 1, 17, np.where(gt == 2, 4, 0))
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.precision == m.recall == m.f1 == 1.0
    assert m.mean_matched_iou == 1.0
    assert sorted(m.pairs) == [(1, 17, 1.0), (2, 4, 1.0)]
    assert average_precision_dsb(gt, pred) == pytest.approx(1.0)
    assert count_error(gt, pred) == 0


def test_shifted_square():
    gt = square((20, 20), 5, 5, 10, 10)
    pred = square((20, 20), 5, 6, 10, 10)  # IoU 90 / 110
    m = match_instances(gt, pred)
    assert m.tp == 1 and m.f1 == 1.0
    assert m.mean_matched_iou == pytest.approx(90 / 110)
    # matched for thresholds 0.50 ... 0.80 (7 of 10)
    assert average_precision_dsb(gt, pred) == pytest.approx(0.7)
    assert match_instances(gt, pred, iou_threshold=0.85).tp == 0


def test_one_object_split_in_two_halves():
    gt = square((20, 20), 5, 5, 10, 10)
    pred = square((20, 20), 5, 5, 10, 5, 1)
    square((20, 20), 5, 10, 10, 5, 2, pred)  # two halves, IoU 0.5 each
    m = match_instances(gt, pred, 0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.precision == 0.5 and m.recall == 1.0
    assert m.f1 == pytest.approx(2 / 3)
    assert m.gt_best_iou == {1: 0.5}
    assert m.pred_best_iou == {1: 0.5, 2: 0.5}
    assert len(m.false_pred) == 1 and m.missed_gt == []
    # t = 0.5: 1 / (1 + 1 + 0); t >= 0.55: 0 / (0 + 2 + 1)
    assert average_precision_dsb(gt, pred) == pytest.approx(0.05)


def test_two_objects_merged_into_one():
    gt = square((20, 20), 5, 5, 10, 6, 1)
    square((20, 20), 5, 11, 10, 4, 2, gt)  # 60 px and 40 px
    pred = square((20, 20), 5, 5, 10, 10, 9)
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.pairs == [(1, 9, pytest.approx(0.6))]
    assert m.missed_gt == [2] and m.false_pred == []
    assert m.precision == 1.0 and m.recall == 0.5
    assert count_error(gt, pred) == -1
    # 0.5, 0.55 match: 1/2 each -> (0.5 + 0.5) / 10
    assert average_precision_dsb(gt, pred) == pytest.approx(0.1)


def test_empty_prediction():
    gt = square((10, 10), 2, 2, 4, 4)
    pred = np.zeros_like(gt)
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (0, 0, 1)
    assert (m.precision, m.recall, m.f1) == (1.0, 0.0, 0.0)
    assert math.isnan(m.mean_matched_iou)
    assert average_precision_dsb(gt, pred) == 0.0
    assert m.gt_best_iou == {1: 0.0}


def test_empty_ground_truth():
    pred = square((10, 10), 2, 2, 4, 4)
    gt = np.zeros_like(pred)
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)
    assert (m.precision, m.recall, m.f1) == (0.0, 1.0, 0.0)
    assert average_precision_dsb(gt, pred) == 0.0
    r = evaluate_instances(gt, pred)
    assert r["relative_count_error"] is None and r["count_error"] == 1


def test_both_empty():
    z = np.zeros((8, 8), dtype=np.uint16)
    m = match_instances(z, z)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    assert average_precision_dsb(z, z) == 1.0
    r = evaluate_instances(z, z)
    assert r["mean_matched_iou"] is None and r["relative_count_error"] == 0.0
    json.dumps(r)


def test_3d_matching():
    gt = np.zeros((6, 10, 10), dtype=np.uint16)
    gt[1:5, 1:5, 1:5] = 1
    gt[1:5, 6:9, 6:9] = 2
    pred = np.zeros_like(gt)
    pred[1:5, 1:5, 1:5] = 3
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)


def test_shape_mismatch_message():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        match_instances(np.zeros((4, 5), int), np.zeros((4, 6), int))


def test_float_labels_rejected_unless_integral():
    with pytest.raises(ValueError, match="integer label image"):
        iou_matrix(np.full((3, 3), 0.5), np.zeros((3, 3), int))
    iou, _, _ = iou_matrix(np.ones((3, 3)), np.ones((3, 3), int))
    assert iou.tolist() == [[1.0]]


def test_evaluate_is_json_and_consistent():
    gt = square((20, 20), 5, 5, 10, 10)
    pred = square((20, 20), 5, 6, 10, 10)
    r = evaluate_instances(gt, pred)
    json.dumps(r)
    assert r["n_gt"] == 1 and r["n_pred"] == 1 and r["f1"] == 1.0
    assert r["ap_dsb"] == pytest.approx(0.7)


def test_match_and_evaluate_equals_the_two_calls_and_checks_the_threshold():
    gt = square((40, 40), 2, 2, 10, 10)
    square((40, 40), 20, 20, 8, 12, label=7, out=gt)
    pred = square((40, 40), 3, 2, 10, 10, label=3)
    square((40, 40), 30, 2, 5, 5, label=4, out=pred)
    match, scores = match_and_evaluate(gt, pred)
    assert scores == evaluate_instances(gt, pred)
    assert match == match_instances(gt, pred)
    assert match.missed_gt == [7] and match.false_pred == [4]
    with pytest.raises(ValueError, match="iou_threshold"):
        match_and_evaluate(gt, pred, 0.0)


def test_summarise_pools_counts():
    a = {"n_gt": 4, "n_pred": 3, "tp": 3, "fp": 0, "fn": 1, "mean_matched_iou": 0.8, "ap_dsb": 0.5}
    b = {"n_gt": 1, "n_pred": 3, "tp": 1, "fp": 2, "fn": 0, "mean_matched_iou": 0.6, "ap_dsb": 0.3}
    s = summarise([a, b])
    assert (s["tp"], s["fp"], s["fn"]) == (4, 2, 1)
    assert s["precision"] == pytest.approx(4 / 6)
    assert s["recall"] == pytest.approx(4 / 5)
    assert s["f1"] == pytest.approx(8 / 11)
    assert s["mean_matched_iou"] == pytest.approx((0.8 * 3 + 0.6) / 4)
    assert s["ap_dsb"] == pytest.approx(0.4)
    assert s["median_abs_count_error"] == 1.5
    json.dumps(s)
    assert summarise([])["n_images"] == 0


def test_semantic_scores():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
    s = semantic_scores(gt, pred, n_classes=3)
    # class 0: gt 4, pred 4, inter 3 -> iou 3/5, dice 6/8
    assert s[0] == {"iou": pytest.approx(3 / 5), "dice": pytest.approx(6 / 8)}
    assert s[1] == {"iou": pytest.approx(3 / 5), "dice": pytest.approx(6 / 8)}
    assert math.isnan(s[2]["iou"]) and math.isnan(s[2]["dice"])  # absent from both
    assert s["mean"]["iou"] == pytest.approx(3 / 5)
    assert s["mean_foreground"]["dice"] == pytest.approx(6 / 8)


def test_points_vs_instances():
    labels = np.zeros((20, 20), dtype=np.uint16)
    labels[1:5, 1:5] = 1
    labels[8:14, 8:14] = 2
    labels[15:19, 1:5] = 3
    points = np.array(
        [
            [2.2, 2.6],  # object 1
            [9, 9],  # object 2
            [12.4, 12],  # object 2 again: merged -> FN
            [7, 1],  # background pixel -> FN
            [16, 2],  # background click inside object 3 (does not count)
            [30, 2],  # outside the image: ignored
        ]
    )
    classes = ["nucleus", "nucleus", "nucleus", "nucleus", "background", "nucleus"]
    with pytest.warns(UserWarning, match="outside"):
        r = points_vs_instances(points, labels, classes)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 2)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(4 / 7)
    assert r["background_clicks_in_objects"] == 1
    assert r["n_outside"] == 1


def test_points_vs_instances_no_classes_and_empty():
    labels = np.zeros((10, 10), dtype=np.uint16)
    labels[2:5, 2:5] = 1
    r = points_vs_instances([[3, 3]], labels)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 0)
    r = points_vs_instances(np.zeros((0, 2)), labels)
    assert (r["tp"], r["fp"], r["fn"], r["recall"]) == (0, 1, 0, 1.0)
    with pytest.raises(ValueError, match="one \\(N, 2\\) row"):
        points_vs_instances(np.zeros((3, 3)), labels)


def _brute_iou(gt, pred):
    g_ids = [i for i in np.unique(gt) if i]
    p_ids = [i for i in np.unique(pred) if i]
    out = np.zeros((len(g_ids), len(p_ids)))
    for a, g in enumerate(g_ids):
        for b, p in enumerate(p_ids):
            inter = np.sum((gt == g) & (pred == p))
            union = np.sum((gt == g) | (pred == p))
            out[a, b] = inter / union
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 6),
    st.integers(1, 6),
)
def test_iou_matrix_matches_brute_force(seed, n_gt, n_pred):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n_gt + 1, size=(9, 11))
    pred = rng.integers(0, n_pred + 1, size=(9, 11)) * 3
    iou, _, _ = iou_matrix(gt, pred)
    np.testing.assert_allclose(iou, _brute_iou(gt, pred))
    m = match_instances(gt, pred, 0.3)
    # matched pairs are one-to-one and above the threshold
    assert len({p[0] for p in m.pairs}) == len({p[1] for p in m.pairs}) == m.tp
    assert all(p[2] >= 0.3 for p in m.pairs)
    assert m.tp + m.fn == m.n_gt and m.tp + m.fp == m.n_pred
