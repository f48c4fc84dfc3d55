"""TIFF and napari CSV reading / writing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_segkit._sample import sample_path
from napari_segkit.io import (
    read_image,
    read_labels,
    read_points_csv,
    read_shapes_csv,
    write_labels,
    write_points_csv,
    write_shapes_csv,
)


def test_read_sample_image_and_labels():
    image = read_image(sample_path("fluo_512.tif"))
    labels = read_labels(sample_path("fluo_512_labels.tif"))
    assert image.shape == labels.shape == (512, 512)
    assert labels.dtype == np.uint16
    assert labels.max() == 125


def test_read_image_squeezes_singleton_dims(tmp_path):
    path = tmp_path / "x.tif"
    tifffile.imwrite(
        path, np.arange(12, dtype=np.uint8).reshape(1, 3, 4, 1), photometric="minisblack"
    )
    assert read_image(path).shape == (3, 4)


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="check the path"):
        read_image(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(ValueError, match="could not read"):
        read_image(bad)


def test_write_labels_dtype_and_compression(tmp_path):
    small = np.zeros((8, 8), np.int64)
    small[2:4, 2:4] = 7
    path = write_labels(tmp_path / "small.tif", small)
    back = read_labels(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, small)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == 8  # ADOBE_DEFLATE (zlib)

    big = np.zeros((4, 4), np.int64)
    big[0, 0] = 70000
    back = read_labels(write_labels(tmp_path / "big.tif", big))
    assert back.dtype == np.uint32 and back[0, 0] == 70000

    with pytest.raises(ValueError, match="integer"):
        write_labels(tmp_path / "f.tif", np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=".tif"):
        write_labels(tmp_path / "x.png", small)


def test_read_sample_points_csv():
    coords, features = read_points_csv(sample_path("fluo_512_points.csv"))
    assert coords.shape == (133, 2)
    assert list(features.columns) == ["class"]
    assert set(features["class"]) == {"nucleus", "background"}
    assert (features["class"] == "nucleus").sum() == 125


def test_points_round_trip(tmp_path):
    coords = np.array([[1.5, 2.0, 3.25], [4.0, 5.0, 6.0]])
    feats = pd.DataFrame({"class": ["nucleus", "background"], "object_id": [3, 4]})
    path = write_points_csv(tmp_path / "p.csv", coords, feats)
    c2, f2 = read_points_csv(path)
    np.testing.assert_allclose(c2, coords)
    assert list(f2["class"]) == ["nucleus", "background"]
    assert list(f2["object_id"]) == [3, 4]
    assert f2["object_id"].dtype.kind == "i"
    # no features at all
    c3, f3 = read_points_csv(write_points_csv(tmp_path / "q.csv", coords[:, 1:]))
    np.testing.assert_allclose(c3, coords[:, 1:])
    assert f3.shape == (2, 0)


def test_points_written_by_napari_load(tmp_path):
    from napari_builtins.io._write import napari_write_points

    coords = np.array([[10.0, 20.5], [30.0, 40.0], [5.0, 6.0]])
    props = {
        "class": np.array(["nucleus", "background", "nucleus"]),
        "object_id": np.array([1, 1, 2]),
    }
    path = napari_write_points(str(tmp_path / "nap.csv"), coords, {"properties": props})
    c, f = read_points_csv(path)
    np.testing.assert_allclose(c, coords)
    assert list(f["class"]) == ["nucleus", "background", "nucleus"]
    assert list(f["object_id"]) == [1, 1, 2]


def test_our_points_open_in_napari(tmp_path):
    from napari_builtins.io._read import csv_to_layer_data

    coords = np.array([[1.0, 2.0], [3.0, 4.0]])
    path = write_points_csv(tmp_path / "p.csv", coords, {"class": ["nucleus", "background"]})
    data, meta, kind = csv_to_layer_data(str(path), require_type="points")
    assert kind == "points"
    np.testing.assert_allclose(data, coords)
    assert list(meta["properties"]["class"]) == ["nucleus", "background"]


def test_shapes_round_trip_and_napari(tmp_path):
    from napari_builtins.io._read import csv_to_layer_data
    from napari_builtins.io._write import napari_write_shapes

    shapes = [
        ("polygon", np.array([[0.0, 0.0], [0.0, 5.0], [4.0, 2.5]])),
        ("rectangle", np.array([[1.0, 1.0], [1.0, 3.0], [3.0, 3.0], [3.0, 1.0]])),
        ("ellipse", np.array([[5.0, 5.0], [5.0, 9.0], [8.0, 9.0], [8.0, 5.0]])),
    ]
    ours = write_shapes_csv(tmp_path / "s.csv", shapes)
    back = read_shapes_csv(ours)
    assert [t for t, _ in back] == ["polygon", "rectangle", "ellipse"]
    for (_, a), (_, b) in zip(shapes, back, strict=True):
        np.testing.assert_allclose(a, b)
    data, meta, kind = csv_to_layer_data(str(ours), require_type="shapes")
    assert kind == "shapes" and list(meta["shape_type"]) == ["polygon", "rectangle", "ellipse"]

    theirs = napari_write_shapes(
        str(tmp_path / "nap.csv"), [v for _, v in shapes], {"shape_type": [t for t, _ in shapes]}
    )
    back = read_shapes_csv(theirs)
    assert [t for t, _ in back] == ["polygon", "rectangle", "ellipse"]
    for (_, a), (_, b) in zip(shapes, back, strict=True):
        np.testing.assert_allclose(a, b)


def test_read_sample_shapes_csv():
    shapes = read_shapes_csv(sample_path("fluo_512_shapes.csv"))
    assert len(shapes) == 24
    assert {t for t, _ in shapes} == {"polygon", "rectangle"}
    assert all(v.shape[1] == 2 for _, v in shapes)


def test_wrong_kind_of_csv_is_explained(tmp_path):
    with pytest.raises(ValueError, match="shapes CSV.*read_shapes_csv"):
        read_points_csv(sample_path("fluo_512_shapes.csv"))
    with pytest.raises(ValueError, match="points CSV"):
        read_shapes_csv(sample_path("fluo_512_points.csv"))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="axis-0"):
        read_points_csv(other)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_points_csv(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("index,axis-0,axis-1\n0,a,b\n")
    with pytest.raises(ValueError, match="numbers"):
        read_points_csv(bad)
    with pytest.raises(FileNotFoundError):
        read_points_csv(tmp_path / "nope.csv")
