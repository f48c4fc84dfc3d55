"""h-maxima seeds split clumps and keep bumpy large nuclei whole; fragments merge."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from napari_segkit.instance_refine import h_maxima_seeds, merge_small_fragments
from napari_segkit.postprocess import instances_from_probabilities
from napari_segkit.targets import center_map


def _probs(fg):
    p = np.where(fg, 0.95, 0.05).astype(np.float32)
    return np.stack([1 - p, p, np.zeros_like(p)])


def test_h_maxima_splits_a_clump_whose_centres_merge_above_the_threshold():
    labels = np.zeros((80, 120), np.uint16)
    labels[disk((40, 45), 18, shape=labels.shape)] = 1
    labels[disk((40, 77), 18, shape=labels.shape)] = 2
    fg = labels > 0
    # a blurry centre prediction: the neck stays above 0.5
    center = ndi.gaussian_filter(center_map(labels), 8)
    center /= center.max()
    neck = center[40, 61]
    assert 0.5 < neck < 0.9
    by_threshold = instances_from_probabilities(_probs(fg), center)
    by_hmaxima = instances_from_probabilities(_probs(fg), center, seed_method="h_maxima", seed_h=0.05)
    assert by_threshold.max() == 1
    assert by_hmaxima.max() == 2


def test_h_maxima_keeps_a_bumpy_large_nucleus_whole():
    labels = np.zeros((160, 160), np.uint16)
    labels[disk((80, 80), 60, shape=labels.shape)] = 1
    fg = labels > 0
    yy, xx = np.mgrid[0:160, 0:160]
    bumps = 0.04 * np.sin(yy / 6.0) * np.sin(xx / 6.0)  # shallow bumps on the plateau
    center = np.clip(center_map(labels) * 1.6, 0, 1) * 0.9 + bumps * fg
    by_threshold = instances_from_probabilities(_probs(fg), center, seed_threshold=0.9)
    by_hmaxima = instances_from_probabilities(_probs(fg), center, seed_method="h_maxima", seed_h=0.1)
    assert by_threshold.max() > 3
    assert by_hmaxima.max() == 1


def test_h_maxima_seeds_arguments():
    c = np.zeros((10, 10), np.float32)
    with pytest.raises(ValueError, match="h must"):
        h_maxima_seeds(c, c > 0, h=0.0)
    assert not h_maxima_seeds(c, c >= 0).any()  # no maximum above the floor
    with pytest.raises(ValueError, match="seed_method"):
        instances_from_probabilities(_probs(c > 0), c, seed_method="peaks")


def test_merge_small_fragments():
    labels = np.zeros((60, 100), np.int32)
    for i, x in enumerate((15, 45, 75), start=1):
        labels[disk((20, x), 10, shape=labels.shape)] = i
    labels[5:35, 5:25] = np.where(labels[5:35, 5:25] == 1, 1, labels[5:35, 5:25])
    labels[30:34, 10:20] = 4          # a sliver attached to object 1
    labels[50:53, 90:93] = 5          # a small isolated object
    out = merge_small_fragments(labels, fraction=0.25)
    assert set(np.unique(out)) == {0, 1, 2, 3, 5}
    assert (out[30:34, 10:20] == 1).all()
    with pytest.raises(ValueError, match="fraction"):
        merge_small_fragments(labels, 1.5)


def test_defaults_leave_instances_unchanged():
    labels = np.zeros((60, 60), np.uint16)
    labels[disk((30, 30), 12, shape=labels.shape)] = 1
    fg = labels > 0
    center = center_map(labels)
    a = instances_from_probabilities(_probs(fg), center)
    b = instances_from_probabilities(_probs(fg), center, seed_method="threshold", merge_fraction=0.0)
    assert np.array_equal(a, b)
