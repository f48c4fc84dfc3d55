"""napari writer functions called directly with (path, data, meta) (napari_segkit._writer)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_segkit import _writer, io
from napari_segkit.io_zarr import open_image


@pytest.fixture(scope="module")
def labels():
    from napari_segkit._sample import sample_path

    return io.read_labels(sample_path("fluo_256_labels.tif"))


def _meta(**extra):
    meta = {"name": "nuclei instances", "scale": [0.5, 0.5], "translate": [0.0, 0.0],
            "units": ["micrometer", "micrometer"], "multiscale": False,
            "features": pd.DataFrame()}  # fmt: skip
    meta.update(extra)
    return meta


def test_tiff_writer_writes_zlib_labels(tmp_path, labels):
    out = _writer.write_labels_tiff(str(tmp_path / "lab.tif"), labels, _meta())
    assert out == [str(tmp_path / "lab.tif")]
    np.testing.assert_array_equal(io.read_labels(out[0]), labels)
    import tifffile

    with tifffile.TiffFile(out[0]) as tf:
        assert tf.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_tiff_writer_refuses_what_does_not_fit_in_memory(tmp_path):
    huge = da.zeros((9000, 9000), dtype=np.uint32, chunks=1000)
    with pytest.raises(ValueError, match="save them as .zarr"):
        _writer.write_labels_tiff(str(tmp_path / "x.tif"), huge, _meta())


def test_ome_zarr_writer_keeps_scale_units_and_takes_level_0_of_multiscale(tmp_path, labels):
    levels = [labels, labels[::2, ::2]]
    out = _writer.write_labels_ome_zarr(str(tmp_path / "lab"), levels, _meta(multiscale=True))
    assert out == [str(tmp_path / "lab.zarr")]
    back = open_image(out[0])
    np.testing.assert_array_equal(back.data, labels)
    assert back.scale == (0.5, 0.5) and back.units == "micrometer"
    assert len(back.levels) == 1  # 256 px: no coarser level needed


def test_csv_writer_writes_the_features_table(tmp_path, labels):
    features = pd.DataFrame({"label": [1, 2, 3], "area_um2": [1.5, 2.0, 7.25], "status": ["a", "b", "c"]})
    out = _writer.write_labels_table_csv(str(tmp_path / "t.csv"), labels, _meta(features=features))
    pd.testing.assert_frame_equal(pd.read_csv(out[0]), features)


def test_csv_writer_measures_a_layer_without_features(tmp_path, labels):
    out = _writer.write_labels_table_csv(str(tmp_path / "t"), labels, _meta())
    table = pd.read_csv(out[0])
    assert out[0].endswith("t.csv")
    assert len(table) == len(np.unique(labels)) - 1
    assert {"label", "area_px", "area_um2", "centroid_y_um"} <= set(table.columns)
    lazy = _writer.write_labels_table_csv(str(tmp_path / "lazy.csv"),
                                          [da.from_array(labels, chunks=64)], _meta(multiscale=True))  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(lazy[0]), table)
    plain = _writer.write_labels_table_csv(str(tmp_path / "px.csv"), labels,
                                           _meta(scale=[1.0, 1.0], units=["pixel", "pixel"]))  # fmt: skip
    assert "area_um2" not in pd.read_csv(plain[0]).columns
