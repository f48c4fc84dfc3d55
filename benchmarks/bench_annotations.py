"""Time annotation conversions on the dense sample (520x696, 369 nuclei).

1. Polygons -> labels: one polygon per ground-truth nucleus (its contour from
   skimage.measure.find_contours), all filled at once.
2. Clicks -> instance masks: the sample's one click per nucleus (+ background clicks),
   with F1 at IoU 0.5 against the ground truth.

Run:  .venv/bin/python benchmarks/bench_annotations.py
"""

from __future__ import annotations

import time

import numpy as np
from skimage import measure

from napari_segkit._sample import sample_path
from napari_segkit.annotations import clicks_to_labels, clicks_to_sparse_labels, polygons_to_labels
from napari_segkit.io import read_image, read_labels, read_points_csv
from napari_segkit.metrics import match_instances


def nucleus_polygons(labels: np.ndarray) -> list[np.ndarray]:
    """One closed contour (row, col) per labelled object."""
    polygons = []
    for region in measure.regionprops(labels):
        r0, c0, _, _ = region.bbox
        contour = measure.find_contours(np.pad(region.image, 1).astype(float), 0.5)
        contour = max(contour, key=len) - 1 + [r0, c0]
        polygons.append(contour)
    return polygons


def best_of(fn, repeats: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    image = read_image(sample_path("fluo_dense.tif"))
    gt = read_labels(sample_path("fluo_dense_labels.tif"))
    polygons = nucleus_polygons(gt)
    n_vertices = sum(len(p) for p in polygons)
    seconds, labels = best_of(lambda: polygons_to_labels(polygons, gt.shape))
    match = match_instances(gt, labels, iou_threshold=0.5)
    print(f"image {gt.shape}, {len(polygons)} nucleus outlines ({n_vertices} vertices)")
    print(
        f"polygons -> labels: {seconds * 1000:.1f} ms (best of 5); "
        f"F1 vs GT {match.f1:.3f}, mean IoU {match.mean_matched_iou:.3f}"
    )

    coords, features = read_points_csv(sample_path("fluo_dense_points.csv"))
    classes = features["class"]
    seconds, labels = best_of(lambda: clicks_to_labels(image, coords, classes=classes), repeats=3)
    match = match_instances(gt, labels, iou_threshold=0.5)
    n_obj = int((classes == "nucleus").sum())
    print(
        f"clicks -> masks: {n_obj} clicks (+{len(coords) - n_obj} background) in "
        f"{seconds * 1000:.0f} ms (best of 3); F1@0.5 {match.f1:.3f}, "
        f"precision {match.precision:.3f}, recall {match.recall:.3f}, "
        f"mean matched IoU {match.mean_matched_iou:.3f}"
    )
    seconds, _ = best_of(lambda: clicks_to_sparse_labels(image, coords, classes=classes), repeats=3)
    print(f"clicks -> sparse labels: {seconds * 1000:.0f} ms (best of 3)")
    val_clicks_to_masks()


def val_clicks_to_masks() -> None:
    """Clicks -> masks on every val/ image (one click per nucleus near its centroid)."""
    from pathlib import Path

    import tifffile

    from napari_segkit.annotations import clicks_to_labels
    from napari_segkit.metrics import evaluate_instances, summarise

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei" / "val"
    if not root.is_dir():
        print(f"(no {root}: skipped the val/ figure)")
        return
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_val import clicks_near_centroids

    rng = np.random.default_rng(0)
    rows, f1s = [], []
    for f in sorted((root / "images").glob("*.tif")):
        image, gt = tifffile.imread(f), tifffile.imread(root / "labels" / f.name)
        pred = clicks_to_labels(image, clicks_near_centroids(gt, rng))
        rows.append(evaluate_instances(gt, pred))
        f1s.append(rows[-1]["f1"])
    s = summarise(rows)
    print(f"clicks -> masks on val/ ({len(rows)} images, {s['n_gt']} nuclei): F1@0.5 pooled "
          f"{s['f1']:.3f}, per image mean {np.mean(f1s):.3f} / median {np.median(f1s):.3f}, "
          f"AP(DSB) {s['ap_dsb']:.3f}, mean matched IoU {s['mean_matched_iou']:.3f}")


if __name__ == "__main__":
    main()
