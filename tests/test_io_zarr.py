"""OME-Zarr / Zarr / TIFF read lazily, labels written as OME-Zarr (napari_segkit.io_zarr)."""

from __future__ import annotations

import json
import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from zarr.storage import LocalStore, WrapperStore

from napari_segkit import _ngff_write, _tiff_lazy, io, io_zarr, io_zarr_write
from napari_segkit.io_zarr import ImageNotFoundError, open_image

FORMATS = {2: "FormatV04", 3: "FormatV05"}


def _models(zarr_format: int):
    """ome-zarr-models (a test extra) for OME-NGFF 0.4 (zarr 2) or 0.5 (zarr 3) validation."""
    return pytest.importorskip(f"ome_zarr_models.v0{4 if zarr_format == 2 else 5}")


@pytest.fixture(scope="module")
def nuclei():
    """(image, instance labels) of the 256 x 256 fluorescence sample."""
    from napari_segkit._sample import sample_path

    return io.read_image(sample_path("fluo_256.tif")), io.read_labels(sample_path("fluo_256_labels.tif"))


def _ome_image(path, data, axes, scale, zarr_format, levels=(2,)):
    """An OME-Zarr image written by ome-zarr-py (the reference writer, a test extra)."""
    ome_writer = pytest.importorskip("ome_zarr.writer")
    ome_format = pytest.importorskip("ome_zarr.format")
    fmt = getattr(ome_format, FORMATS[zarr_format])()
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    units = {a: "micrometer" for a in axes if a in "zyx"}
    ome_writer.write_image(data, group, axes=list(axes), fmt=fmt, scale=dict(zip(axes, scale)),
                           axes_units=units, scale_factors=list(levels))  # fmt: skip
    return path


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_round_trip_keeps_data_scale_units_and_labels(tmp_path, nuclei, zarr_format):
    image, labels = nuclei
    path = _ome_image(tmp_path / "img.zarr", image, "yx", (0.5, 0.25), zarr_format)
    img = open_image(path, max_in_memory_pixels=0)
    assert img.kind == "ome-zarr" and img.zarr_format == zarr_format and img.is_lazy
    assert img.axes == "yx" and img.scale == (0.5, 0.25) and img.units == "micrometer"
    assert img.data.dtype == image.dtype
    np.testing.assert_array_equal(img.data.compute(), image)
    assert [lv.shape for lv in img.levels] == [(256, 256), (128, 128)]

    semantic = (labels > 0).astype(np.uint8)
    paths = io_zarr_write.add_labels(img, {"instances": labels, "semantic": da.from_array(semantic, chunks=100)},
                               colors={"semantic": {1: (255, 0, 0)}})  # fmt: skip
    assert paths["instances"] == tmp_path / "img.zarr" / "labels" / "instances"
    back = open_image(paths["instances"])
    assert not back.is_lazy and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, labels)
    assert back.scale == (0.5, 0.25) and back.units == "micrometer"
    sem = open_image(paths["semantic"])
    np.testing.assert_array_equal(sem.data, semantic)
    assert sem.data.dtype == np.uint8
    # the hierarchy is valid OME-NGFF (image, labels group, label images)
    models = _models(zarr_format)
    group = zarr.open_group(str(path), mode="r")
    models.Image.from_zarr(group)
    label_image = models.ImageLabel.from_zarr(group["labels"]["semantic"])
    assert label_image.attributes  # parsed
    attrs = _ngff_write.read_ome_attrs(group["labels"])
    assert attrs["labels"] == ["instances", "semantic"]
    colors = _ngff_write.read_ome_attrs(group["labels"]["semantic"])["image-label"]["colors"]
    assert colors == [{"label-value": 1, "rgba": [255, 0, 0, 255]}]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_reader_of_ome_zarr_py_finds_our_labels(tmp_path, nuclei, zarr_format):
    parse_url = pytest.importorskip("ome_zarr.io").parse_url
    Reader = pytest.importorskip("ome_zarr.reader").Reader

    image, labels = nuclei
    path = _ome_image(tmp_path / "img.zarr", image, "yx", (1.0, 1.0), zarr_format)
    io_zarr_write.add_labels(open_image(path), {"nuclei": labels})
    nodes = list(Reader(parse_url(str(path / "labels" / "nuclei")))())
    label_node = [n for n in nodes if "image-label" in n.zarr.root_attrs]
    assert label_node and np.array_equal(np.asarray(label_node[0].data[0]), labels)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_write_image_zarr_3d_round_trip(tmp_path, zarr_format, rng):
    volume = rng.integers(0, 4000, (5, 70, 90), dtype=np.uint16)
    path = io_zarr_write.write_image_zarr(tmp_path / "vol.zarr", da.from_array(volume, chunks=(2, 32, 32)),
                                    scale=(2.0, 0.5, 0.5), units="µm", translate=(0, 10, 20),
                                    zarr_format=zarr_format, n_levels=2)  # fmt: skip
    img = open_image(path)
    assert img.axes == "zyx" and img.scale == (2.0, 0.5, 0.5) and img.units == "micrometer"
    assert img.translate == (0.0, 10.0, 20.0)
    np.testing.assert_array_equal(img.data, volume)
    assert img.levels[1].shape == (5, 35, 45)
    expected = volume.reshape(5, 35, 2, 45, 2).astype(np.float32).mean(axis=(2, 4))
    np.testing.assert_array_equal(img.levels[1].compute(), np.rint(expected).astype(np.uint16))
    _models(zarr_format).Image.from_zarr(zarr.open_group(str(path), mode="r"))


