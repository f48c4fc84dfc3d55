"""Peak memory of ``napari-segkit predict`` (instances and the objects table included) as
the image grows: is it bounded by the block size, not by the image?

Each size runs in a fresh subprocess (``python -m napari_segkit.cli predict``); its peak
resident set size is the child's ``ru_maxrss`` (``os.wait4``). The images are synthetic
nuclei-like blobs written as tiled zlib TIFFs tile by tile (this script never holds
them). Without ``--model`` an UNTRAINED tiny UNet (width 8, depth 2) is used: enough for
memory figures (it still runs every step: tiles, blending, post-processing,
block-wise instances, label files, table), not for quality or realistic timing.

    python benchmarks/bench_memory.py                       # 4096^2, 8192^2, 20000^2
    python benchmarks/bench_memory.py --sizes 2048 4096     # quicker
    python benchmarks/bench_memory.py --model default --threads 2

Targets (issue 14): peak RSS grows by less than 1.5x from 8192^2 to 20000^2 and stays
under 3 GB; the time per megapixel stays roughly constant. On a terminal the child's
progress bar shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
TILE = 512


def blob_tiles(n_variants: int = 8, seed: int = 0) -> list[np.ndarray]:
    """A few 512 x 512 uint8 tiles of bright round blobs (about 12 px across, ~300 per tile)."""
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(n_variants):
        canvas = np.zeros((TILE, TILE), np.float32)
        n = TILE * TILE // 900
        canvas[rng.integers(8, TILE - 8, n), rng.integers(8, TILE - 8, n)] = 1.0
        canvas = ndi.gaussian_filter(canvas, 4.0, mode="constant")
        canvas = np.clip(canvas / canvas.max() * 3, 0, 1) * 200 + rng.normal(20, 4, canvas.shape)
        tiles.append(np.clip(canvas, 0, 255).astype(np.uint8))
    return tiles


def write_image(path: Path, size: int, seed: int = 0) -> None:
    """A ``size`` x ``size`` uint8 tiled zlib TIFF made of blob tiles, written tile by tile."""
    variants = blob_tiles(seed=seed)
    rng = np.random.default_rng(seed + 1)
    n = (size + TILE - 1) // TILE
    order = rng.integers(0, len(variants), n * n)
    tifffile.imwrite(path, (variants[i] for i in order), shape=(size, size), dtype=np.uint8,
                     tile=(TILE, TILE), compression="zlib")


def tiny_model(path: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import torch

    from napari_segkit.model import UNetConfig
    from napari_segkit.model_io import SegModel, save_model

    torch.manual_seed(0)
    return save_model(SegModel.new(UNetConfig(width=8, depth=2)), path)


def run_predict(model: str, images: Path, out: Path, threads: int, tile_size: int
                ) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, last stdout line) of one ``predict`` subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "napari_segkit.cli", "predict", "--model", model,
           "--images", str(images), "--out", str(out), "--tile-size", str(tile_size),
           "--device", "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed (exit {proc.returncode}):\n{stdout}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    return usage.ru_maxrss / 1024, wall, " | ".join(lines[-3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 20000])
    parser.add_argument("--model", default=None,
                        help="model file or 'default' (default: an untrained tiny UNet)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where images and outputs go (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.work_dir))
    try:
        if args.model is None:
            model = str(tiny_model(work / "tiny_untrained.safetensors"))
            model_text = "untrained tiny UNet (width 8, depth 2): memory figures only"
        else:
            model, model_text = args.model, args.model
        print(f"model: {model_text}; threads: {args.threads}; tile size: {args.tile_size}")
        print(f"{'size':>12} {'Mpx':>8} {'peak RSS MiB':>13} {'wall s':>8} {'s/Mpx':>7}  output")
        results = {}
        for size in args.sizes:
            images = work / f"images_{size}"
            images.mkdir()
            write_image(images / f"blobs_{size}.tif", size)
            rss, wall, text = run_predict(model, images, work / f"out_{size}", args.threads,
                                          args.tile_size)
            mpx = size * size / 1e6
            results[size] = rss
            print(f"{f'{size}^2':>12} {mpx:>8.1f} {rss:>13.0f} {wall:>8.1f} {wall / mpx:>7.2f}  "
                  f"{text}", flush=True)
            shutil.rmtree(images)
            shutil.rmtree(work / f"out_{size}", ignore_errors=True)
        if 8192 in results and 20000 in results:
            ratio = results[20000] / results[8192]
            ok = ratio < 1.5 and results[20000] < 3 * 1024
            print(f"peak RSS 8192^2 -> 20000^2: x{ratio:.2f} (target < 1.5x and < 3 GB: "
                  f"{'met' if ok else 'NOT met'})")
        elif len(results) > 1:
            small, large = min(results), max(results)
            print(f"peak RSS {small}^2 -> {large}^2: x{results[large] / results[small]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
