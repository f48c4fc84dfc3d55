"""benchmarks/make_bigdata.py at a small size: a streamed OME-Zarr mosaic of real nuclei."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import tifffile

from napari_segkit.io_zarr import open_image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_bigdata.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_bigdata", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_bigdata_small_mosaic_and_tiles(tmp_path, capsys):
    make_bigdata = _script()
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    result = make_bigdata.main(["--out", str(tmp_path / "big.zarr"), "--size", "3000",
                                "--chunk", "1024", "--tiles", str(tmp_path / "tiles"),
                                "--sources", str(sample)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "peak RSS" in printed and "3000 x 3000 uint8" in printed
    assert result["sources"] == 3  # the three fluorescence samples; H&E is left out
    img = open_image(tmp_path / "big.zarr", max_in_memory_pixels=0)
    assert img.data.shape == (3000, 3000) and img.data.dtype == np.uint8
    assert [lv.shape for lv in img.levels] == [(3000, 3000), (1500, 1500), (750, 750)]
    chunks = open_image(tmp_path / "big.zarr", max_in_memory_pixels=0, block_size=1).data.chunksize
    assert chunks == (1024, 1024)  # the storage chunks
    pixels = np.asarray(img.data.compute())
    # every 256-px cell is a crop of a real (normalised) image: not flat, full range used
    cells = pixels[:2816, :2816].reshape(11, 256, 11, 256).transpose(0, 2, 1, 3)
    assert (cells.std(axis=(2, 3)) > 1).all()
    assert pixels.max() == 255 and np.median(pixels) < 128
    # the same seed gives the same image; the tiles hold the same pixels
    again = make_bigdata.lazy_mosaic(make_bigdata.fluorescence_images([sample]), 3000, 3000, 1024, 0)
    np.testing.assert_array_equal(np.asarray(again[1000:1400, 2000:2400]), pixels[1000:1400, 2000:2400])
    tiles = sorted((tmp_path / "tiles").glob("tile_*.tif"))
    assert len(tiles) == 9 == result["tiles"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiles" / "tile_002_001.tif"),
                                  pixels[2048:, 1024:2048])  # fmt: skip