def test_rgb_image_is_stored_channel_first_and_read_back_as_colour(tmp_path, rng):
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    path = io_zarr_write.write_image_zarr(tmp_path / "rgb.zarr", rgb)
    arr = zarr.open_array(str(path / "0"), mode="r")
    assert arr.shape == (3, 40, 50)
    with pytest.raises(ValueError, match="channel='rgb'"):
        open_image(path)
    img = open_image(path, channel="rgb")
    assert img.axes == "yxc"
    np.testing.assert_array_equal(img.data, rgb)
    assert img.spatial_shape == (40, 50)
    np.testing.assert_array_equal(open_image(path, channel=1).data, rgb[..., 1])


# --------------------------------------------------------------------------- laziness
class _RecordingStore(WrapperStore):
    """Records every key read, to prove which chunks a computation touches."""

    def __init__(self, store):
        super().__init__(store)
        self.keys: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.keys.append(key)
        return await super().get(key, prototype, byte_range)


def _chunk_keys(keys):
    meta = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
    return [k for k in keys if not k.endswith(meta)]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_lazy_read_touches_only_the_chunks_computed(tmp_path, zarr_format):
    data = np.arange(3000 * 2500, dtype=np.uint32).reshape(3000, 2500)
    path = io_zarr_write.write_image_zarr(tmp_path / "big.zarr", da.from_array(data, chunks=1000),
                                    chunks=(500, 500), zarr_format=zarr_format, n_levels=1)  # fmt: skip
    store = _RecordingStore(LocalStore(str(path), read_only=True))
    img = open_image(zarr.open_group(store, mode="r"), max_in_memory_pixels=0, block_size=1000)
    assert _chunk_keys(store.keys) == []  # opening reads metadata only
    assert img.data.chunksize == (1000, 1000)  # whole storage chunks per block
    block = img.data[1000:1100, 2000:2100].compute()
    np.testing.assert_array_equal(block, data[1000:1100, 2000:2100])
    assert 1 <= len(_chunk_keys(store.keys)) <= 4  # one dask block = 2 x 2 storage chunks
    assert len(_chunk_keys(store.keys)) < 6 * 5  # never the whole array


