"""A lazy OME-Zarr image predicted block by block, its labels saved into it, then measured."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit import io, io_zarr, io_zarr_write
from napari_segkit._sample import sample_path
from napari_segkit.measure_blocks import blockwise_object_table


def test_predict_lazy_ome_zarr_save_labels_into_it_and_measure(tmp_path):
    pytest.importorskip("torch")
    from napari_segkit.metrics import evaluate_instances
    from napari_segkit.model_io import load_default_model
    from napari_segkit.prediction import predict

    image = io.read_image(sample_path("fluo_256.tif"))
    truth = io.read_labels(sample_path("fluo_256_labels.tif"))
    path = io_zarr_write.write_image_zarr(tmp_path / "fluo.zarr", image, scale=(0.5, 0.5), units="um",
                                    chunks=(64, 64), zarr_format=3)  # fmt: skip
    img = io_zarr.open_image(path, block_size=128, max_in_memory_pixels=0)
    assert img.is_lazy and img.data.chunksize == (128, 128)
    result = predict(load_default_model(), img.data, device="cpu")
    paths = io_zarr_write.save_labels(img, {"instances": result.instances, "semantic": result.semantic})
    assert paths["instances"] == path / "labels" / "instances"

    stored = io_zarr.open_image(paths["instances"], max_in_memory_pixels=0)
    assert stored.scale == (0.5, 0.5) and stored.units == "micrometer"
    instances = np.asarray(stored.data.compute())
    assert instances.dtype == np.uint32  # block-unique ids of the dask path
    assert evaluate_instances(truth, instances)["f1"] > 0.6  # a real segmentation, not noise
    table = blockwise_object_table(stored.data, img.data, scale=img.scale, units=img.units)
    assert len(table) == len(np.unique(instances)) - 1
    assert table["area_px"].sum() == np.count_nonzero(instances)
    assert "area_um2" in table and np.allclose(table["area_um2"], table["area_px"] * 0.25)
    semantic = io_zarr.open_image(paths["semantic"]).data
    assert semantic.dtype == np.uint8 and set(np.unique(semantic)) <= {0, 1, 2}
