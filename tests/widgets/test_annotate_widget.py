"""Drive the 'Annotate and convert' dock as a user would."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit._sample_data import fluo_256
from napari_segkit._widgets import layers
from napari_segkit._widgets.annotate import AnnotateWidget
from napari_segkit.metrics import match_instances


@pytest.fixture
def viewer_with_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers["fluo_256"].scale = (0.5, 0.5)
    return viewer


@pytest.fixture
def errors(monkeypatch):
    messages: list[str] = []
    monkeypatch.setattr(layers, "show_error", messages.append)
    return messages


def test_clicks_layer_to_instance_masks(viewer_with_sample):
    viewer = viewer_with_sample
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["fluo_256"]
    clicks = widget.add_clicks_layer()
    assert clicks.name.startswith("fluo_256 clicks") and clicks.mode == "add"
    assert tuple(clicks.scale) == (0.5, 0.5)
    # the user clicks once on each nucleus: reuse the sample clicks (world coordinates)
    sample = viewer.layers["fluo_256 clicks"]
    nuclei = sample.data[sample.features["class"] == "nucleus"]
    assert clicks is not sample  # the new layer got a unique name
    clicks.add(nuclei)  # layer data coords are image pixels (same scale as the image)
    assert set(clicks.features["class"]) == {"nucleus"}
    widget.annotation_layer.value = clicks
    widget.mode.value = "click"
    out = widget.convert()
    assert out is not None and out.name == f"{clicks.name} masks"  # named after its annotation layer
    assert out.data.shape == viewer.layers["fluo_256"].data.shape
    assert tuple(out.scale) == (0.5, 0.5)
    gt = viewer.layers["fluo_256 ground truth"].data
    assert match_instances(gt, out.data, 0.5).f1 > 0.75
    assert "objects" in widget.status.value
    # a rerun updates the same layer instead of adding one
    n_layers = len(viewer.layers)
    widget.convert()
    assert len(viewer.layers) == n_layers


def test_polygons_and_boxes(viewer_with_sample):
    viewer = viewer_with_sample
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["fluo_256"]
    shapes = widget.add_shapes_layer("polygon")
    assert shapes.mode == "add_polygon"
    tri = np.array([[5, 5], [5, 40], [40, 5]], float)
    box = np.array([[60, 60], [60, 90], [90, 90], [90, 60]], float)
    shapes.add_polygons([tri])
    shapes.add_rectangles([box])
    widget.annotation_layer.value = shapes
    widget.mode.value = "fill"
    out = widget.convert()
    assert set(np.unique(out.data)) == {0, 1, 2}
    assert out.data[70, 70] == 2 and out.data[10, 10] == 1
    widget.mode.value = "box-object"
    boxes = widget.convert()
    assert boxes.name == "fluo_256 polygons box objects"


def test_outline_keypoints(viewer_with_sample):
    viewer = viewer_with_sample
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["fluo_256"]
    layer = widget.add_outline_layer()
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    circle = np.stack([np.sin(t), np.cos(t)], 1)
    layer.add(np.array([50, 50]) + 15 * circle)
    widget.start_next_object()
    layer.add(np.array([150, 150]) + 20 * circle)
    assert sorted(set(layer.features["object_id"])) == [1, 2]
    out = widget.convert()
    assert out.name == "fluo_256 outline keypoints masks"
    assert out.data[50, 50] == 1 and out.data[150, 150] == 2
    assert 500 < (out.data == 1).sum() < 900  # ~ pi * 15^2 = 707


def test_outline_objects_keep_their_colour_cycle_without_a_warning(viewer_with_sample):
    """napari warned at each new outline layer that it guessed the ids were categories; it
    must also keep cycling colours past 16 objects (a guess would switch to a colormap)."""
    import warnings

    from napari_segkit._widgets.annotate import OUTLINE_COLORS

    widget = AnnotateWidget(viewer_with_sample)
    widget.image.value = viewer_with_sample.layers["fluo_256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = widget.add_outline_layer()
    for k in range(20):
        layer.add(np.array([[10.0 + 10 * k, 20.0], [10.0 + 10 * k, 30.0], [15.0 + 10 * k, 25.0]]))
        widget.start_next_object()
    assert layer.features["object_id"].nunique() == 20 and layer.face_color_mode == "cycle"
    colours = np.unique(np.round(layer.face_color, 3), axis=0)
    assert len(colours) == len(OUTLINE_COLORS)


def test_bad_input_is_a_notification(viewer_with_sample, errors):
    viewer = viewer_with_sample
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["fluo_256"]
    widget.add_clicks_layer()  # empty
    assert widget.convert() is None
    assert errors and "empty" in errors[-1] or "no points" in errors[-1]
    shapes = widget.add_shapes_layer("polygon")
    shapes.add_lines([np.array([[1, 1], [20, 20]], float)])
    widget.mode.value = "fill"
    assert widget.convert() is None
    assert "encloses no area" in errors[-1]


def test_outline_keypoints_in_a_3d_stack(make_napari_viewer):
    """z, y, x keypoints on a few slices of an anisotropic stack -> one closed volume."""
    from scipy import ndimage as ndi

    viewer = make_napari_viewer()
    stack = np.zeros((12, 64, 64), np.uint8)
    viewer.add_image(stack, name="stack", scale=(3.0, 0.5, 0.5))
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["stack"]
    layer = widget.add_outline_layer()
    assert layer.ndim == 3 and tuple(layer.scale) == (3.0, 0.5, 0.5)
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    for z, r in ((3, 8), (6, 12), (9, 8)):
        ring = np.stack([np.full_like(t, z), 32 + r * np.sin(t), 32 + r * np.cos(t)], 1)
        layer.add(ring)
    out = widget.convert()
    volume = out.data > 0
    assert out.data.shape == stack.shape and tuple(out.scale) == (3.0, 0.5, 0.5)
    assert volume[3:10, 32, 32].all() and not volume[0, 32, 32] and not volume[11, 32, 32]
    assert (ndi.binary_fill_holes(volume) == volume).all()
    assert ndi.label(volume)[1] == 1
