"""Prediction on a dask.distributed cluster: --scheduler strings, a 4,096 x 4,096 zarr on
a LocalCluster equal to numpy, threads == cluster, clear errors (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segkit import io, io_zarr, io_zarr_write, schedulers
from napari_segkit._sample import sample_path
from napari_segkit.cli import main
from napari_segkit.metrics import match_instances
from napari_segkit.model_io import SegModel

pytest.importorskip("distributed")
torch = pytest.importorskip("torch")


def _mosaic(size: int) -> np.ndarray:
    """Real nuclei: fluo_512 tiled with flips / transposes (objects cross the seams)."""
    image = io.read_image(sample_path("fluo_512.tif"))
    variants = [image, image[::-1], image[:, ::-1], image.T, image[::-1, ::-1]]
    n = size // 512
    return np.block([[variants[(3 * i + j) % len(variants)] for j in range(n)]
                     for i in range(n)])


@pytest.fixture(scope="module")
def blob() -> SegModel:
    from test_prediction import BlobNet

    net = BlobNet()
    return SegModel(net=net, config=net.config)


@pytest.mark.parametrize(("text", "expected"), [
    ("threads", schedulers.SchedulerSpec("threads")),
    (None, schedulers.SchedulerSpec("threads")),
    ("local:2", schedulers.SchedulerSpec("local", n_workers=2)),
    ("LOCAL:16", schedulers.SchedulerSpec("local", n_workers=16)),
    ("tcp://10.0.0.5:8786", schedulers.SchedulerSpec("address", address="tcp://10.0.0.5:8786")),
])
def test_scheduler_strings(text, expected):
    spec = schedulers.parse_scheduler(text)
    assert spec == expected
    assert schedulers.parse_scheduler(str(spec)) == spec  # str() round-trips


@pytest.mark.parametrize(("text", "says"), [
    ("local", "local:N"), ("local:0", "1 to"), ("local:two", "local:N"),
    ("local:100000", "1 to"), ("processes", "not understood"), ("http://x:1", "tcp://"),
    ("tcp://", "not understood"),
])
def test_bad_scheduler_strings_are_refused_with_the_accepted_forms(text, says):
    with pytest.raises(ValueError, match=says):
        schedulers.parse_scheduler(text)


def test_cli_refuses_a_bad_scheduler_before_any_work(tmp_path, capsys):
    rc = main(["predict", "--model", "default", "--images", str(sample_path("fluo_256.tif")),
               "--out", str(tmp_path / "out"), "--scheduler", "local:x"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--scheduler" in err and "local:N" in err
    assert not (tmp_path / "out").exists()


def test_cli_says_when_the_scheduler_cannot_be_reached(tmp_path, capsys, monkeypatch,
                                                       tiny_model_path):
    monkeypatch.setattr(schedulers, "CONNECT_TIMEOUT_S", 2.0)
    rc = main(["predict", "--model", str(tiny_model_path), "--images",
               str(sample_path("fluo_256.tif")), "--out", str(tmp_path / "out"),
               "--scheduler", "tcp://127.0.0.1:9"])  # discard port: nothing listens
    assert rc == 2
    err = capsys.readouterr().err
    assert "could not reach the dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_4096_zarr_on_a_local_cluster_gives_the_instances_of_numpy(blob, tmp_path):
    """2 in-process workers, blocks of 1,024: the objects of a whole-image numpy prediction
    (1,000s of real nuclei, many across block borders), numbered 1..N, with the table."""
    from napari_segkit.prediction import predict
    from napari_segkit.workflows import predict_folder

    image = _mosaic(4096)
    path = io_zarr_write.write_image_zarr(tmp_path / "mosaic.zarr", image, chunks=(1024, 1024))
    seen = []
    with schedulers.open_client("local:2", processes=False) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        table = predict_folder(blob, [path], tmp_path / "out", tile_size=512, scheduler=client,
                               log=seen.append)
    labels = io_zarr.open_image(tmp_path / "out" / "mosaic_instances.zarr").data  # OME-Zarr
    whole = predict(blob, image, tile_size=512)
    n = int(labels.max())
    assert n > 1000 and set(np.unique(labels)) == set(range(n + 1))
    assert len(table) == n and (table["image"] == "mosaic").all()
    assert n == int(whole.instances.max())
    assert match_instances(whole.instances, labels).f1 >= 0.999
    assert ((labels > 0) == (whole.instances > 0)).mean() > 0.999
    semantic = io_zarr.open_image(tmp_path / "out" / "mosaic_semantic.zarr").data
    assert (semantic != whole.semantic).mean() < 1e-3
    assert any("block by block" in line for line in seen)


def test_threads_and_cluster_write_identical_labels_with_progress(blob, tmp_path):
    """Same blocks, same numbers: threads and 2 in-process workers agree label for label;
    the cluster's progress reaches every tile."""
    from napari_segkit.predict_blocks import predict_file_blockwise

    path = io_zarr_write.write_image_zarr(tmp_path / "m.zarr", _mosaic(1024), chunks=(256, 256))
    here = predict_file_blockwise(blob, path, tmp_path / "a.tif", tmp_path / "as.tif",
                                  tile_size=128, block=256)
    calls = []
    with schedulers.open_client("local:2", processes=False) as client:
        there = predict_file_blockwise(blob, path, tmp_path / "b.tif", tmp_path / "bs.tif",
                                       tile_size=128, block=256, client=client,
                                       progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_array_equal(io.read_labels(tmp_path / "a.tif"),
                                  io.read_labels(tmp_path / "b.tif"))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "as.tif"),
                                  tifffile.imread(tmp_path / "bs.tif"))
    assert len(here) == len(there) > 100
    assert len(calls) == 16 and calls[-1][0] == calls[-1][1]  # one call per block of 16
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cluster_stop_cancels(blob, tmp_path):
    from napari_segkit.predict_blocks import predict_file_blockwise
    from napari_segkit.prediction import PredictionCancelled

    path = io_zarr_write.write_image_zarr(tmp_path / "m.zarr", _mosaic(512), chunks=(256, 256))
    with schedulers.open_client("local:1", processes=False) as client, \
            pytest.raises(PredictionCancelled):
        predict_file_blockwise(blob, path, tmp_path / "b.tif", tmp_path / "bs.tif",
                               tile_size=128, block=128, client=client, stop=lambda: True)
    assert not list(tmp_path.glob(".segkit-blocks-*"))  # temporary arrays removed


def test_cli_local_cluster_of_processes_equals_threads(tiny_model_path, tmp_path):
    """The real thing: `--scheduler local:2` starts 2 worker processes (the model file's
    network pickled to them once) and gives the files of `--scheduler threads`."""
    image = _mosaic(1024)
    path = io_zarr_write.write_image_zarr(tmp_path / "img.ome.zarr", image, chunks=(512, 512))
    for scheduler in ("threads", "local:2"):
        assert main(["predict", "--model", str(tiny_model_path), "--images", str(path),
                     "--out", str(tmp_path / scheduler.replace(":", "")),
                     "--tile-size", "128", "--scheduler", scheduler]) == 0
    a = io_zarr.open_image(tmp_path / "threads" / "img_instances.zarr").data
    b = io_zarr.open_image(tmp_path / "local2" / "img_instances.zarr").data
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "local2" / "objects.csv").read_text() == \
        (tmp_path / "threads" / "objects.csv").read_text()
