"""Annotations -> label images: polygons, boxes, outline keypoints (2-D / 3-D), clicks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage import draw, measure

from napari_segkit._sample import sample_path
from napari_segkit.annotations import (
    SPARSE_BACKGROUND,
    SPARSE_IGNORE,
    SPARSE_OBJECT,
    boxes_to_labels,
    clicks_to_labels,
    clicks_to_sparse_labels,
    estimate_object_radius,
    outline_to_labels,
    polygons_to_labels,
)
from napari_segkit.io import read_image, read_labels, read_points_csv, read_shapes_csv

FAST = settings(max_examples=30, deadline=None)


def _f1(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    try:
        from napari_segkit.metrics import match_instances
    except ImportError:  # metrics lands separately; a tiny equivalent keeps this test usable
        return _f1_fallback(gt, pred, threshold)
    return match_instances(gt, pred, iou_threshold=threshold).f1


def _f1_fallback(gt, pred, threshold):
    n_gt, n_pred = int(gt.max()), int(pred.max())
    inter = np.zeros((n_gt + 1, n_pred + 1))
    np.add.at(inter, (gt.ravel(), pred.ravel()), 1)
    area_g, area_p = inter.sum(1), inter.sum(0)
    iou = inter / (area_g[:, None] + area_p[None, :] - inter + 1e-9)
    tp = int(np.sum(iou[1:, 1:] > threshold))
    fp = len(np.unique(pred)) - 1 - tp
    fn = len(np.unique(gt)) - 1 - tp
    return 2 * tp / max(2 * tp + fp + fn, 1)


def _sample(name):
    image = read_image(sample_path(f"{name}.tif"))
    gt = read_labels(sample_path(f"{name}_labels.tif"))
    coords, features = read_points_csv(sample_path(f"{name}_points.csv"))
    return image, gt, coords, features


# --------------------------------------------------------------------------- polygons
def test_polygon_equals_skimage_draw_polygon():
    verts = np.array([[2.3, 3.1], [20.7, 5.5], [25.2, 30.9], [8.4, 22.0], [10.0, 12.5]])
    labels = polygons_to_labels([verts], (40, 40))
    expected = np.zeros((40, 40), np.uint16)
    rr, cc = draw.polygon(verts[:, 0], verts[:, 1], shape=(40, 40))
    expected[rr, cc] = 1
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint16


def test_sample_shapes_match_ground_truth():
    gt = read_labels(sample_path("fluo_512_labels.tif"))
    shapes = read_shapes_csv(sample_path("fluo_512_shapes.csv"))
    labels = polygons_to_labels(shapes, gt.shape)
    assert labels.max() == len(shapes) == 24
    for i, (kind, verts) in enumerate(shapes, start=1):
        centre = np.round(verts.mean(axis=0)).astype(int)
        target = gt == gt[tuple(centre)]
        mask = labels == i
        iou = (mask & target).sum() / (mask | target).sum()
        assert iou > (0.8 if kind == "polygon" else 0.5), (i, kind, iou)


def test_later_polygon_wins_and_ids_follow_order():
    a = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    b = a + 5
    labels = polygons_to_labels([a, b], (20, 20))
    assert labels[7, 7] == 2 and labels[2, 2] == 1 and labels[12, 12] == 2


def test_rectangles_and_ellipses_napari_style():
    rect = ("rectangle", [[2, 2], [2, 12], [8, 12], [8, 2]])
    ellipse = ("ellipse", [[10, 10], [10, 30], [20, 30], [20, 10]])
    labels = polygons_to_labels([rect, ellipse], (32, 32))
    assert (labels == 1).sum() == 6 * 10 + 0 or (labels == 1).sum() > 0
    area = (labels == 2).sum()
    assert abs(area - np.pi * 5 * 10) < 0.1 * np.pi * 50
    assert labels[15, 20] == 2 and labels[10, 10] == 0


def test_polygon_errors_name_the_index():
    good = np.array([[0, 0], [0, 5], [5, 5]], float)
    with pytest.raises(ValueError, match="polygon 1 has 2 distinct vertices"):
        polygons_to_labels([good, np.array([[1, 1], [2, 2], [1, 1]], float)], (10, 10))
    with pytest.raises(ValueError, match="polygon 0 has zero area"):
        polygons_to_labels([np.array([[0, 0], [1, 1], [2, 2]], float)], (10, 10))
    with pytest.raises(ValueError, match="polygon 0 has NaN"):
        polygons_to_labels([np.array([[0, 0], [np.nan, 1], [2, 0]])], (10, 10))
    with pytest.raises(ValueError, match="encloses no area"):
        polygons_to_labels([("line", [[0, 0], [5, 5]])], (10, 10))
    with pytest.raises(ValueError, match="shape"):
        polygons_to_labels([good], (10,))


def test_self_intersecting_polygon_warns_and_uses_even_odd():
    bowtie = np.array([[0, 0], [20, 20], [0, 20], [20, 0]], float)
    with pytest.warns(UserWarning, match="cross themselves"):
        labels = polygons_to_labels([bowtie], (24, 24))
    rr, cc = draw.polygon(bowtie[:, 0], bowtie[:, 1], shape=(24, 24))
    assert (labels > 0).sum() == len(rr)


def test_polygon_outside_image_warns():
    far = np.array([[100, 100], [100, 110], [110, 110]], float)
    with pytest.warns(UserWarning, match="1 shapes cover no pixel"):
        labels = polygons_to_labels([far], (20, 20))
    assert labels.max() == 0


def test_polygon_in_3d_plane():
    verts = np.array([[3, 2, 2], [3, 2, 8], [3, 8, 8], [3, 8, 2]], float)
    labels = polygons_to_labels([verts], (5, 10, 10))
    assert labels[3].max() == 1 and labels[[0, 1, 2, 4]].max() == 0


polygon_strategy = st.lists(
    st.lists(st.tuples(st.floats(-10, 70), st.floats(-10, 70)), min_size=3, max_size=8),
    min_size=1,
    max_size=6,
)


@FAST
@given(polygon_strategy)
def test_random_polygons_property(raw):
    shape = (48, 64)
    polygons = [np.array(p, float) for p in raw]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = polygons_to_labels(polygons, shape)
    except ValueError as err:  # only the documented degenerate cases may fail
        assert "distinct vertices" in str(err) or "zero area" in str(err)
        return
    assert labels.shape == shape and labels.dtype == np.uint16
    assert set(np.unique(labels)) <= set(range(len(polygons) + 1))
    # the last polygon is painted exactly as skimage gives it
    rr, cc = draw.polygon(polygons[-1][:, 0], polygons[-1][:, 1], shape=shape)
    assert np.all(labels[rr, cc] == len(polygons))


# --------------------------------------------------------------------------- boxes
def test_boxes_fill_and_rotated():
    axis = np.array([[2, 3], [12, 20]], float)  # two corners
    rotated = np.array([[30, 20], [40, 30], [30, 40], [20, 30]], float)  # diamond
    labels = boxes_to_labels([axis, rotated], (50, 50))
    rr, cc = draw.polygon(rotated[:, 0], rotated[:, 1], shape=(50, 50))
    assert np.all(labels[rr, cc] == 2)
    assert labels[7, 10] == 1 and labels[0, 0] == 0
    assert labels.max() == 2


def test_boxes_object_mode_on_sample():
    image = read_image(sample_path("fluo_512.tif"))
    gt = read_labels(sample_path("fluo_512_labels.tif"))
    regions = measure.regionprops(gt)[:30]
    boxes = [
        np.array([[r.bbox[0], r.bbox[1]], [r.bbox[2], r.bbox[3]]], float) - 0.5 for r in regions
    ]
    filled = boxes_to_labels(boxes, gt.shape, mode="fill")
    found = boxes_to_labels(boxes, gt.shape, mode="object", image=image)
    subset = np.where(np.isin(gt, [r.label for r in regions]), gt, 0)

    def mean_iou(pred):
        return np.mean(
            [
                ((pred == i + 1) & (subset == r.label)).sum()
                / ((pred == i + 1) | (subset == r.label)).sum()
                for i, r in enumerate(regions)
            ]
        )

    assert mean_iou(found) > mean_iou(filled) + 0.05
    assert mean_iou(found) > 0.75


def test_boxes_object_mode_falls_back_to_ellipse():
    flat = np.zeros((30, 30))
    with pytest.warns(UserWarning, match="ellipse"):
        labels = boxes_to_labels(
            [np.array([[5, 5], [25, 25]], float)], flat.shape, mode="object", image=flat
        )
    assert labels[15, 15] == 1 and labels[5, 5] == 0


def test_boxes_errors():
    with pytest.raises(ValueError, match="pass image"):
        boxes_to_labels([np.array([[0, 0], [5, 5]], float)], (10, 10), mode="object")
    with pytest.raises(ValueError, match="mode"):
        boxes_to_labels([], (10, 10), mode="magic")
    with pytest.raises(ValueError, match="4 corners"):
        boxes_to_labels([np.array([[0, 0], [5, 5], [1, 1]], float)], (10, 10))
    with pytest.raises(ValueError, match="does not match"):
        boxes_to_labels(
            [np.array([[0, 0], [5, 5]], float)], (10, 10), mode="object", image=np.zeros((9, 9))
        )


box_strategy = st.lists(
    st.tuples(
        st.floats(-5, 45),
        st.floats(-5, 45),
        st.floats(1, 20),
        st.floats(1, 20),
        st.floats(0, np.pi),
    ),
    min_size=1,
    max_size=6,
)


@FAST
@given(box_strategy, st.sampled_from(["fill", "object"]))
def test_random_boxes_property(raw, mode):
    shape = (40, 40)
    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.random(shape), 2)
    boxes = []
    for r, c, h, w, angle in raw:
        u = np.array([np.cos(angle), np.sin(angle)])
        v = np.array([-u[1], u[0]])
        centre = np.array([r, c])
        boxes.append(
            np.array(
                [
                    centre + a * h / 2 * u + b * w / 2 * v
                    for a, b in ((-1, -1), (-1, 1), (1, 1), (1, -1))
                ]
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = boxes_to_labels(boxes, shape, mode=mode, image=image)
    assert labels.shape == shape and labels.dtype == np.uint16
    assert set(np.unique(labels)) <= set(range(len(boxes) + 1))


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
        assert "distinct outline points" in str(err) or "one plane" in str(err)
        return
    assert labels.shape == shape and labels.dtype == np.uint16
    assert labels.max() <= len(np.unique(ids))


# --------------------------------------------------------------------------- clicks
@pytest.mark.parametrize("name", ["fluo_512", "fluo_256", "fluo_dense"])
def test_clicks_to_labels_f1_on_samples(name):
    image, gt, coords, features = _sample(name)
    labels = clicks_to_labels(image, coords, classes=features["class"])
    assert labels.shape == gt.shape and labels.dtype == np.uint16
    assert labels.max() == (features["class"] == "nucleus").sum()
    assert _f1(gt, labels) >= 0.80


def test_clicks_to_labels_dark_nuclei_rgb():
    image, gt, coords, features = _sample("he_rgb")
    labels = clicks_to_labels(image, coords, classes=features["class"])
    assert labels.shape == gt.shape
    assert _f1(gt, labels) >= 0.75


def test_background_clicks_stay_background():
    image, gt, coords, features = _sample("fluo_512")
    labels = clicks_to_labels(image, coords, classes=features["class"])
    bg = np.round(coords[features["class"] == "background"]).astype(int)
    assert np.all(labels[bg[:, 0], bg[:, 1]] == 0)
    obj = np.round(coords[features["class"] == "nucleus"]).astype(int)
    assert np.all(labels[obj[:, 0], obj[:, 1]] == np.arange(1, len(obj) + 1))


def test_clicks_errors_and_outside():
    image = np.zeros((20, 20))
    with pytest.raises(ValueError, match="one slice at a time"):
        clicks_to_labels(np.zeros((5, 20, 20)), np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="one class per point"):
        clicks_to_labels(image, np.array([[1.0, 2.0]]), classes=["nucleus", "background"])
    with pytest.raises(ValueError, match="max_radius"):
        clicks_to_labels(image, np.array([[1.0, 2.0]]), max_radius=-1)
    with pytest.warns(UserWarning, match="1 clicks outside"):
        labels = clicks_to_labels(image, np.array([[5.0, 5.0], [50.0, 5.0]]))
    assert labels.shape == (20, 20)


def test_estimate_object_radius():
    clicks = np.array([[10, 10], [10, 30], [30, 10], [30, 30]], float)
    assert estimate_object_radius(clicks, (200, 200)) == pytest.approx(14.0)
    assert estimate_object_radius(clicks, (200, 200), scale=(0.5, 0.5)) == pytest.approx(7.0)
    assert estimate_object_radius(clicks[:1], (160, 160)) == pytest.approx(10.0)


@FAST
@given(
    st.lists(
        st.tuples(st.floats(-3, 35), st.floats(-3, 35), st.booleans()), min_size=0, max_size=10
    ),
    st.integers(0, 3),
)
def test_random_clicks_property(raw, seed):
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(rng.random((32, 32)), 1.5)
    points = np.array([(r, c) for r, c, _ in raw], float).reshape(-1, 2)
    classes = ["background" if b else "nucleus" for _, _, b in raw]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = clicks_to_labels(image, points, classes=classes)
        sparse = clicks_to_sparse_labels(image, points, classes=classes)
    inside = np.all((np.round(points) >= 0) & (np.round(points) < 32), axis=1)
    n_obj = int(np.sum(inside & ~np.array([b for *_, b in raw], bool))) if raw else 0
    assert labels.shape == sparse.shape == (32, 32)
    assert labels.dtype == np.uint16 and sparse.dtype == np.uint8
    assert labels.max() <= n_obj
    assert set(np.unique(sparse)) <= {SPARSE_IGNORE, SPARSE_BACKGROUND, SPARSE_OBJECT}


def test_sparse_labels_on_sample():
    image, gt, coords, features = _sample("fluo_512")
    sparse = clicks_to_sparse_labels(image, coords, classes=features["class"])
    assert sparse.dtype == np.uint8 and sparse.shape == gt.shape
    is_bg = (features["class"] == "background").to_numpy()
    idx = np.round(coords).astype(int)
    assert np.all(sparse[idx[~is_bg, 0], idx[~is_bg, 1]] == SPARSE_OBJECT)
    assert np.all(sparse[idx[is_bg, 0], idx[is_bg, 1]] == SPARSE_BACKGROUND)
    assert (sparse == SPARSE_IGNORE).mean() > 0.05  # object borders are left out
    assert (gt[sparse == SPARSE_OBJECT] > 0).mean() > 0.95
    assert (gt[sparse == SPARSE_BACKGROUND] == 0).mean() > 0.95
    # every clicked nucleus has a core larger than its click
    cores = ndi.label(sparse == SPARSE_OBJECT)[0]
    assert np.median(np.bincount(cores.ravel())[1:]) > 5
