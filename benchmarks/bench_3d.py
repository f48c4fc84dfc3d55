"""3-D figures: F1 at IoU 0.5, AP and count error of 3-D instances on held-out stacks.

Stacks: 3 synthetic stacks (32 x 128 x 128, voxels 1 x 0.25 x 0.25 um, seeds 7101-7103,
used nowhere else: not in tests, not in the sample data, not to choose any setting) and
the StarDist test stack (../shared/data/nuclei3d, BSD-3; its file records no spacing:
(2, 1, 1) is taken from its nuclei's median extents, 7 planes x 15 x 14 pixels).

Rows:
(a) clicks -> masks: one click per ground-truth nucleus (its innermost voxel in physical
    distance, moved by up to 1 voxel in y and x, seeded), converted by
    ``annotations.clicks_to_labels`` (3-D seeded watershed in physical units);
baseline: the shipped default 2-D model predicting the stack slice by slice, its objects
    joined in 3-D by ``predict(..., scale=...)`` (``instances3d.stack_instances``), and,
    for comparison, the 2-D rule applied to the volume (``stack_method="centre"``, the
    behaviour before 3-D instances).
Rows (b) and (c) of issue 11 (a model trained on stacks from masks / from clicks) are not
here: training on stacks is not implemented yet.

AP is the Data Science Bowl average precision over IoU thresholds 0.5-0.95
(``metrics.average_precision_dsb``). Count error = predicted - true objects.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_3d.py [--stardist DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage import measure

from napari_segkit.annotations import clicks_to_labels
from napari_segkit.instances3d import stack_instances
from napari_segkit.metrics import evaluate_instances
from napari_segkit.synthetic import synthetic_nuclei_stack

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEEDS = (7101, 7102, 7103)
STARDIST_SPACING = (2.0, 1.0, 1.0)


def clicks_of(labels: np.ndarray, spacing, rng: np.random.Generator) -> np.ndarray:
    """One (z, y, x) click per object: its innermost voxel, jittered by <= 1 voxel in y, x."""
    clicks = []
    for region in measure.regionprops(labels):
        dist = ndi.distance_transform_edt(np.pad(region.image, 1), sampling=spacing)
        at = np.array(np.unravel_index(np.argmax(dist[1:-1, 1:-1, 1:-1]), region.image.shape))
        moved = at + np.concatenate([[0], rng.integers(-1, 2, size=2)])
        if np.all((moved >= 0) & (moved < region.image.shape)) and region.image[tuple(moved)]:
            at = moved
        clicks.append(np.asarray(region.bbox[:3]) + at)
    return np.asarray(clicks, dtype=float)


def stacks(stardist: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple]]:
    out = []
    for seed in HELD_OUT_SEEDS:
        s = synthetic_nuclei_stack((32, 128, 128), spacing=(1.0, 0.25, 0.25), seed=seed)
        out.append((f"synthetic seed {seed}", s.image, s.labels, s.spacing))
    if (stardist / "image.tif").is_file():
        out.append(("StarDist stack", tifffile.imread(stardist / "image.tif"),
                    tifffile.imread(stardist / "labels.tif"), STARDIST_SPACING))
    else:
        print(f"(no StarDist stack in {stardist}: skipped)")
    return out


def row(name: str, method: str, gt: np.ndarray, pred: np.ndarray, seconds: float) -> dict:
    r = evaluate_instances(gt, pred)
    print(f"| {name:20s} | {method:34s} | {len(np.unique(gt)) - 1:4d} | "
          f"{r['f1']:.3f} | {r['ap_dsb']:.3f} | {r['count_error']:+4d} | "
          f"{r['mean_matched_iou']:.3f} | {seconds:6.2f} |")
    return {"stack": name, "method": method, **r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stardist", type=Path, default=REPO.parent / "shared/data/nuclei3d")
    ap.add_argument("--model", type=Path,
                    default=REPO / "napari_segkit/models/default_nuclei.safetensors")
    args = ap.parse_args()
    import torch

    from napari_segkit.model_io import load_model
    from napari_segkit.prediction import predict

    torch.set_num_threads(1)
    model = load_model(args.model)
    k = model.config.n_classes
    print("| stack | method | GT | F1@0.5 | AP | count err | mean IoU | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for i, (name, image, gt, spacing) in enumerate(stacks(args.stardist)):
        clicks = clicks_of(gt, spacing, np.random.default_rng(1000 + i))
        t = time.perf_counter()
        masks = clicks_to_labels(image, clicks, scale=spacing)
        results.append(row(name, "(a) clicks -> masks", gt, masks, time.perf_counter() - t))
        t = time.perf_counter()
        probs = predict(model, image, instances=False).probabilities
        t_probs = time.perf_counter() - t
        t = time.perf_counter()
        joined = stack_instances(probs, k, scale=spacing)
        results.append(row(name, "baseline: default 2-D model, 3-D", gt, joined,
                           t_probs + time.perf_counter() - t))
        t = time.perf_counter()
        columns = stack_instances(probs, k, stack_method="centre")
        results.append(row(name, "  same, 2-D rule on the volume", gt, columns,
                           t_probs + time.perf_counter() - t))
    print()
    for method in dict.fromkeys(r["method"] for r in results):
        syn = [r for r in results if r["method"] == method and r["stack"].startswith("synth")]
        f1 = np.array([r["f1"] for r in syn])
        ap_ = np.array([r["ap_dsb"] for r in syn])
        ce = np.array([r["count_error"] for r in syn])
        print(f"{method.strip():34s} synthetic mean +- sd over {len(syn)} stacks: "
              f"F1 {f1.mean():.3f} +- {f1.std():.3f}, AP {ap_.mean():.3f} +- {ap_.std():.3f}, "
              f"count error {ce.mean():+.1f} +- {ce.std():.1f}")
    print("(b), (c) (models trained on stacks from masks / clicks): not implemented.")


if __name__ == "__main__":
    main()
