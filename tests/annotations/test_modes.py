"""One entry point from an annotation layer and a mode to labels (annotations.modes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_segkit._sample import sample_path
from napari_segkit.annotations import (
    MODES,
    POINT_MODES,
    SHAPE_MODES,
    SPARSE_OBJECT,
    clicks_to_labels,
    convert_points,
    convert_shapes,
    polygons_to_labels,
)
from napari_segkit.io import read_image, read_points_csv, read_shapes_csv


def test_every_mode_belongs_to_shapes_or_points():
    assert set(SHAPE_MODES) | set(POINT_MODES) == set(MODES)
    assert not set(SHAPE_MODES) & set(POINT_MODES)


def test_the_cli_offers_every_mode():
    from napari_segkit.cli import build_parser

    convert = build_parser()._subparsers._group_actions[0].choices["convert"]
    mode = next(a for a in convert._actions if a.dest == "mode")
    assert set(mode.choices) == set(MODES)


def test_modes_call_the_converters_with_the_class_column():
    image = read_image(sample_path("fluo_256.tif"))
    coords, features = read_points_csv(sample_path("fluo_256_points.csv"))
    classes = features["class"].astype(str).to_numpy()
    clicks = convert_points(coords, features, image.shape, "click", image=image)
    np.testing.assert_array_equal(clicks, clicks_to_labels(image, coords, classes=classes))
    every = convert_points(coords, features, image.shape, "click-all", image=image)
    np.testing.assert_array_equal(
        every, clicks_to_labels(image, coords, classes=classes, all_clicked=True))
    assert (every != clicks).any()  # the sample has nuclei with two centres
    sparse = convert_points(coords, features, image.shape, "sparse", image=image)
    assert (sparse == SPARSE_OBJECT).any()
    shapes = read_shapes_csv(sample_path("fluo_512_shapes.csv"))
    fills = [s for s in shapes if s[0] in ("polygon", "rectangle", "ellipse")]
    np.testing.assert_array_equal(convert_shapes(fills, (512, 512), "fill"),
                                  polygons_to_labels(fills, (512, 512)))


def test_modes_say_what_to_do():
    with pytest.raises(ValueError, match="mode 'fill' or 'box-object'"):
        convert_shapes([("polygon", np.zeros((3, 2)))], (8, 8), "click")
    with pytest.raises(ValueError, match="draw a polygon"):
        convert_shapes([], (8, 8), "fill")
    with pytest.raises(ValueError, match="object_id"):
        convert_points(np.ones((3, 2)), pd.DataFrame(), (8, 8), "outline")
    with pytest.raises(ValueError, match="give the image"):
        convert_points(np.ones((3, 2)), None, (8, 8), "click")
    with pytest.raises(ValueError, match="click on the image"):
        convert_points(np.zeros((0, 2)), None, (8, 8), "sparse")


def test_convert_refuses_complex_and_flat_images():
    coords = np.array([[10.0, 10.0], [20.0, 30.0], [40.0, 12.0]])
    for mode in ("click", "sparse"):
        with pytest.raises(ValueError, match="no contrast"):
            convert_points(coords, None, (48, 48), mode, image=np.zeros((48, 48)))
        with pytest.raises(ValueError, match="complex"):
            convert_points(coords, None, (48, 48), mode,
                           image=np.ones((48, 48)) + 1j * np.eye(48))
    box = ("rectangle", np.array([[5, 5], [5, 20], [20, 20], [20, 5]], float))
    with pytest.raises(ValueError, match="complex"):
        convert_shapes([box], (48, 48), "box-object", image=np.ones((48, 48), complex))
    line = pd.DataFrame({"object_id": [1, 1, 1, 1]})
    with pytest.raises(ValueError, match="zero area"):
        convert_points(np.array([[1, 1], [2, 2], [3, 3], [4, 4.0]]), line, (8, 8), "outline")
