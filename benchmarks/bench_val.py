"""Scores on ../shared/data/nuclei/val: the shipped model, and 3-minute CPU fine-tunings.

(a) the shipped default model, on every val image and on the scoring split;
(b) the default model fine-tuned for --minutes on the CPU from clicks only (one click
    per nucleus near its centroid) on 10 val images, scored on the other 13;
(c) the same from full masks;
(d) (b) and (c) from scratch (``init=None``).
(b) and (c) hold 2 of the 10 images out and keep the weights that score best on them
(the starting model included); they are also run without a hold-out, keeping the last
weights, to show what the 3 minutes of training itself do.
(a) is also scored with test-time mirror averaging (``predict(..., tta=True)``).

F1 at IoU 0.5 and precision / recall pooled over the objects of all scored images, AP as
defined by the 2018 Data Science Bowl (mean over IoU 0.5:0.05:0.95 of TP/(TP+FP+FN),
averaged over images) and the median absolute count error per image.

Run: ``.venv/bin/python benchmarks/bench_val.py [--minutes 3] [--data ../shared/data/nuclei]``
(about 4 x minutes + 3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import measure

REPO = Path(__file__).resolve().parents[1]


def load_val(root: Path):
    import tifffile

    names = sorted(p.stem for p in (root / "val" / "images").glob("*.tif"))
    images = [tifffile.imread(root / "val" / "images" / f"{n}.tif") for n in names]
    labels = [tifffile.imread(root / "val" / "labels" / f"{n}.tif") for n in names]
    return names, images, labels


def clicks_near_centroids(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One click per nucleus: its centroid when inside it, else its innermost pixel; +-2 px."""
    clicks = []
    for region in measure.regionprops(labels):
        r0, c0 = region.bbox[:2]
        cr, cc = (int(round(v)) for v in region.centroid)
        if not region.image[cr - r0, cc - c0]:
            dist = ndi.distance_transform_edt(np.pad(region.image, 1))[1:-1, 1:-1]
            rr, c2 = np.unravel_index(np.argmax(dist), dist.shape)
            cr, cc = r0 + rr, c0 + c2
        jr, jc = cr + rng.integers(-2, 3), cc + rng.integers(-2, 3)
        if 0 <= jr < labels.shape[0] and 0 <= jc < labels.shape[1] and labels[jr, jc] == region.label:
            cr, cc = jr, jc
        clicks.append((cr, cc))
    return np.asarray(clicks, float)


def score(model, images, labels, tta: bool = False) -> dict:
    from napari_segkit.metrics import evaluate_instances, summarise
    from napari_segkit.prediction import predict

    rows = [evaluate_instances(gt, predict(model, im, tta=tta).instances)
            for im, gt in zip(images, labels)]
    s = summarise(rows)
    return {"f1": s["f1"], "precision": s["precision"], "recall": s["recall"],
            "ap_dsb": s["ap_dsb"], "median_abs_count_error": s["median_abs_count_error"],
            "n_images": len(rows), "n_gt": s["n_gt"]}


def fine_tune(images, labels, points, init, minutes: float, seed: int, **options):
    from napari_segkit.training import TrainConfig, train

    cfg = TrainConfig(time_budget_s=minutes * 60, steps=10**7, seed=seed, device="cpu",
                      num_threads=2, val_every=100, **options)
    gen = train(images, labels=labels, points=points, config=cfg, init=init)
    steps = 0
    while True:
        try:
            ev = next(gen)
            steps = ev.step
        except StopIteration as done:
            return done.value, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nuclei")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--runs", nargs="*", metavar="KEY",
                    help="only these trainings (keys: b b_unguided c b_last c_last d_clicks "
                         "d_masks); default: all")
    args = ap.parse_args()

    import torch

    from napari_segkit.model_io import load_default_model

    torch.set_num_threads(2)
    names, images, labels = load_val(args.data)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(names))
    train_idx, test_idx = sorted(order[:10]), sorted(order[10:])
    tr_x = [images[i] for i in train_idx]
    tr_y = [labels[i] for i in train_idx]
    te_x = [images[i] for i in test_idx]
    te_y = [labels[i] for i in test_idx]
    clicks = [(clicks_near_centroids(y, rng), None) for y in tr_y]
    n_clicks = sum(len(c) for c, _ in clicks)
    print(f"val/: {len(names)} images; fine-tuning on {len(train_idx)} images "
          f"({n_clicks} nuclei), scoring on {len(test_idx)} images ({sum(int(y.max()) for y in te_y)} nuclei); "
          f"{args.minutes:g} min per training on the CPU", flush=True)

    default = load_default_model()
    results = {
        "(a) default model, all 23 val images": score(default, images, labels),
        "(a) default model, the 13 scoring images": score(default, te_x, te_y),
        "(a) same, all 23, mirror averaging (tta)": score(default, images, labels, tta=True),
    }
    last = {"val_fraction": 0.0}  # no hold-out: all 10 images train, the last weights are kept
    runs = [
        ("b", "(b) default + clicks", None, clicks, "default", {}),
        ("b_unguided", "(b') same, clicks not guided by the model", None, clicks, "default",
         {"click_guidance": False}),
        ("c", "(c) default + masks", tr_y, None, "default", {}),
        ("b_last", "(b) clicks, no hold-out, last weights", None, clicks, "default", last),
        ("c_last", "(c) masks, no hold-out, last weights", tr_y, None, "default", last),
        ("d_clicks", "(d) scratch + clicks", None, clicks, None, {}),
        ("d_masks", "(d) scratch + masks", tr_y, None, None, {}),
    ]
    for key, name, lab, pts, init, options in runs:
        if args.runs is not None and key not in args.runs:
            continue
        t0 = time.perf_counter()
        model, steps = fine_tune(tr_x, lab, pts, init, args.minutes, args.seed, **options)
        kept = model.provenance.get("training", {}).get("best", {}).get("step")
        results[name] = {**score(model, te_x, te_y), "steps": steps, "kept_step": kept,
                         "train_s": round(time.perf_counter() - t0, 1)}
        print(f"{name}: done ({steps} steps)", flush=True)

    print(f"\n{'':<42} {'F1@0.5':>7} {'prec':>6} {'recall':>6} {'AP(DSB)':>8} "
          f"{'|count err| med':>15} {'steps (kept)':>13}")
    for name, r in results.items():
        steps = f"{r['steps']} ({r['kept_step']})" if "steps" in r else ""
        print(f"{name:<42} {r['f1']:>7.3f} {r['precision']:>6.3f} {r['recall']:>6.3f} "
              f"{r['ap_dsb']:>8.3f} {r['median_abs_count_error']:>15.1f} {steps:>13}")
    print("steps (kept): optimiser steps in the time budget (the step whose weights were "
          "kept, by the held-out score; 0 = the starting model)")
    print("targets: (a) F1 >= 0.78, (b) F1 >= 0.78, (c) F1 >= 0.80")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
