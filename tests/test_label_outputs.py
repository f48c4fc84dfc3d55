"""Issue 12: `predict` writes OME-Zarr labels for .zarr and big inputs (--labels-format),
or into the source OME-Zarr (--labels-into-source), refusing what it cannot do."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_segkit import _ngff_write, io, io_zarr, io_zarr_write, predict_blocks, workflows
from napari_segkit._sample import sample_path
from napari_segkit.cli import main
from napari_segkit.model_io import SegModel

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def blob() -> SegModel:
    """A deterministic stand-in for a trained model (real nuclei become objects)."""
    from test_prediction import BlobNet

    net = BlobNet()
    return SegModel(net=net, config=net.config)


@pytest.fixture
def nuclei() -> np.ndarray:
    """300 x 300 real nuclei (a crop of fluo_512)."""
    return io.read_image(sample_path("fluo_512.tif"))[:300, :300]


@pytest.fixture
def small_levels(monkeypatch):
    """Pyramids down to 128 px, so a 300 px image gets 3 levels (1024 px by default)."""
    monkeypatch.setattr(_ngff_write, "MIN_LEVEL_SIDE", 128)


@pytest.fixture
def source(tmp_path, nuclei):
    """slide.zarr: the nuclei as an OME-Zarr image of 0.5 um pixels (zarr format 3)."""
    return io_zarr_write.write_image_zarr(tmp_path / "in" / "slide.zarr", nuclei,
                                          scale=(0.5, 0.5), units="um", chunks=(128, 128),
                                          zarr_format=3)


@pytest.fixture
def cli_model(monkeypatch, blob):
    """`--model blob` gives the BlobNet model (a model file cannot hold it)."""
    monkeypatch.setattr(workflows, "open_model", lambda _source: blob)
    return "blob"


def _labels(path) -> np.ndarray:
    """The full-resolution pixels of a label image (TIFF or OME-Zarr)."""
    return np.asarray(io_zarr.open_image(path, max_in_memory_pixels=0).data)


def test_zarr_input_gives_multiscale_ome_zarr_labels_equal_to_the_tiffs(
        blob, source, tmp_path, small_levels):
    quiet = {"log": lambda _line: None}
    as_zarr = workflows.predict_folder(blob, [source], tmp_path / "z", **quiet)
    as_tif = workflows.predict_folder(blob, [source], tmp_path / "t", labels_format="tif",
                                      **quiet)
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == [
        "objects.csv", "slide_instances.zarr", "slide_semantic.zarr"]
    for name in ("instances", "semantic"):
        stored = io_zarr.open_image(tmp_path / "z" / f"slide_{name}.zarr",
                                    max_in_memory_pixels=0)
        assert stored.kind == "ome-zarr" and stored.zarr_format == 3  # as the source
        assert stored.scale == (0.5, 0.5) and stored.units == "micrometer"
        assert [level.shape for level in stored.levels] == [(300, 300), (150, 150), (75, 75)]
        tif = tifffile.imread(tmp_path / "t" / f"slide_{name}.tif")
        np.testing.assert_array_equal(np.asarray(stored.data), tif)
        assert stored.data.dtype == tif.dtype
    assert int(_labels(tmp_path / "z" / "slide_instances.zarr").max()) == len(as_zarr) > 10
    pd.testing.assert_frame_equal(as_zarr, as_tif)


def test_auto_gives_ome_zarr_to_big_tiffs_and_tiff_to_small_ones(
        blob, nuclei, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_blocks, "BLOCKWISE_MIN_PIXELS", 200 * 200)
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "big.tif", nuclei, imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um"})  # 0.5 um pixels
    tifffile.imwrite(folder / "small.tif", nuclei[:150, :150])
    lines = []
    workflows.predict_folder(blob, folder, tmp_path / "out", log=lines.append)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["big_instances.zarr", "big_semantic.zarr", "objects.csv",
                     "small_instances.tif", "small_semantic.tif"]
    assert any("big" in line and "block by block" in line for line in lines)
    big = io_zarr.open_image(tmp_path / "out" / "big_instances.zarr", max_in_memory_pixels=0)
    assert big.scale == (0.5, 0.5) and big.units == "micrometer"
    assert big.data.max().compute() > 10


def test_zarr_format_for_an_image_predicted_in_memory(blob, nuclei, tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, nuclei)
    quiet = {"log": lambda _line: None}
    workflows.predict_folder(blob, [path], tmp_path / "z", labels_format="zarr", **quiet)
    workflows.predict_folder(blob, [path], tmp_path / "t", labels_format="tif", **quiet)
    for name in ("instances", "semantic"):
        np.testing.assert_array_equal(_labels(tmp_path / "z" / f"small_{name}.zarr"),
                                      io.read_labels(tmp_path / "t" / f"small_{name}.tif"))


def test_cli_labels_format_tif_keeps_the_tiled_tiffs(cli_model, source, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", "--model", cli_model, "--images", str(source), "--out", str(out),
               "--labels-format", "tif"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "objects.csv", "slide_instances.tif", "slide_semantic.tif"]
    with tifffile.TiffFile(out / "slide_instances.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert "<stem>_instances.tif, <stem>_semantic.tif" in capsys.readouterr().out


def test_cli_labels_into_source_round_trip_and_no_overwrite(cli_model, source, tmp_path,
                                                            capsys):
    out = tmp_path / "out"
    argv = ["predict", "--model", cli_model, "--images", str(source), "--out", str(out)]
    assert main([*argv, "--labels-format", "tif"]) == 0
    assert main([*argv[:-1], str(tmp_path / "into"), "--labels-into-source"]) == 0
    assert sorted(p.name for p in (tmp_path / "into").iterdir()) == ["objects.csv"]
    assert "into <image>.zarr/labels/instances" in capsys.readouterr().out
    image = io_zarr.open_image(source)
    for name in ("instances", "semantic"):
        stored = io_zarr.open_image(source / "labels" / name, max_in_memory_pixels=0)
        assert stored.scale == image.scale == (0.5, 0.5) and stored.units == "micrometer"
        np.testing.assert_array_equal(np.asarray(stored.data),
                                      tifffile.imread(out / f"slide_{name}.tif"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "into" / "objects.csv"),
                                  pd.read_csv(out / "objects.csv"))
    before = _labels(source / "labels" / "instances")

    rc = main([*argv[:-1], str(tmp_path / "again"), "--labels-into-source"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "already has labels 'instances' and 'semantic'" in err and "never overwrites" in err
    assert not (tmp_path / "again").exists()  # refused before any work
    np.testing.assert_array_equal(_labels(source / "labels" / "instances"), before)


def _plain_zarr(tmp_path, nuclei):
    import zarr

    path = tmp_path / "plain.zarr"
    zarr.open_array(path, mode="w", shape=nuclei.shape, dtype=nuclei.dtype)[:] = nuclei
    return path


@pytest.mark.parametrize(("make", "extra", "says"), [
    (lambda tmp, img: tifffile.imwrite(tmp / "a.tif", img) or tmp / "a.tif", [],
     "a.tif is a TIFF file, not an OME-Zarr image"),
    (_plain_zarr, [], "plain.zarr is a plain zarr array, not an OME-Zarr image"),
    (None, ["--labels-format", "tif"], "does not go with --labels-format tif"),
])
def test_cli_labels_into_source_refusals(cli_model, source, tmp_path, nuclei, capsys, make,
                                         extra, says):
    image = source if make is None else make(tmp_path, nuclei)
    rc = main(["predict", "--model", cli_model, "--images", str(image), "--out",
               str(tmp_path / "out"), "--labels-into-source", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not (source / "labels").exists()


def test_cli_labels_into_a_read_only_source_is_refused(cli_model, source, tmp_path, capsys):
    mode = source.stat().st_mode
    os.chmod(source, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        rc = main(["predict", "--model", cli_model, "--images", str(source), "--out",
                   str(tmp_path / "out"), "--labels-into-source"])
    finally:
        os.chmod(source, mode)
    err = capsys.readouterr().err
    assert rc == 2 and "is read-only, so no labels can be written into it" in err
    assert not (source / "labels").exists()


def test_predict_file_blockwise_labels_into_source_and_its_argument_checks(blob, source,
                                                                           tmp_path):
    table = predict_blocks.predict_file_blockwise(blob, source, labels_into_source=True,
                                                  tile_size=128, block=128)
    labels = _labels(source / "labels" / "instances")
    assert int(labels.max()) == len(table) > 10
    assert not list(tmp_path.rglob(".segkit-blocks-*"))  # temporary arrays removed
    with pytest.raises(ValueError, match="leave out instances_path"):
        predict_blocks.predict_file_blockwise(blob, source, tmp_path / "i.zarr",
                                              tmp_path / "s.zarr", labels_into_source=True)
    with pytest.raises(ValueError, match="give instances_path and semantic_path"):
        predict_blocks.predict_file_blockwise(blob, source)
    with pytest.raises(ValueError, match=r"\.tif \(zlib TIFF\) or \.zarr"):
        predict_blocks.predict_file_blockwise(blob, source, tmp_path / "i.png",
                                              tmp_path / "s.png")


def test_evaluate_scores_ome_zarr_outputs_as_the_tiffs(blob, source, nuclei, tmp_path, capsys):
    """`evaluate` finds <stem>_instances.zarr as it finds .tif, and takes .zarr ground truth."""
    quiet = {"log": lambda _line: None}
    workflows.predict_folder(blob, [source], tmp_path / "z", **quiet)
    workflows.predict_folder(blob, [source], tmp_path / "t", labels_format="tif", **quiet)
    gt = tmp_path / "gt"
    gt.mkdir()
    truth = _labels(tmp_path / "t" / "slide_instances.tif")[::-1].copy()  # another labelling
    io_zarr_write.write_labels_zarr(gt / "slide.zarr", truth)
    scores = []
    for out in ("z", "t"):
        assert main(["evaluate", "--pred", str(tmp_path / out), "--gt", str(gt), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out)["images"])
    assert scores[0] == scores[1] and scores[0][0]["image"] == "slide"
    assert 0 < scores[0][0]["n_gt"] and scores[0][0]["f1"] < 1


def test_evaluate_refuses_a_zarr_too_large_to_score(blob, source, tmp_path, capsys,
                                                    monkeypatch):
    workflows.predict_folder(blob, [source], tmp_path / "z", log=lambda _line: None)
    gt = tmp_path / "gt"
    gt.mkdir()
    io_zarr_write.write_labels_zarr(gt / "slide.zarr", np.zeros((300, 300), np.uint8))
    monkeypatch.setattr(io_zarr, "MAX_IN_MEMORY_PIXELS", 1000)
    assert main(["evaluate", "--pred", str(tmp_path / "z"), "--gt", str(gt)]) == 2
    assert "too large to score in memory" in capsys.readouterr().err
