"""Polygons, rectangles, ellipses and boxes -> label images (annotations.shapes)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage import draw, measure

from napari_segkit._sample import sample_path
from napari_segkit.annotations import (
    boxes_to_labels,
    polygons_to_labels,
)
from napari_segkit.io import read_image, read_labels, read_points_csv, read_shapes_csv

FAST = settings(max_examples=30, deadline=None)


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


def _circle(n, radius=200.0, centre=(256.0, 256.0)):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.sin(t), centre[1] + radius * np.cos(t)], axis=1)


def test_100k_vertex_polygon_is_simple_and_fast():
    # float cross products of ~1e-16 between neighbouring edges are no crossing
    circle = _circle(100_000)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = polygons_to_labels([circle], (512, 512))
    assert time.perf_counter() - start < 10.0
    assert abs((labels == 1).sum() - np.pi * 200**2) < 1e-3 * np.pi * 200**2
    assert labels[256, 256] == 1 and labels[256, 50] == 0 and labels[256, 60] == 1


def test_long_outline_fills_the_pixels_skimage_fills():
    # outlines of many vertices take a scanline fill: same pixel-centre rule
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 2 * np.pi, 3000))
    radius = rng.uniform(8, 30, 3000)
    star = np.stack([32 + radius * np.sin(t), 40 + radius * np.cos(t)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random star may cross itself
        labels = polygons_to_labels([star], (64, 80))
    expected = np.zeros((64, 80), np.uint16)
    rr, cc = draw.polygon(star[:, 0], star[:, 1], shape=(64, 80))
    expected[rr, cc] = 1
    np.testing.assert_array_equal(labels, expected)


def test_100k_vertex_polygon_with_one_crossing_warns():
    circle = _circle(100_000)
    circle[[1000, 60_000]] = circle[[60_000, 1000]]  # two far-apart vertices swapped
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="cross themselves"):
        polygons_to_labels([circle], (512, 512))
    assert time.perf_counter() - start < 10.0


def test_touching_and_backtracking_polygons_do_not_count_as_crossing():
    # a vertex on another edge, and a spike that goes back along itself, cross nothing
    touching = np.array([[0, 0], [0, 20], [10, 10], [20, 20], [20, 0], [10, 10.0]])
    spike = np.array([[0, 0], [0, 10], [5, 10], [5, 15], [5, 10], [10, 10], [10, 0.0]])
    for polygon in (touching, spike):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            polygons_to_labels([polygon], (24, 24))


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


def test_a_closing_vertex_near_the_first_is_filled_as_skimage_fills_it():
    """Found by the property test above in CI: a last vertex within float noise of the
    first was dropped as a closing vertex, which lost pixel (0, 1) that skimage paints."""
    tiny = np.array([(2.060770631760942e-70, 0.0), (1.0, 0.0), (0.0, 2.0), (0.0, 0.0)])
    labels = polygons_to_labels([np.array([(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)]), tiny], (48, 64))
    rr, cc = draw.polygon(tiny[:, 0], tiny[:, 1], shape=(48, 64))
    assert np.all(labels[rr, cc] == 2)
    closed = np.array([(0.0, 0.0), (1.0, 0.0), (0.0, 2.0), (0.0, 0.0)])  # an exact repeat
    assert np.array_equal(polygons_to_labels([closed], (8, 8)),
                          polygons_to_labels([closed[:-1]], (8, 8)))


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
