"""Hostile or huge inputs cannot exhaust memory (issue 14, items 1-3).

The cases that would allocate gigabytes on old code run in a subprocess under a
virtual-memory cap (``resource.setrlimit(RLIMIT_AS, ...)``), so a regression fails the
test instead of taking the machine down.
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segkit.model import UNetConfig
from napari_segkit.model_io import ModelFileError, SegModel, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


def _capped_env() -> dict[str, str]:
    # the bounds are of the machine's memory: the children run on the CPU, also where a GPU
    # is (CUDA reserves far more address space than any cap here when it starts)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2",
               CUDA_VISIBLE_DEVICES="",
               # a thread's stack counts in the cap: as many threads on any machine as on CI's
               DASK_NUM_WORKERS="2", ZARR_THREADING__MAX_WORKERS="2")
    env.pop("COLUMNS", None)
    return env


@functools.cache
def _import_excess() -> int:
    """Address space that importing torch and napari_segkit takes beyond 1 GiB. The caps
    are sized for a CPU build of torch (about 0.85 GiB: no excess); a CUDA build maps GBs
    of GPU libraries at import, which the caps must leave room for."""
    code = ("import torch, napari_segkit.workflows; print([l for l in open('/proc/self/status')"
            " if l.startswith('VmSize')][0].split()[1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_capped_env(), timeout=120, check=True)
    return max(0, int(done.stdout.split()[-1]) * 1024 - GIB)


def _run_capped(code: str, cap_bytes: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space is capped at ``cap_bytes`` (plus
    what a CUDA build of torch maps at import, see :func:`_import_excess`)."""
    cap_bytes += _import_excess()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=_capped_env(), preexec_fn=limit)


