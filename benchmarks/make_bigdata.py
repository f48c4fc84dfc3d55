"""Write a big uint8 OME-Zarr of real nuclei (and optionally the same pixels as TIFF tiles).

Run: ``.venv/bin/python benchmarks/make_bigdata.py --out big.zarr [--size 20000]
[--chunk 2048] [--tiles DIR] [--zarr-format 2] [--sources DIR ...]``

The image is a mosaic of 256 x 256 crops of real fluorescence images (``sample_data/``
and, when present, ``../shared/data/nuclei/train/images``; colour H&E images are left
out), each normalised to uint8 (0.5 / 99.8 percentiles) and randomly rotated / flipped.
Every chunk is made on its own from a seed and its position, so the whole image is
streamed to disk chunk by chunk (with a mean-downsampled pyramid) and memory stays far
below 1 GB. ``--tiles DIR`` also writes level 0 as ``tile_<row>_<col>.tif`` files of
``--chunk`` pixels (zlib), read back from the zarr so the pixels are the same.
Prints the time taken (wall clock and CPU of all threads), the peak RSS and the size on
disk.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CELL = 256
DEFAULT_SOURCES = (
    REPO / "sample_data",
    REPO.parent / "shared" / "data" / "nuclei" / "train" / "images",
    REPO.parents[1] / "shared" / "data" / "nuclei" / "train" / "images",
)


def fluorescence_images(folders) -> list[np.ndarray]:
    """uint8-normalised grayscale images of at least CELL x CELL from the folders' *.tif."""
    import tifffile

    images, seen = [], set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.tif")):
            if path.stem.endswith(("_labels", "_instances", "_semantic")):
                continue
            img = np.asarray(tifffile.imread(path))
            if img.ndim == 3 and img.shape[-1] in (3, 4):
                rgb = img[..., :3].astype(np.int32)
                if np.abs(rgb - rgb[..., :1]).max() > 2:  # real colour (H&E): skip
                    continue
                img = img[..., 0]
            if img.ndim != 2 or min(img.shape) < CELL:
                continue
            key = (img.shape, img.tobytes()[:4096])
            if key in seen:  # sample_data copies of train images
                continue
            seen.add(key)
            lo, hi = np.percentile(img, (0.5, 99.8))
            scaled = np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
            images.append(np.round(scaled * 255).astype(np.uint8))
    if not images:
        raise SystemExit(f"no grayscale .tif of at least {CELL}x{CELL} in {list(map(str, folders))}")
    return images


def make_chunk(sources, seed: int, y0: int, x0: int, height: int, width: int) -> np.ndarray:
    """One chunk: a grid of CELL-px crops; cell (i, j) of the whole image has its own seed."""
    out = np.empty((height, width), np.uint8)
    for cy in range(y0 // CELL, -(-(y0 + height) // CELL)):
        for cx in range(x0 // CELL, -(-(x0 + width) // CELL)):
            rng = np.random.default_rng((seed, cy, cx))
            src = sources[rng.integers(len(sources))]
            r, c = rng.integers(src.shape[0] - CELL + 1), rng.integers(src.shape[1] - CELL + 1)
            cell = np.rot90(src[r : r + CELL, c : c + CELL], rng.integers(4))
            if rng.random() < 0.5:
                cell = cell[:, ::-1]
            ys, xs = max(cy * CELL, y0), max(cx * CELL, x0)
            ye, xe = min((cy + 1) * CELL, y0 + height), min((cx + 1) * CELL, x0 + width)
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = cell[ys - cy * CELL : ye - cy * CELL,
                                                             xs - cx * CELL : xe - cx * CELL]  # fmt: skip
    return out


def lazy_mosaic(sources, height: int, width: int, chunk: int, seed: int):
    import dask.array as da

    def block(block_info=None):
        info = block_info[None]
        (y0, y1), (x0, x1) = info["array-location"]
        return make_chunk(sources, seed, y0, x0, y1 - y0, x1 - x0)

    return da.map_blocks(block, chunks=da.core.normalize_chunks(chunk, (height, width)),
                         dtype=np.uint8, meta=np.empty((0, 0), np.uint8))  # fmt: skip


def write_tiles(zarr_path: Path, folder: Path, chunk: int) -> int:
    """Level 0 of the zarr as ``tile_<row>_<col>.tif`` files (zlib), two at a time."""
    import dask
    import tifffile

    from napari_segkit.io_zarr import open_image

    folder.mkdir(parents=True, exist_ok=True)
    data = open_image(zarr_path, max_in_memory_pixels=0, block_size=chunk).data
    height, width = data.shape

    def write(tile: np.ndarray, name: str) -> None:
        tifffile.imwrite(folder / name, tile, compression="zlib")

    tasks = [dask.delayed(write)(data[y : y + chunk, x : x + chunk], f"tile_{i:03d}_{j:03d}.tif")
             for i, y in enumerate(range(0, height, chunk))
             for j, x in enumerate(range(0, width, chunk))]  # fmt: skip
    dask.compute(*tasks)
    return len(tasks)


def disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="OME-Zarr folder to write")
    p.add_argument("--size", type=int, default=20000, help="height (and width) in pixels")
    p.add_argument("--width", type=int, help="width, when not square")
    p.add_argument("--chunk", type=int, default=2048, help="zarr chunk edge (and TIFF tile size)")
    p.add_argument("--zarr-format", type=int, default=2, choices=[2, 3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiles", type=Path, help="also write level 0 as TIFF tiles into this folder")
    p.add_argument("--sources", type=Path, nargs="+", help="folders of source .tif images")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    from napari_segkit.io_zarr_write import write_image_zarr

    folders = args.sources or [d for d in DEFAULT_SOURCES if d.is_dir()]
    sources = fluorescence_images(folders)
    height, width = args.size, args.width or args.size
    t0, c0 = time.perf_counter(), time.process_time()
    image = lazy_mosaic(sources, height, width, args.chunk, args.seed)
    write_image_zarr(args.out, image, axes="yx", zarr_format=args.zarr_format,
                     chunks=(args.chunk, args.chunk), name="nuclei mosaic",
                     overwrite=args.overwrite)  # fmt: skip
    t_zarr, cpu_zarr = time.perf_counter() - t0, time.process_time() - c0
    result = {"shape": (height, width), "sources": len(sources), "zarr_s": t_zarr,
              "zarr_cpu_s": cpu_zarr, "zarr_bytes": disk_size(args.out)}  # fmt: skip
    if args.tiles:
        t1, c1 = time.perf_counter(), time.process_time()
        result["tiles"] = write_tiles(args.out, args.tiles, args.chunk)
        result["tiles_s"] = time.perf_counter() - t1
        result["tiles_cpu_s"] = time.process_time() - c1
        result["tiles_bytes"] = disk_size(args.tiles)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.out}: {height} x {width} uint8 from {len(sources)} source images, "
          f"chunks {args.chunk}, zarr format {args.zarr_format}: {t_zarr:.1f} s "
          f"({cpu_zarr:.1f} CPU s), {result['zarr_bytes'] / 1e6:.0f} MB on disk")  # fmt: skip
    if args.tiles:
        print(f"{args.tiles}: {result['tiles']} TIFF tiles in {result['tiles_s']:.1f} s "
              f"({result['tiles_cpu_s']:.1f} CPU s), {result['tiles_bytes'] / 1e6:.0f} MB")  # fmt: skip
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