def test_small_images_come_back_in_memory_large_ones_lazy(tmp_path, rng):
    data = rng.integers(0, 255, (300, 200), dtype=np.uint8)
    path = io_zarr_write.write_image_zarr(tmp_path / "s.zarr", data)
    assert isinstance(open_image(path, max_in_memory_pixels=300 * 200).data, np.ndarray)
    lazy = open_image(path, max_in_memory_pixels=300 * 200 - 1)
    assert isinstance(lazy.data, da.Array) and lazy.is_lazy
    assert io_zarr.MAX_IN_MEMORY_PIXELS == 8192 * 8192


def test_writing_labels_larger_than_a_block_streams_and_computes_each_block_once(tmp_path):
    calls = []

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        calls.append((y0, x0))
        out = np.zeros((y1 - y0, x1 - x0), np.uint32)
        out[8:-8, 8:-8] = 1 + (y0 // 1024) * 8 + x0 // 1024  # one object per block
        return out

    size = 8192  # 256 MiB as uint32; written in 1024-px chunks
    labels = da.map_blocks(block, chunks=((1024,) * 8, (1024,) * 8), dtype=np.uint32,
                           meta=np.empty((0, 0), np.uint32))  # fmt: skip
    tracemalloc.start()
    with dask.config.set(scheduler="threads", num_workers=2):
        path = io_zarr_write.write_labels_zarr(tmp_path / "lab.zarr", labels, chunks=(1024, 1024))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sorted(calls) == sorted({(y, x) for y in range(0, size, 1024) for x in range(0, size, 1024)})
    assert len(calls) == 64  # the source ran once although the pyramid has 4 levels
    # a few 2048-px blocks per thread (about 85 MiB measured), never the 256 MiB array
    assert peak < size * size * 4 / 2, f"peak {peak / 2**20:.0f} MiB: not streamed"
    back = open_image(path, max_in_memory_pixels=0)
    assert [lv.shape for lv in back.levels] == [(8192, 8192), (4096, 4096), (2048, 2048), (1024, 1024)]
    assert back.data[1024 + 500, 2048 + 500].compute() == 1 + 8 + 2
    assert back.levels[3][0:10, 0:10].compute().max() == 1


# --------------------------------------------------------------------------- TIFF
def test_large_tiled_tiff_opens_lazily_with_shape_dtype_chunks(tmp_path, rng, monkeypatch):
    data = rng.integers(0, 4000, (3000, 5000), dtype=np.uint16)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, data, tile=(512, 512), compression="zlib")
    img = open_image(path, max_in_memory_pixels=0)
    assert img.kind == "tiff" and img.is_lazy
    assert img.data.shape == (3000, 5000) and img.data.dtype == np.uint16
    assert img.data.chunksize == (2048, 2048)  # 4 x 4 tiles per block
    reads = []
    original = _tiff_lazy.TiffLevelReader.__getitem__

    def recording(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(_tiff_lazy.TiffLevelReader, "__getitem__", recording)
    np.testing.assert_array_equal(img.data[100:200, 2100:2200].compute(), data[100:200, 2100:2200])
    assert len(reads) == 1
    assert all((s.stop - s.start) <= 2048 for s in reads[0])
    # the default threshold loads a small file into memory
    assert isinstance(open_image(path).data, np.ndarray)


def test_uncompressed_tiff_is_memory_mapped_and_read_by_region(tmp_path, rng):
    data = rng.integers(0, 255, (2500, 2300), dtype=np.uint8)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data)
    img = open_image(path, max_in_memory_pixels=0, block_size=1024)
    assert img.data.chunksize == (1024, 1024)
    np.testing.assert_array_equal(img.data[2400:, 2200:].compute(), data[2400:, 2200:])
    np.testing.assert_array_equal(img.data.compute(), data)


