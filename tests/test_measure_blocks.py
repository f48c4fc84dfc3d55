"""Per-object tables of label images block by block (napari_segkit.measure_blocks)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_segkit.measure import object_table
from napari_segkit.measure_blocks import blockwise_object_table


@pytest.fixture(scope="module")
def nuclei():
    from napari_segkit import io
    from napari_segkit._sample import sample_path

    return io.read_image(sample_path("fluo_256.tif")), io.read_labels(sample_path("fluo_256_labels.tif"))


def _assert_same(blockwise: pd.DataFrame, whole: pd.DataFrame) -> None:
    assert list(blockwise.columns) == list(whole.columns)
    assert len(blockwise) == len(whole) > 0
    pd.testing.assert_frame_equal(blockwise.reset_index(drop=True), whole.reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)  # fmt: skip


def test_blocks_give_the_whole_image_table_even_for_objects_cut_by_blocks(nuclei):
    image, labels = nuclei
    lazy = da.from_array(labels, chunks=48)  # most nuclei straddle a block border
    table = blockwise_object_table(lazy, da.from_array(image, chunks=100), scale=(0.5, 0.5),
                                   units="micrometer", translate=(10, 20))  # fmt: skip
    whole = object_table(labels, image, scale=(0.5, 0.5), units="micrometer", translate=(10, 20))
    _assert_same(table, whole)
    assert "area_um2" in table.columns


def test_blocks_3d_and_rgb_and_numpy_input(nuclei, rng):
    _, labels = nuclei
    volume = np.stack([labels[:128, :128], labels[64:192, 64:192], labels[128:, 128:]])
    _assert_same(blockwise_object_table(da.from_array(volume, chunks=(2, 50, 50))),
                 object_table(volume))  # fmt: skip
    rgb = rng.integers(0, 255, labels.shape + (3,), dtype=np.uint8)
    _assert_same(blockwise_object_table(labels, rgb), object_table(labels, rgb))


def test_empty_labels_give_an_empty_table_with_the_columns():
    table = blockwise_object_table(da.zeros((64, 64), dtype=np.uint16, chunks=32))
    assert len(table) == 0
    assert list(table.columns) == list(object_table(np.zeros((64, 64), np.uint16)).columns)


def test_bad_input_is_refused(nuclei):
    image, labels = nuclei
    with pytest.raises(ValueError, match="integer labels"):
        blockwise_object_table(da.zeros((8, 8), dtype=float))
    with pytest.raises(ValueError, match="does not match labels shape"):
        blockwise_object_table(labels, image[:100])
