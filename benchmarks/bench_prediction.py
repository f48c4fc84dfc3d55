"""Benchmark tiled prediction: speed vs one whole-image pass, peak memory, tiled-vs-untiled F1.

Run: ``.venv/bin/python benchmarks/bench_prediction.py [--size 4096] [--big 8192] [--no-big]``

Every measurement runs in a fresh subprocess so its peak RSS (``ru_maxrss`` of the
child) is clean. Uses the shipped default model when it exists, else a freshly
initialised UNet of the default configuration (same cost, meaningless output).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def build_image(size: int, seed: int = 0) -> np.ndarray:
    """A size x size image tiled from real 512x512 samples with random flips / rotations."""
    import tifffile

    from napari_segkit._sample import sample_path

    base = tifffile.imread(sample_path("fluo_512.tif"))
    rng = np.random.default_rng(seed)
    n = -(-size // 512)
    out = np.empty((n * 512, n * 512), base.dtype)
    for i in range(n):
        for j in range(n):
            tile = np.rot90(base, rng.integers(4))
            if rng.random() < 0.5:
                tile = tile[::-1]
            out[i * 512 : (i + 1) * 512, j * 512 : (j + 1) * 512] = tile
    return out[:size, :size]


def get_model():
    from napari_segkit.model_io import DEFAULT_MODEL_PATH, SegModel, load_default_model

    if DEFAULT_MODEL_PATH.is_file():
        return load_default_model(), f"shipped default model ({DEFAULT_MODEL_PATH.name})"
    import torch

    torch.manual_seed(0)
    return SegModel.new(), "freshly initialised UNet, default UNetConfig (no shipped model yet)"


def task(name: str, size: int, tile: int) -> dict:
    """One measurement (runs inside a subprocess)."""
    import torch

    from napari_segkit.normalization import prepare_input
    from napari_segkit.prediction import predict, predict_probabilities
    from napari_segkit.runtime import TorchForward

    model, model_desc = get_model()
    image = build_image(size)
    result: dict = {"model": model_desc, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if name == "tiled":
        probs = predict_probabilities(model, image, tile_size=tile)
        result["shape"] = list(probs.shape)
    elif name == "whole":
        x = prepare_input(image, model.config.in_channels, model.normalization)
        model.net.eval()
        TorchForward(model.net, model.config.n_classes, torch.device("cpu"))(x[None])
    elif name == "tiled+instances":
        pred = predict(model, image, tile_size=tile)
        result["n_objects"] = int(pred.instances.max())
    elif name == "f1":
        from napari_segkit.metrics import match_instances
        from napari_segkit.postprocess import instances_from_probabilities

        k = model.config.n_classes
        tiled = predict(model, image, tile_size=tile).instances
        x = prepare_input(image, model.config.in_channels, model.normalization)
        model.net.eval()
        full = TorchForward(model.net, k, torch.device("cpu"))(x[None])[0]
        untiled = instances_from_probabilities(full[:k], full[k] if full.shape[0] > k else None)
        m = match_instances(untiled, tiled)
        result.update(f1=m.f1, n_untiled=int(untiled.max()), n_tiled=int(tiled.max()))
    elif name == "blocks":
        from napari_segkit.metrics import match_instances
        from napari_segkit.postprocess import instances_from_probabilities
        from napari_segkit.prediction import blockwise_instances

        probs = predict_probabilities(model, image, tile_size=tile)
        whole = instances_from_probabilities(probs, n_classes=model.config.n_classes)
        blocks = blockwise_instances(probs, model.config.n_classes, 1024, 64)
        m = match_instances(whole, blocks)
        result.update(f1=m.f1, n_whole=int(whole.max()), n_blocks=int(blocks.max()))
    elif name == "dask":
        import dask
        import dask.array as da

        pred = predict(model, da.from_array(image, chunks=1024), tile_size=tile)
        dask.compute(pred.probabilities, pred.instances, scheduler="threads")
    result["seconds"] = time.perf_counter() - t0
    return result


def run(name: str, size: int, tile: int, timeout: float = 3600) -> dict:
    """Run ``task`` in a subprocess; add its peak RSS (GB)."""
    cmd = [sys.executable, __file__, "--_task", name, "--size", str(size), "--tile", str(tile)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1:] or ["failed"],
            "wall": time.perf_counter() - t0,
        }
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["peak_rss_gb"] = float(proc.stdout.strip().splitlines()[-2])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=4096, help="image for the speed comparison")
    ap.add_argument("--big", type=int, default=8192, help="image for the peak-memory run")
    ap.add_argument("--no-big", action="store_true", help="skip the big-image memory run")
    ap.add_argument("--f1-size", type=int, default=1024, help="image for tiled-vs-untiled F1")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--whole-size", type=int, default=0,
                    help="size of the whole-image pass (default: --size)")  # fmt: skip
    ap.add_argument("--dask", action="store_true", help="also time the dask path at --size")
    ap.add_argument("--_task", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._task:
        res = task(args._task, args.size, args.tile)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)  # KB -> GB (Linux)
        print(json.dumps(res))
        return

    print(f"napari-segkit prediction benchmark, {os.cpu_count()} CPU cores, tile {args.tile}")
    tiled = run("tiled", args.size, args.tile)
    print(f"model: {tiled.get('model')}")
    print(
        f"tiled {args.size}x{args.size}: {tiled['seconds']:.1f} s, peak RSS {tiled['peak_rss_gb']:.2f} GB"
    )
    ws = args.whole_size or args.size
    whole = run("whole", ws, args.tile)
    if "error" in whole:
        print(f"whole-image pass {ws}x{ws} failed: {whole['error']}")
    else:
        scale = (args.size / ws) ** 2
        note = "" if ws == args.size else f" (extrapolated x{scale:.0f} from {ws}x{ws})"
        print(
            f"whole-image single forward {ws}x{ws}: {whole['seconds']:.1f} s, peak RSS "
            f"{whole['peak_rss_gb']:.2f} GB; tiled / whole time = "
            f"{tiled['seconds'] / (whole['seconds'] * scale):.2f}{note}"
        )
    f1 = run("f1", args.f1_size, args.tile)
    print(
        f"instances tiled vs untiled {args.f1_size}x{args.f1_size}: F1 {f1['f1']:.4f} "
        f"({f1['n_tiled']} vs {f1['n_untiled']} objects)"
    )
    blocks = run("blocks", 3072, args.tile)
    print(
        f"instances in 1024-px blocks vs whole-image watershed, 3072x3072: F1 {blocks['f1']:.4f} "
        f"({blocks['n_blocks']} vs {blocks['n_whole']} objects)"
    )
    if args.dask:
        d = run("dask", args.size, args.tile)
        print(
            f"dask (1024 chunks, threads) {args.size}: {d['seconds']:.1f} s incl. instances, peak RSS {d['peak_rss_gb']:.2f} GB"
        )
    if not args.no_big:
        big = run("tiled", args.big, args.tile)
        print(
            f"tiled {args.big}x{args.big}: {big['seconds']:.1f} s, peak RSS {big['peak_rss_gb']:.2f} GB (target < 3 GB)"
        )
        bigi = run("tiled+instances", args.big, args.tile)
        print(
            f"tiled + semantic + instances {args.big}x{args.big}: {bigi['seconds']:.1f} s, "
            f"peak RSS {bigi['peak_rss_gb']:.2f} GB, {bigi['n_objects']} objects"
        )


if __name__ == "__main__":
    main()