def test_tiff_physical_pixel_size_ome_imagej_and_tags(tmp_path):
    vol = np.zeros((4, 30, 20), np.uint8)
    tifffile.imwrite(tmp_path / "a.ome.tif", vol, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                               "PhysicalSizeZ": 2.0, "PhysicalSizeXUnit": "µm"})  # fmt: skip
    tifffile.imwrite(tmp_path / "b.tif", vol, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"spacing": 1.5, "unit": "micron", "axes": "ZYX"})  # fmt: skip
    tifffile.imwrite(tmp_path / "c.tif", vol[0], resolution=(1e4 / 0.25, 1e4 / 0.25),
                     resolutionunit="CENTIMETER")  # fmt: skip
    tifffile.imwrite(tmp_path / "d.tif", vol[0], resolution=(72, 72), resolutionunit="INCH")
    a, b = open_image(tmp_path / "a.ome.tif"), open_image(tmp_path / "b.tif")
    assert a.axes == "zyx" and a.scale == pytest.approx((2.0, 0.3, 0.3)) and a.units == "micrometer"
    assert b.scale == pytest.approx((1.5, 0.4, 0.4)) and b.units == "micrometer"
    c = open_image(tmp_path / "c.tif")
    assert c.scale == pytest.approx((0.25, 0.25)) and c.units == "micrometer"
    d = open_image(tmp_path / "d.tif")  # dpi is not a calibration
    assert d.scale is None and d.units is None


def test_pyramidal_tiff_levels_and_scale(tmp_path, rng):
    data = rng.integers(0, 255, (1024, 768), dtype=np.uint8)
    path = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(256, 256), subifds=1,
                 metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})  # fmt: skip
        tw.write(data[::2, ::2], tile=(256, 256), subfiletype=1)
    img = open_image(path, level=1, max_in_memory_pixels=0)
    assert len(img.levels) == 2 and img.data.shape == (512, 384)
    assert img.scale == pytest.approx((1.0, 1.0))
    np.testing.assert_array_equal(img.data.compute(), data[::2, ::2])


