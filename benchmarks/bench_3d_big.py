"""``bench_3d.py --big``: time and peak memory of predicting a 64 x 1024 x 1024 stack.

The stack is synthetic (``synthetic_nuclei_stack``, 4 tiles of 64 x 256 x 256 made from
seeds 9101-9104, repeated 4 x 4 with rotations) and written tile by tile to a zarr array
(chunks 64 x 512 x 512) in a temporary folder, so no step holds it whole. A child
process then opens it as a dask array, predicts it with the default model on the dask
path (``predict(model, darr, scale=...)``: blocks of one chunk plus a margin of 64
pixels, 3-D instances owned by the block that holds their centre) and stores the instance labels to another zarr array,
with dask's synchronous scheduler and ``--threads`` torch threads. The child reports
its wall time and peak resident set size (``ru_maxrss``), and the objects found.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_3d.py --big --threads 2
      (or: python benchmarks/bench_3d_big.py [--shape 64 1024 1024] [--threads 2])
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPACING = (1.0, 0.25, 0.25)
TILE = 256  # synthesised tiles
CHUNK = 512  # zarr chunks = dask blocks


def write_stack(path: Path, shape: tuple[int, int, int], n_tiles: int = 4) -> None:
    """A synthetic stack written tile by tile to a zarr array of (Z, 512, 512) chunks."""
    import zarr

    from napari_segkit.synthetic import synthetic_nuclei_stack

    z, h, w = shape
    if h % TILE or w % TILE:
        raise ValueError(f"y and x must be multiples of {TILE}, got {shape}")
    out = zarr.open_array(str(path), mode="w", shape=shape,
                          chunks=(z, min(CHUNK, h), min(CHUNK, w)),
                          dtype="uint16")
    tiles = [synthetic_nuclei_stack((z, TILE, TILE), spacing=SPACING, seed=9101 + i).image
             for i in range(n_tiles)]
    for i in range(h // TILE):
        for j in range(w // TILE):
            tile = np.rot90(tiles[(i * 7 + j) % n_tiles], k=(i + j) % 4, axes=(1, 2))
            out[:, i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] = tile


def child(stack_path: Path, labels_path: Path, model_path: Path, threads: int) -> dict:
    """Predict the zarr stack lazily, store its labels; time, peak RSS, objects."""
    import dask
    import dask.array as da
    import torch

    from napari_segkit.model_io import load_model
    from napari_segkit.prediction import predict

    torch.set_num_threads(threads)
    model = load_model(model_path)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    darr = da.from_zarr(str(stack_path))
    t = time.perf_counter()
    labels = predict(model, darr, scale=SPACING).instances
    with dask.config.set(scheduler="synchronous"):
        da.to_zarr(labels, str(labels_path), overwrite=True)
    seconds = time.perf_counter() - t
    stored = da.from_zarr(str(labels_path))
    ids: set[int] = set()
    for block in stored.blocks:
        ids |= set(np.unique(block.compute()).tolist())
    return {"shape": list(darr.shape), "chunks": [c[0] for c in darr.chunks],
            "threads": threads, "seconds": round(seconds, 1),
            "voxels_per_s": round(float(np.prod(darr.shape)) / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_after_model_load_mb": round(rss_start), "objects": len(ids - {0})}


def predict_big(model_path: Path, threads: int, shape=(64, 1024, 1024)) -> dict:
    """Write the stack, predict it in a child process, print and return the figures."""
    with tempfile.TemporaryDirectory(prefix="segkit-big3d-") as tmp:
        stack_path, labels_path = Path(tmp) / "stack.zarr", Path(tmp) / "labels.zarr"
        t = time.perf_counter()
        write_stack(stack_path, tuple(shape))
        print(f"wrote a {' x '.join(map(str, shape))} synthetic stack in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(stack_path), str(labels_path),
             str(model_path), str(threads)],
            capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"the prediction failed:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"predicted {' x '.join(map(str, figures['shape']))} (chunks "
          f"{' x '.join(map(str, figures['chunks']))}) with {threads} thread(s): "
          f"{figures['seconds']} s ({figures['voxels_per_s'] / 1e6:.2f} Mvoxel/s), peak RSS "
          f"{figures['peak_rss_mb']} MB ({figures['rss_after_model_load_mb']} MB after loading "
          f"the model), {figures['objects']} objects")
    print(json.dumps(figures))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=4, metavar=("STACK", "LABELS", "MODEL", "THREADS"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 1024, 1024])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path,
                    default=REPO / "napari_segkit/models/default_nuclei.safetensors")
    args = ap.parse_args()
    if args.child:
        stack, labels, model, threads = args.child
        print(json.dumps(child(Path(stack), Path(labels), Path(model), int(threads))))
        return
    predict_big(args.model, args.threads, tuple(args.shape))


if __name__ == "__main__":
    main()
