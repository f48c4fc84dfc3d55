import numpy as np
import pytest

from napari_segkit.instance_errors import split_merge_counts, split_objects, summarise_split_merge


def test_split_and_merge_counts():
    gt = np.zeros((40, 80), np.uint16)
    gt[5:25, 5:25] = 1            # split into two predictions
    gt[5:25, 40:50] = 2           # merged with 3 into one prediction
    gt[5:25, 50:60] = 3
    gt[30:38, 70:78] = 4          # predicted correctly
    pred = np.zeros_like(gt)
    pred[5:25, 5:15] = 1
    pred[5:25, 15:25] = 2
    pred[5:25, 40:60] = 3
    pred[30:38, 70:78] = 4
    pred[0:2, 0:2] = 5            # a speck on the background
    c = split_merge_counts(gt, pred)
    assert (c.n_gt, c.n_pred) == (4, 5)
    assert (c.split_gt, c.split_pieces) == (1, 2)
    assert (c.merged_pred, c.merged_gt) == (1, 2)
    assert c.median_area_split_gt == 400 and c.median_area_merged_gt == 200
    gt[gt == 1] = 9  # which ones: by their own ids
    assert split_objects(gt, pred).tolist() == [9] and split_objects(gt, gt).size == 0
    total = summarise_split_merge([c, c.to_dict()])
    assert total["split_gt"] == 2 and total["merged_gt"] == 4


def test_perfect_and_empty():
    gt = np.zeros((10, 10), np.uint8)
    gt[2:5, 2:5] = 1
    c = split_merge_counts(gt, gt)
    assert c.split_gt == c.merged_pred == 0
    e = split_merge_counts(gt, np.zeros_like(gt))
    assert e.n_pred == 0 and e.to_dict()["median_area_split_gt"] is None
    with pytest.raises(ValueError, match="fraction"):
        split_merge_counts(gt, gt, fraction=0.3)