def test_rgb_tiff_is_colour_and_channel_selects_one(tmp_path, rng):
    rgb = rng.integers(0, 255, (60, 50, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    img = open_image(tmp_path / "rgb.tif")
    assert img.axes == "yxc" and img.spatial_shape == (60, 50)
    np.testing.assert_array_equal(open_image(tmp_path / "rgb.tif", channel=2).data, rgb[..., 2])


# --------------------------------------------------------------------------- axes, time, channels
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_time_and_channel_selection_and_labels_per_time_point(tmp_path, rng, zarr_format):
    data = rng.integers(0, 255, (2, 3, 4, 40, 30), dtype=np.uint8)
    path = _ome_image(tmp_path / "tc.zarr", data, "tczyx", (1.0, 1.0, 2.0, 0.5, 0.5), zarr_format)
    with pytest.raises(ValueError, match="2 time points.*timepoint="):
        open_image(path, channel=0)
    with pytest.raises(ValueError, match="3 channels.*channel="):
        open_image(path, timepoint=0)
    img = open_image(path, timepoint=1, channel=2)
    assert img.axes == "zyx" and img.scale == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(img.data, data[1, 2])
    first = rng.integers(0, 9, (4, 40, 30)).astype(np.uint16)
    second = rng.integers(0, 9, (4, 40, 30)).astype(np.uint16)
    io_zarr_write.add_labels(img, {"cells": first})
    io_zarr_write.add_labels(open_image(path, timepoint=0, channel=0), {"cells": second})
    stored = zarr.open_array(str(path / "labels" / "cells" / "0"), mode="r")
    assert stored.shape == (2, 1, 4, 40, 30)  # the image's axes, one channel
    np.testing.assert_array_equal(stored[1, 0], first)  # the earlier time point is kept
    np.testing.assert_array_equal(stored[0, 0], second)
    back = open_image(path / "labels" / "cells", timepoint=1)
    np.testing.assert_array_equal(back.data, first)


def test_channel_by_name_from_omero_metadata(tmp_path, rng):
    data = rng.integers(0, 255, (2, 20, 20), dtype=np.uint8)
    path = io_zarr_write.write_image_zarr(tmp_path / "c.zarr", data, axes="cyx")
    group = zarr.open_group(str(path), mode="r+")
    _ngff_write.update_ome_attrs(group, {"omero": {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}})
    np.testing.assert_array_equal(open_image(path, channel="GFP").data, data[1])
    with pytest.raises(ValueError, match="DAPI, GFP"):
        open_image(path, channel="RFP")
    with pytest.raises(ValueError, match="channels 0..1"):
        open_image(path, channel=5)


def test_plain_zarr_arrays_guess_or_take_axes(tmp_path, rng):
    five = rng.integers(0, 255, (2, 2, 3, 10, 12), dtype=np.uint8)
    zarr.save_array(str(tmp_path / "five.zarr"), five, zarr_format=2)
    with pytest.raises(ValueError, match="5-D array.*axes="):
        open_image(tmp_path / "five.zarr")
    img = open_image(tmp_path / "five.zarr", axes="tczyx", timepoint=1, channel=0)
    assert img.kind == "zarr" and img.scale is None and img.axes == "zyx"
    np.testing.assert_array_equal(img.data, five[1, 0])
    with pytest.raises(ValueError, match="distinct letters"):
        open_image(tmp_path / "five.zarr", axes="tcyx")
    two = rng.integers(0, 255, (10, 12), dtype=np.uint8)
    zarr.save_array(str(tmp_path / "two.zarr"), two, zarr_format=3)
    np.testing.assert_array_equal(open_image(tmp_path / "two.zarr").data, two)


def test_bioformats2raw_container_opens_its_first_series(tmp_path, rng):
    data = rng.integers(0, 255, (30, 20), dtype=np.uint8)
    root = zarr.open_group(str(tmp_path / "bf.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    io_zarr_write.write_image_zarr(tmp_path / "bf.zarr" / "0", data)
    np.testing.assert_array_equal(open_image(tmp_path / "bf.zarr").data, data)


# --------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path, rng):
    with pytest.raises(ImageNotFoundError, match="no image at"):
        open_image(tmp_path / "missing.zarr")
    assert issubclass(ImageNotFoundError, ValueError) and issubclass(ImageNotFoundError, FileNotFoundError)
    (tmp_path / "notes.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="neither a TIFF file nor a zarr"):
        open_image(tmp_path / "notes.png")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(ValueError, match="not a zarr store"):
        open_image(tmp_path / "plain_dir")
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ValueError, match="without an image.*holds no array"):
        open_image(tmp_path / "empty.zarr")
    group = zarr.open_group(str(tmp_path / "arrays.zarr"), mode="w")
    group.create_array("raw", shape=(10, 10), dtype="u1")
    with pytest.raises(ValueError, match="arrays.zarr/raw"):
        open_image(tmp_path / "arrays.zarr")
    plate = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w", zarr_format=2)
    plate.attrs["plate"] = {"wells": []}
    with pytest.raises(ValueError, match="plate.*field of view"):
        open_image(tmp_path / "plate.zarr")
    path = io_zarr_write.write_image_zarr(tmp_path / "img.zarr", rng.integers(0, 9, (20, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match="level 3 does not exist"):
        open_image(path, level=3)
    io_zarr_write.add_labels(open_image(path), {"a": np.ones((20, 20), np.uint8)})
    with pytest.raises(ValueError, match="labels group.*\\(a\\)"):
        open_image(path / "labels")
    with pytest.raises(ValueError, match="shape \\(10, 10\\).*\\(20, 20\\)"):
        io_zarr_write.add_labels(open_image(path), {"b": np.ones((10, 10), np.uint8)})
    with pytest.raises(ValueError, match="label name"):
        io_zarr_write.add_labels(open_image(path), {"../x": np.ones((20, 20), np.uint8)})
    with pytest.raises(ValueError, match="integer labels"):
        io_zarr_write.add_labels(open_image(path), {"f": da.zeros((20, 20), dtype=float)})
    tif = tmp_path / "t.tif"
    tifffile.imwrite(tif, np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="not an OME-Zarr image.*save_labels"):
        io_zarr_write.add_labels(open_image(tif), {"a": np.ones((20, 20), np.uint8)})
    with pytest.raises(ValueError, match="exists.*overwrite=True"):
        io_zarr_write.write_labels_zarr(path, np.ones((20, 20), np.uint8))


# --------------------------------------------------------------------------- save_labels
def test_save_labels_picks_source_standalone_zarr_or_tiff(tmp_path, nuclei):
    image, labels = nuclei
    semantic = (labels > 0).astype(np.uint8)
    # small in-memory image -> TIFF
    tif = tmp_path / "small.tif"
    tifffile.imwrite(tif, image)
    out = io_zarr_write.save_labels(open_image(tif), {"instances": labels}, tmp_path / "out")
    assert out["instances"] == tmp_path / "out" / "small_instances.tif"
    np.testing.assert_array_equal(io.read_labels(out["instances"]), labels)
    # lazy TIFF -> standalone OME-Zarr per name, with the image's scale
    ome_tif = tmp_path / "big.ome.tif"
    tifffile.imwrite(ome_tif, image, ome=True, metadata={"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    lazy = open_image(ome_tif, max_in_memory_pixels=0)
    out = io_zarr_write.save_labels(lazy, {"instances": da.from_array(labels, chunks=100),
                                     "semantic": da.from_array(semantic, chunks=100)}, tmp_path / "out")  # fmt: skip
    assert out["semantic"] == tmp_path / "out" / "big_semantic.zarr"
    back = open_image(out["instances"])
    np.testing.assert_array_equal(back.data, labels)
    assert back.scale == (0.5, 0.5) and back.units == "micrometer"
    _models(2).ImageLabel.from_zarr(zarr.open_group(str(out["semantic"]), mode="r"))
    # OME-Zarr -> into the image
    path = _ome_image(tmp_path / "img.zarr", image, "yx", (1.0, 1.0), 3)
    out = io_zarr_write.save_labels(open_image(path), {"instances": labels})
    assert out["instances"] == path / "labels" / "instances"
    meta = json.loads((path / "labels" / "zarr.json").read_text())
    assert meta["attributes"]["ome"]["labels"] == ["instances"]


# --------------------------------------------------------------------------- downsampling
def test_mode_downsampling_keeps_majority_and_objects_win_ties():
    block = np.array([[1, 1, 0, 5, 7],
                      [1, 2, 0, 6, 7],
                      [0, 0, 3, 3, 0],
                      [0, 4, 3, 0, 0]], np.uint16)  # fmt: skip
    out = _ngff_write.mode_2x2(block)
    assert out.shape == (2, 3)
    # 1 wins 3:1; 0 0 5 6 -> 0 (2 votes); odd column pads by its edge (7, 7) -> 7
    # 0 0 0 4 -> 0; 3 3 3 0 -> 3; 0 0 0 0 -> 0
    np.testing.assert_array_equal(out, [[1, 0, 7], [0, 3, 0]])
    tie = np.array([[0, 9], [9, 0]], np.uint32)
    assert _ngff_write.mode_2x2(tie)[0, 0] == 9


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 5)))
def test_mode_downsampling_picks_a_value_of_its_block(block):
    out = _ngff_write.mode_2x2(block)
    assert out.shape == (-(-block.shape[0] // 2), -(-block.shape[1] // 2))
    for i, j in np.ndindex(out.shape):
        cell = block[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        values, counts = np.unique(cell, return_counts=True)
        assert out[i, j] in values
        if len(set(counts)) == 1 and len(values) == 1:
            assert out[i, j] == values[0]
        assert counts[list(values).index(out[i, j])] == counts.max() or cell.size < 4
