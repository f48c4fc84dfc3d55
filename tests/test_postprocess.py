import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segkit.metrics import match_instances
from napari_segkit.postprocess import (
    foreground_probability,
    instances_from_mask,
    instances_from_probabilities,
    semantic_from_probabilities,
)


def two_touching_disks(shape=(48, 64), radius=10):
    """Ground truth: two disks whose edges touch along a short line."""
    yy, xx = np.indices(shape)
    cy = shape[0] // 2
    gt = np.zeros(shape, dtype=np.uint16)
    gt[(yy - cy) ** 2 + (xx - 20) ** 2 <= radius**2] = 1
    gt[((yy - cy) ** 2 + (xx - 38) ** 2 <= radius**2) & (gt == 0)] = 2
    return gt


def probabilities_from_labels(gt):
    """Ideal 3-class probabilities (background, interior, boundary) and centre map."""
    boundary = np.zeros(gt.shape, dtype=bool)
    center = np.zeros(gt.shape, dtype=np.float32)
    for i in range(1, int(gt.max()) + 1):
        obj = gt == i
        boundary |= obj & ~ndi.binary_erosion(obj)
        d = ndi.distance_transform_edt(obj)
        center[obj] = (d / d.max())[obj]
    # pixels where two objects meet count as boundary too
    boundary |= (gt > 0) & (ndi.grey_dilation(gt, size=3) != ndi.grey_erosion(gt, size=3))
    p = np.zeros((3, *gt.shape), dtype=np.float32)
    p[0] = gt == 0
    p[1] = (gt > 0) & ~boundary
    p[2] = boundary
    # soften a little so nothing is exactly 0/1
    p = 0.9 * p + 0.1 / 3
    return p, center


def test_semantic_and_foreground():
    gt = two_touching_disks()
    p, _ = probabilities_from_labels(gt)
    sem = semantic_from_probabilities(p)
    assert sem.dtype == np.uint8 and sem.shape == gt.shape
    assert set(np.unique(sem)) == {0, 1, 2}
    fg = foreground_probability(p)
    np.testing.assert_allclose(fg, p[1] + p[2])
    # channel-last input and extra channel dropped
    extra = np.concatenate([p, np.full((1, *gt.shape), 5.0, np.float32)])
    np.testing.assert_array_equal(
        semantic_from_probabilities(np.moveaxis(extra, 0, -1), channel_axis=-1, n_classes=3), sem
    )


def test_touching_disks_split_by_center_channel():
    gt = two_touching_disks()
    p, center = probabilities_from_labels(gt)
    # blur the class map so interior alone would merge them: only the centre splits
    p_merged = p.copy()
    p_merged[1] = p[1] + p[2]
    p_merged[2] = 0
    labels = instances_from_probabilities(p_merged, center)
    assert labels.dtype == np.uint16
    m = match_instances(gt, labels)
    assert labels.max() == 2
    assert m.tp == 2 and m.mean_matched_iou > 0.85


def test_center_channel_from_raw_output():
    gt = two_touching_disks()
    p, center = probabilities_from_labels(gt)
    raw = np.concatenate([p, center[None]])
    labels = instances_from_probabilities(raw, n_classes=3)
    assert match_instances(gt, labels).tp == 2


def test_touching_disks_split_by_interior_boundary():
    gt = two_touching_disks()
    p, _ = probabilities_from_labels(gt)
    labels = instances_from_probabilities(p)
    m = match_instances(gt, labels)
    assert labels.max() == 2
    assert m.tp == 2 and m.mean_matched_iou > 0.85


def test_min_size_removes_specks_and_seedless_regions_kept():
    gt = two_touching_disks()
    p, _ = probabilities_from_labels(gt)
    # a 3x3 speck of foreground (too small) and a 5x5 blob with boundary only (no seed)
    p[:, 2:5, 2:5] = np.array([0.0, 1.0, 0.0])[:, None, None]
    p[:, 40:45, 50:55] = np.array([0.0, 0.0, 1.0])[:, None, None]
    labels = instances_from_probabilities(p, min_size=12)
    assert labels[3, 3] == 0  # 9 px < 12: removed
    assert labels[42, 52] > 0  # 25 px, no interior seed: kept as its own object
    assert labels.max() == 3
    assert np.unique(labels).tolist() == [0, 1, 2, 3]  # sequential ids
    labels = instances_from_probabilities(p, min_size=30)
    assert labels[42, 52] == 0 and labels.max() == 2


def test_small_holes_filled():
    gt = np.zeros((30, 30), dtype=np.uint16)
    gt[5:25, 5:25] = 1
    p, center = probabilities_from_labels(gt)
    p[:, 14:16, 14:16] = np.array([1.0, 0.0, 0.0])[:, None, None]  # 4 px hole
    labels = instances_from_probabilities(p, center)
    assert labels[14, 14] == 1
    labels = instances_from_probabilities(p, center, max_hole_size=0)
    assert labels[14, 14] == 0


def test_3d_instances():
    zz, yy, xx = np.indices((16, 24, 36))
    gt = np.zeros(zz.shape, dtype=np.uint16)
    gt[(zz - 8) ** 2 + (yy - 12) ** 2 + (xx - 11) ** 2 <= 49] = 1
    gt[((zz - 8) ** 2 + (yy - 12) ** 2 + (xx - 24) ** 2 <= 49) & (gt == 0)] = 2
    p, center = probabilities_from_labels(gt)
    for c in (center, None):
        labels = instances_from_probabilities(p, c)
        assert labels.shape == gt.shape
        assert match_instances(gt, labels).tp == 2


def test_nans_rejected():
    p = np.full((3, 8, 8), 1 / 3, dtype=np.float32)
    p[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="model output.*NaN"):
        instances_from_probabilities(p)
    with pytest.raises(ValueError, match="NaN"):
        instances_from_probabilities(np.full((3, 8, 8), 1 / 3), np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="spatial shape"):
        instances_from_probabilities(np.full((3, 8, 8), 1 / 3), np.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        instances_from_probabilities(np.zeros((8, 8)))


def test_two_class_model_falls_back_to_distance_watershed():
    gt = two_touching_disks()
    p = np.stack([gt == 0, gt > 0]).astype(np.float32)
    labels = instances_from_probabilities(p)
    assert match_instances(gt, labels).tp == 2


def test_instances_from_mask_splits_touching_and_keeps_single():
    gt = two_touching_disks()
    labels = instances_from_mask(gt > 0)
    assert labels.max() == 2
    assert match_instances(gt, labels).tp == 2
    one = np.zeros((30, 30), bool)
    one[5:25, 8:20] = True  # a rectangle is one object, not split on its plateau
    assert instances_from_mask(one).max() == 1
    assert instances_from_mask(np.zeros((10, 10))).max() == 0
