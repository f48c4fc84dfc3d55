"""Outline keypoints -> closed masks, 2-D and 3-D (annotations.outlines)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_segkit.annotations import (
    outline_to_labels,
)

FAST = settings(max_examples=30, deadline=None)



# --------------------------------------------------------------------------- outlines
def test_outline_2d_smooth_contour():
    t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    circle = np.stack([40 + 20 * np.sin(t), 40 + 20 * np.cos(t)], axis=1)
    triangle = np.array([[5, 5], [5, 15], [14, 10]], float)
    points = np.concatenate([circle, triangle])
    ids = np.array([7] * 10 + [3] * 3)
    labels = outline_to_labels(points, ids, (80, 80))
    # ids in increasing object_id order: triangle (3) -> 1, circle (7) -> 2
    area = (labels == 2).sum()
    assert abs(area - np.pi * 400) < 0.06 * np.pi * 400  # the spline is round, not a decagon
    assert (labels == 1).sum() > 0
    idx = np.round(points).astype(int)
    assert np.all(labels[idx[:, 0], idx[:, 1]] == np.where(ids == 7, 2, 1))


def test_outline_points_outside_are_reported_and_skipped():
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts = np.stack([15 + 8 * np.sin(t), 15 + 8 * np.cos(t)], axis=1)
    pts = np.concatenate([pts, [[100.0, 100.0], [-5.0, 3.0]]])
    with pytest.warns(UserWarning, match="2 outline points outside"):
        labels = outline_to_labels(pts, np.zeros(len(pts), int), (30, 30))
    assert labels.max() == 1


def test_outline_errors():
    with pytest.raises(ValueError, match="at least 3"):
        outline_to_labels(np.array([[1, 1], [5, 5.0]]), [1, 1], (10, 10))
    with pytest.raises(ValueError, match="3-D stack"):
        outline_to_labels(np.zeros((4, 3)), None, (10, 10))
    with pytest.raises(ValueError, match="one id per point"):
        outline_to_labels(np.zeros((4, 2)), [1, 2], (10, 10))


@pytest.mark.parametrize("n", [3, 4, 7])
def test_collinear_outline_points_enclose_no_area(n):
    line = np.stack([np.linspace(5, 25, n), np.linspace(3, 18, n)], axis=1)
    with pytest.raises(ValueError, match="zero area"):
        outline_to_labels(line, np.zeros(n, int), (32, 32))
    # the same on one slice of a 3-D stack
    with pytest.raises(ValueError, match="zero area"):
        outline_to_labels(np.column_stack([np.full(n, 2.0), line]), None, (4, 32, 32))


def _ring(z, r, centre=(20.0, 20.0), n=8):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.full(n, z), centre[0] + r * np.sin(t), centre[1] + r * np.cos(t)], axis=1)


def _check_volume(labels, points, label=1):
    mask = labels == label
    assert mask.any()
    np.testing.assert_array_equal(ndi.binary_fill_holes(mask), mask)  # closed, no cavities
    assert ndi.label(mask)[1] == 1  # one solid piece
    idx = np.round(points).astype(int)
    assert np.all(labels[idx[:, 0], idx[:, 1], idx[:, 2]] == label)


def test_outline_3d_interpolates_between_annotated_slices():
    points = np.concatenate([_ring(2, 5), _ring(5, 10), _ring(8, 6)])
    labels = outline_to_labels(
        points, np.ones(len(points), int), (12, 40, 40), scale=(3.0, 0.5, 0.5)
    )
    _check_volume(labels, points)
    areas = [(labels[z] > 0).sum() for z in range(12)]
    assert areas[0] == areas[1] == areas[9] == 0
    assert areas[2] < areas[3] < areas[4] < areas[5] and areas[5] > areas[6] > areas[8]
    assert labels.dtype == np.uint16 and labels.shape == (12, 40, 40)


def test_outline_3d_convex_hull_for_scattered_keypoints():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(30, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    scale = np.array([4.0, 1.0, 1.0])
    points = np.array([5.0, 20.0, 20.0]) + d * 10.0 / scale  # a 10-unit sphere in physical space
    labels = outline_to_labels(points, None, (12, 40, 40), scale=scale)
    _check_volume(labels, points)
    volume = (labels > 0).sum() * np.prod(scale)
    assert 0.4 * 4 / 3 * np.pi * 1000 < volume < 1.4 * 4 / 3 * np.pi * 1000
    # two objects, one on a single slice
    flat = _ring(9, 4, centre=(5.0, 30.0))
    both = outline_to_labels(
        np.concatenate([points, flat]), np.array([1] * 30 + [2] * 8), (12, 40, 40), scale=scale
    )
    assert (both == 2).any() and np.all(np.nonzero(both == 2)[0] == 9)


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.floats(0, 7), st.floats(0, 24), st.floats(0, 24)),
        min_size=3,
        max_size=24,
    )
)
def test_random_keypoints_property(raw):
    arr = np.array(raw, float)
    ids, points = arr[:, 0].astype(int), arr[:, 1:]
    shape = (8, 24, 24)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = outline_to_labels(points, ids, shape, scale=(2.0, 1.0, 1.0))
    except ValueError as err:
        assert any(m in str(err) for m in ("distinct outline points", "one plane", "zero area"))
        return
    assert labels.shape == shape and labels.dtype == np.uint16
    assert labels.max() <= len(np.unique(ids))
