"""File > Save of a Labels layer through napari with our npe2 writers (TIFF, OME-Zarr, CSV)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from napari_segkit import io  # noqa: E402
from napari_segkit._sample import sample_path  # noqa: E402
from napari_segkit.io_zarr import open_image  # noqa: E402


@pytest.fixture
def viewer_with_labels(make_napari_viewer):
    from napari_segkit.measure import object_table

    labels = io.read_labels(sample_path("fluo_256_labels.tif"))
    viewer = make_napari_viewer()
    table = object_table(labels, scale=(0.5, 0.5), units="um")
    viewer.add_labels(labels, name="fluo_256 instances", scale=(0.5, 0.5), units="um",
                      features=table)  # fmt: skip
    return viewer, labels, table


def test_layers_save_writes_tiff_ome_zarr_and_csv(viewer_with_labels, tmp_path):
    viewer, labels, table = viewer_with_labels
    written = viewer.layers.save(str(tmp_path / "lab.tif"), plugin="napari-segkit")
    assert written == [str(tmp_path / "lab.tif")]
    np.testing.assert_array_equal(io.read_labels(written[0]), labels)

    written = viewer.layers.save(str(tmp_path / "lab.zarr"), plugin="napari-segkit")
    back = open_image(written[0])
    np.testing.assert_array_equal(back.data, labels)
    assert back.scale == (0.5, 0.5) and back.units == "micrometer"

    written = viewer.layers.save(str(tmp_path / "objects.csv"), plugin="napari-segkit")
    saved = pd.read_csv(written[0])
    assert list(saved.columns) == list(table.columns) and len(saved) == len(table)
    np.testing.assert_allclose(saved["area_um2"], table["area_um2"])


def test_writers_are_offered_for_labels_by_extension():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    for ext, command in ((".tif", "write_labels_tiff"), (".zarr", "write_labels_ome_zarr"),
                         (".csv", "write_labels_table_csv")):  # fmt: skip
        writer, _ = pm.get_writer(f"x{ext}", layer_types=["labels"], plugin_name="napari-segkit")
        assert writer is not None and writer.command == f"napari-segkit.{command}"