def _write_safetensors(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _segkit_meta(config: dict) -> dict:
    return {"segkit": json.dumps({"format": "napari-segkit-model", "format_version": 1,
                                  "config": config})}


# --------------------------------------------------------------------------- item 1
def test_hostile_model_config_is_refused_fast_under_a_memory_cap(tmp_path):
    """depth=40, width=1024 and one tensor: refused before any network is built."""
    path = tmp_path / "hostile.safetensors"
    config = UNetConfig().to_dict() | {"depth": 40, "width": 1024}
    _write_safetensors(path, {"__metadata__": _segkit_meta(config),
                              "head.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                       b"\0" * 4)
    assert path.stat().st_size < 5000
    t0 = time.perf_counter()
    done = _run_capped(f"""
        from napari_segkit.model_io import ModelFileError, load_model
        try:
            load_model({str(path)!r})
        except ModelFileError as err:
            print("REFUSED", err)
        """, cap_bytes=3 * GIB)
    assert time.perf_counter() - t0 < 60
    assert "REFUSED" in done.stdout, done.stderr[-2000:]
    assert "depth" in done.stdout and "Traceback" not in done.stderr


def test_tensor_names_and_shapes_must_fit_the_config(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = SegModel.new(UNetConfig(width=4, depth=2))
    good = save_model(model, tmp_path / "good.safetensors")
    load_model(good)  # the honest file loads
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    meta = _segkit_meta(model.config.to_dict())

    wrong_shape = dict(state, **{"head.weight": torch.zeros(7, 4, 1, 1)})
    save_file(wrong_shape, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="head.weight"):
        load_model(tmp_path / "shape.safetensors")

    extra = dict(state, **{"evil.weight": torch.zeros(3)})
    save_file(extra, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="evil.weight"):
        load_model(tmp_path / "extra.safetensors")

    missing = {k: v for k, v in state.items() if k != "head.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="head.bias"):
        load_model(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("length", [2**40, 2**63, 200 * 2**20])
def test_safetensors_header_size_is_bounded(tmp_path, length):
    path = tmp_path / "header.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b"{}" + b" " * 100)
    with pytest.raises(ModelFileError, match="header"):
        load_model(path)


def test_configs_out_of_bounds_and_giant_tensors_are_refused_under_a_cap(tmp_path):
    """Each would make old code build (or read) gigabytes: run them in a capped process."""
    cases = {"depth": 40, "width": 100_000, "in_channels": 10**6, "n_classes": 10**7}
    paths = {}
    for field, value in cases.items():
        paths[field] = tmp_path / f"{field}.safetensors"
        _write_safetensors(paths[field], {"__metadata__": _segkit_meta(
            UNetConfig().to_dict() | {field: value})}, b"")
    n = 10**10  # a 40 GB tensor declared in a tiny file
    paths["head.weight"] = tmp_path / "giant.safetensors"
    _write_safetensors(paths["head.weight"], {
        "__metadata__": _segkit_meta(UNetConfig().to_dict()),
        "head.weight": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}, b"\0" * 16)
    done = _run_capped(f"""
        from napari_segkit.model_io import ModelFileError, load_model
        for field, path in {({k: str(v) for k, v in paths.items()})!r}.items():
            try:
                load_model(path)
            except ModelFileError as err:
                print("REFUSED", field, field in str(err))
        """, cap_bytes=3 * GIB)
    for field in paths:
        assert f"REFUSED {field} True" in done.stdout, done.stdout + done.stderr[-2000:]


# --------------------------------------------------------------------------- item 2
@pytest.fixture(scope="module")
def tiff_bomb(tmp_path_factory) -> Path:
    """A 60,000 x 60,000 uint8 TIFF of zeros, zlib tiles: about 3.6 MB on disk, 3.4 GiB
    decoded (tiles encoded once and repeated, so the test never holds the image)."""
    folder = tmp_path_factory.mktemp("bomb")
    path = folder / "bomb.tif"
    n, tile = 60_000, 4096
    encoded = zlib.compress(bytes(tile * tile))
    count = ((n + tile - 1) // tile) ** 2
    tifffile.imwrite(path, (encoded for _ in range(count)), shape=(n, n), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib")
    assert path.stat().st_size < 8 * 2**20
    return path


def test_tiff_bomb_read_is_refused_before_allocation(tiff_bomb):
    done = _run_capped(f"""
        from napari_segkit import io
        try:
            io.read_image({str(tiff_bomb)!r})
        except ValueError as err:
            print("REFUSED", err)
        """, cap_bytes=2 * GIB)
    assert "REFUSED" in done.stdout, done.stderr[-2000:]
    assert "60000 x 60000" in done.stdout and "OME-Zarr" in done.stdout


def test_tiff_bomb_convert_says_why_and_how(tiff_bomb, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("index,axis-0,axis-1\n0,10,10\n")
    done = _run_capped(f"""
        import sys
        from napari_segkit.cli import main
        sys.exit(main(["convert", "--image", {str(tiff_bomb)!r}, "--points", {str(points)!r},
                       "--mode", "click", "--out", {str(tmp_path / "out.tif")!r}]))
        """, cap_bytes=2 * GIB)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "60000 x 60000" in done.stderr and "Traceback" not in done.stderr


def test_tiff_bomb_predict_goes_block_by_block(tiff_bomb, tiny_model_path, tmp_path):
    """predict routes the bomb to the block-wise path (message first) and keeps running
    under a 3 GiB cap instead of allocating 54 GiB; stopped once a block is done."""
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(tiff_bomb, images / "bomb.tif")
    cap = 3 * GIB + _import_excess()
    code = textwrap.dedent(f"""
        import sys
        from napari_segkit.cli import main
        sys.exit(main(["predict", "--model", {str(tiny_model_path)!r}, "--images",
                       {str(images)!r}, "--out", {str(tmp_path / "out")!r}]))
        """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=_capped_env(),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    lines = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            done_tiles = re.search(r"\| *(\d+)/(\d+) ", line)
            if done_tiles and int(done_tiles.group(1)) > 0:
                break  # tiles of the first block are done
    finally:
        still_running = proc.poll() is None
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert "block by block" in text, text[-3000:]
    assert "60000 x 60000" in text
    assert still_running, text[-3000:]
    assert "Traceback" not in text and "MemoryError" not in text


# --------------------------------------------------------------------------- item 3
def _blob_image(size: int, seed: int = 0) -> np.ndarray:
    """Bright round blobs on a dark background, about 12 px across (uint8)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.float32)
    n = size * size // 900
    ys, xs = rng.integers(0, size, n), rng.integers(0, size, n)
    image[ys, xs] = 1.0
    image = ndi.gaussian_filter(image, 4.0)
    return (255 * np.clip(image / image.max() * 3, 0, 1)).astype(np.uint8)


def test_streamed_prediction_stays_under_a_memory_cap(tmp_path):
    """A 3072 x 3072 image predicted through predict_folder with only 300 MB of address
    space beyond a warmed-up process: the old code holds 4 x H x W float32 probabilities
    (151 MB) plus inputs, labels and the table's arrays and exceeds it. The labels are
    written as multiscale OME-Zarr (block-by-block images), streamed under the cap too."""
    size = 3072
    image_path = tmp_path / "images" / "big.tif"
    image_path.parent.mkdir()
    tifffile.imwrite(image_path, _blob_image(size), tile=(512, 512), compression="zlib")
    done = _run_capped(f"""
        import resource
        import numpy as np
        import torch
        from napari_segkit.model import UNetConfig
        from napari_segkit.model_io import SegModel
        from napari_segkit import io, io_zarr
        from napari_segkit.workflows import predict_folder

        torch.manual_seed(0)
        model = SegModel.new(UNetConfig(width=4, depth=1))
        warm = {str(tmp_path / "warm")!r}
        import os; os.makedirs(warm + "/in")
        io.write_labels(warm + "/in/w.tif", np.zeros((300, 300), np.uint16))
        predict_folder(model, warm + "/in", warm + "/out", log=lambda s: None)
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
        cap = vm * 1024 + 300 * 2**20
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        table = predict_folder(model, [__import__("pathlib").Path({str(image_path)!r})],
                               {str(tmp_path / "out")!r}, log=print)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # check the result freely
        labels = io_zarr.open_image({str(tmp_path / "out" / "big_instances.zarr")!r}).data
        print("SHAPE", labels.shape, "OBJECTS", len(table), int(labels.max()))
        """, cap_bytes=8 * GIB, timeout=400)
    assert "SHAPE (3072, 3072)" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    n_table, n_max = (int(v) for v in done.stdout.split("OBJECTS")[1].split())
    assert n_table == n_max  # labels 1..N, one table row each


def test_streamed_instances_match_whole_image_prediction(tmp_path):
    """Block-by-block streaming gives the objects of a whole-image prediction, also
    across block borders (blocks of 160 px on a 512 x 512 image)."""
    from test_prediction import BlobNet

    from napari_segkit import io
    from napari_segkit._sample import sample_path
    from napari_segkit.metrics import match_instances
    from napari_segkit.predict_blocks import predict_file_blockwise
    from napari_segkit.prediction import predict

    net = BlobNet()
    blob = SegModel(net=net, config=net.config)
    source = sample_path("fluo_512.tif")
    image = io.read_image(source)
    whole = predict(blob, image, tile_size=128)
    table = predict_file_blockwise(blob, source, tmp_path / "i.tif", tmp_path / "s.tif",
                                   tile_size=128, block=160)
    labels = io.read_labels(tmp_path / "i.tif")
    semantic = tifffile.imread(tmp_path / "s.tif")
    n = int(labels.max())
    assert set(np.unique(labels)) == set(range(n + 1)) and len(table) == n
    assert abs(n - int(whole.instances.max())) <= 1
    assert match_instances(whole.instances, labels).f1 >= 0.99
    assert (semantic != whole.semantic).mean() < 1e-3


def test_predict_refuses_probabilities_beyond_the_budget_before_allocating(monkeypatch):
    """An in-memory image whose probabilities would not fit is refused with a message
    (budget made small here instead of making a huge array)."""
    from napari_segkit import prediction

    monkeypatch.setattr(prediction, "memory_budget", lambda: 10 * 2**20)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = SegModel.new(UNetConfig(width=4, depth=1))
    image = np.zeros((1024, 1024), np.uint8)  # 4 x 1024^2 float32 = 16 MiB > 10 MiB
    with pytest.raises(ValueError, match="block by block"):
        prediction.predict(model, image)
    prediction.predict(model, image[:256, :256])  # 1 MiB: fine


def test_cli_predict_shows_tile_progress(tiny_model_path, tmp_path, capsys):
    from napari_segkit.cli import main

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "small.tif", _blob_image(300))
    assert main(["predict", "--model", str(tiny_model_path), "--images", str(images),
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"small: .*\| *\d+/\d+ ", err), err
    assert "tile" in err


def test_file_blocks_grow_to_4096_only_when_the_budget_allows():
    """Bigger blocks cost less context per pixel (1.13x at 4096 instead of 1.27x at 2048),
    but a block plus its context must fit the memory budget."""
    from napari_segkit.memory_limits import PREDICT_BYTES_PER_PIXEL
    from napari_segkit.predict_blocks import FILE_BLOCK, block_size_for

    context = 128
    need = (FILE_BLOCK + 2 * context) ** 2 * PREDICT_BYTES_PER_PIXEL
    assert block_size_for(context, budget=need, largest=FILE_BLOCK) == FILE_BLOCK == 4096
    smaller = block_size_for(context, budget=need // 2, largest=FILE_BLOCK)
    assert 256 <= smaller < FILE_BLOCK and smaller % 256 == 0
    assert (smaller + 2 * context) ** 2 * PREDICT_BYTES_PER_PIXEL <= need // 2
    assert block_size_for(context, budget=10 * need) == 2048  # the in-memory paths' limit
