"""Instant pixel classifier: time on a 1024x1024 image, accuracy from a few strokes.

1. Time: fluo_512 tiled 2x2 (1024x1024, 500 nuclei) and he_rgb tiled to 1024x1024x3,
   20 + 20 simulated strokes. "cold" = a new classifier: features + training + predicting
   every pixel; "per stroke" = what a live preview pays after each new stroke (features
   cached: training + prediction). Best and median of --repeats, with the load average.
2. Accuracy: foreground IoU against the ground truth of fluo_512 and he_rgb for strokes in
   n nuclei + n background gaps (``simulate_scribbles``), mean +- sd over 10 seeds of the
   background strokes; with --val, the same over the images of ../shared/data/nuclei/val.

Run:  .venv/bin/python benchmarks/bench_pixel_classifier.py [--repeats 5] [--val DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from napari_segkit._sample import sample_path
from napari_segkit.io import read_image, read_labels
from napari_segkit.pixel_classifier import PixelClassifier, simulate_scribbles
from napari_segkit.pixel_features import pixel_features


def tile_labels(labels: np.ndarray, reps: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Tile an instance image, giving every copy of an object its own id."""
    tiles = [[labels + (labels > 0) * labels.max() * (i * reps[1] + j) for j in range(reps[1])]
             for i in range(reps[0])]
    return np.block(tiles)[: shape[0], : shape[1]]


def load_1024(name: str) -> tuple[np.ndarray, np.ndarray]:
    image, labels = read_image(sample_path(f"{name}.tif")), read_labels(sample_path(f"{name}_labels.tif"))
    reps = (-(-1024 // image.shape[0]), -(-1024 // image.shape[1]))
    big = np.tile(image, reps + (1,) * (image.ndim - 2))[:1024, :1024]
    return big, tile_labels(labels, reps, (1024, 1024))


def timings(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def bench_time(name: str, repeats: int) -> None:
    image, labels = load_1024(name)
    strokes = simulate_scribbles(labels, 20, 20, seed=0)
    print(f"\n{name} tiled to {image.shape} {image.dtype}, {int(labels.max())} nuclei, "
          f"strokes {int((strokes > 0).sum())} px")

    def cold(stride: int):
        clf = PixelClassifier(stride=stride)
        clf.fit(image, strokes)
        return clf.predict_proba(image)

    for stride in (2, 1):
        best, med = timings(lambda s=stride: cold(s), repeats)
        print(f"  cold fit + predict_proba, stride {stride}: best {best:.2f} s, median {med:.2f} s")
    best, med = timings(lambda: pixel_features(image), repeats)
    print(f"  of which features: best {best:.2f} s, median {med:.2f} s")
    warm = PixelClassifier().fit(image, strokes)
    best, med = timings(lambda: warm.fit(image, strokes).predict_proba(image), repeats)
    print(f"  per stroke (features cached) fit + predict_proba: best {best:.2f} s, median {med:.2f} s")
    fg = warm.predict(image) == 2
    print(f"  foreground IoU vs ground truth: {iou(fg, labels > 0):.3f}")


def bench_accuracy(name: str, image: np.ndarray, labels: np.ndarray, counts, seeds=range(10)) -> None:
    for n in counts:
        scores, pixels = [], []
        for seed in seeds:
            strokes = simulate_scribbles(labels, n, n, seed=seed)
            fg = PixelClassifier().fit(image, strokes).predict(image) == 2
            scores.append(iou(fg, labels > 0))
            pixels.append(int((strokes > 0).sum()))
        print(f"  {name}: {n} + {n} strokes ({np.mean(pixels):.0f} px, "
              f"{100 * np.mean(pixels) / labels.size:.2f} %): IoU {np.mean(scores):.3f} "
              f"+- {np.std(scores):.3f} (min {np.min(scores):.3f}, seed 0 {scores[0]:.3f})")


def bench_val(folder: Path) -> None:
    import tifffile

    scores = []
    paths = sorted((folder / "images").glob("*.tif"))
    for path in paths:
        image, labels = tifffile.imread(path), tifffile.imread(folder / "labels" / path.name)
        for seed in range(3):
            strokes = simulate_scribbles(labels, 10, 10, seed=seed)
            fg = PixelClassifier().fit(image, strokes).predict(image) == 2
            scores.append(iou(fg, labels > 0))
    per_image = np.asarray(scores).reshape(len(paths), 3).mean(axis=1)
    print(f"  {folder}: {len(paths)} images, 10 + 10 strokes, 3 seeds: IoU mean "
          f"{np.mean(scores):.3f} +- {np.std(scores):.3f}, per image median "
          f"{np.median(per_image):.3f}, min {per_image.min():.3f}, "
          f">= 0.8 on {int((per_image >= 0.8).sum())} / {len(paths)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--val", type=Path, default=None, help="folder with images/ and labels/")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    print(f"cpus {os.cpu_count()}, load average before {os.getloadavg()}")
    for name in ("fluo_512", "he_rgb"):
        bench_time(name, args.repeats)
    print(f"load average after timing {os.getloadavg()}")
    if not args.skip_accuracy:
        print("\naccuracy (foreground IoU vs ground truth, 10 seeds of the background strokes)")
        for name in ("fluo_512", "he_rgb"):
            image = read_image(sample_path(f"{name}.tif"))
            labels = read_labels(sample_path(f"{name}_labels.tif"))
            bench_accuracy(name, image, labels, (4, 6, 8, 10, 12))
        if args.val is not None:
            bench_val(args.val)


if __name__ == "__main__":
    main()
