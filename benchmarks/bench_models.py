"""Architectures x losses side by side: the same training budget, scored on val/.

Every run trains a new depth-4, width-16 network on ``train/`` + ``sample_512/`` (never
val/) with the default-model recipe (patches of 128, batches of 8, zoom augmentation
0.5-2, AdamW 3e-3 with warm-up and cosine decay) for the same number of optimiser steps
on one CPU thread, keeps the final weights (nothing is chosen on val/) and is scored on
``val/`` through ``prediction.predict`` (default post-processing, unless ``--postprocess``
names a JSON of settings). "Same budget" = same steps, batch and patch; seconds per step
are printed so the cost is visible (indicative only: the machine is shared).

The default plan: every architecture with the default loss, every loss with the default
architecture, each for ``--seeds`` (mean +- sd over seeds). Each finished run is cached
in ``--results`` (JSON, git-ignored) with its model file beside it, so the script can be
stopped and resumed, and run in parts::

    python benchmarks/bench_models.py --steps 1500 --seeds 0 1            # train what is missing, print the table
    python benchmarks/bench_models.py --archs unext --losses focal         # a subset
    python benchmarks/bench_models.py --table                              # only print the cached table

CPU inference time: one 1024 x 1024 image (a val/ image tiled), ``predict`` with the
default tiling and post-processing, ``--time-threads`` threads (default 2), median of 3,
measured once per architecture on a trained model of the run set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# ../shared beside a checkout of the repository (the main tree), else the worktrees' one
DATA = next((p for p in (REPO.parent / "shared" / "data" / "nuclei",
                         REPO.parents[1] / "shared" / "data" / "nuclei") if p.is_dir()),
            REPO.parent / "shared" / "data" / "nuclei")
RESULTS = REPO / "benchmarks" / "results" / "bench_models.json"
DEFAULT_ARCH, DEFAULT_LOSS = "unet", "ce_dice"


def load_split(root: Path, split: str):
    import tifffile

    names = sorted(p.stem for p in (root / split / "images").glob("*.tif"))
    if not names:
        raise SystemExit(f"no images in {root / split / 'images'}; pass --data")
    images = [tifffile.imread(root / split / "images" / f"{n}.tif") for n in names]
    labels = [tifffile.imread(root / split / "labels" / f"{n}.tif") for n in names]
    return names, images, labels


def run_key(arch: str, loss: str, seed: int, steps: int, batch: int, patch: int) -> str:
    return f"{arch}|{loss}|seed{seed}|steps{steps}|b{batch}p{patch}"


def train_one(arch, loss, seed, steps, batch, patch, threads, tr_x, tr_y, deep_supervision=False):
    """Train one network; returns (model, seconds per step)."""
    from napari_segkit.model import UNetConfig
    from napari_segkit.training import TrainConfig, train

    cfg = TrainConfig(
        steps=steps, patch_size=patch, batch_size=batch, lr=3e-3, seed=seed, device="cpu",
        num_threads=threads, val_fraction=0.0, scale_range=(0.5, 2.0), loss=loss,
        model=UNetConfig(arch=arch, depth=4, width=16, deep_supervision=deep_supervision),
    )
    t0 = time.perf_counter()
    model = None
    for ev in train(tr_x, tr_y, config=cfg):
        if ev.kind == "step" and ev.step % 250 == 0:
            print(f"  step {ev.step} loss {ev.loss:.3f} {ev.elapsed_s / ev.step:.2f} s/step", flush=True)
        if ev.model is not None:
            model = ev.model
    return model, (time.perf_counter() - t0) / steps


def score(model, images, labels, postprocess: dict | None = None) -> dict:
    from napari_segkit.instance_errors import split_merge_counts, summarise_split_merge
    from napari_segkit.metrics import evaluate_instances, summarise
    from napari_segkit.prediction import predict

    rows, errors = [], []
    for im, gt in zip(images, labels, strict=True):
        pred = predict(model, im, **(postprocess or {})).instances
        rows.append(evaluate_instances(gt, pred))
        errors.append(split_merge_counts(gt, pred))
    s = summarise(rows)
    sm = summarise_split_merge(errors)
    return {"f1": s["f1"], "precision": s["precision"], "recall": s["recall"], "ap_dsb": s["ap_dsb"],
            "split_gt": sm["split_gt"], "merged_gt": sm["merged_gt"]}


def time_1024(model, image: np.ndarray, threads: int, repeats: int = 3) -> float:
    import torch

    from napari_segkit.prediction import predict

    reps = (1024 // image.shape[0] + 1, 1024 // image.shape[1] + 1) + (1,) * (image.ndim - 2)
    big = np.ascontiguousarray(np.tile(image, reps)[:1024, :1024])
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predict(model, big)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict(model, big)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(prev)
    return float(np.median(times))


def plan(archs, losses, seeds) -> list[tuple[str, str, int]]:
    """Every arch with the default loss, every loss with the default arch (and with every
    other arch named in ``archs`` only when ``--full`` asks), seed-major order so that
    one seed of everything comes first."""
    pairs = [(a, DEFAULT_LOSS) for a in archs if DEFAULT_LOSS in losses]
    pairs += [(DEFAULT_ARCH, loss) for loss in losses if loss != DEFAULT_LOSS and DEFAULT_ARCH in archs]
    return [(a, loss, s) for s in seeds for a, loss in pairs]


def _mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f}±{statistics.stdev(values):.3f}"


def print_table(results: dict, steps: int, batch: int, patch: int, seeds,
                time_threads: int = 2) -> None:
    groups: dict[tuple[str, str], list[dict]] = {}
    for key, r in results.get("runs", {}).items():
        arch, loss, seed, st, bp = key.split("|")
        if st != f"steps{steps}" or bp != f"b{batch}p{patch}" or int(seed[4:]) not in seeds:
            continue
        groups.setdefault((arch, loss), []).append(r)
    timing = results.get("time_1024", {})
    print(f"\n{steps} steps x batch {batch} x patch {patch}, train/ + sample_512, scored on val/ "
          f"(23 images, 1472 nuclei); mean±sd over seeds")
    head = (f"{'arch':<10} {'loss':<13} {'seeds':>5} {'params':>7} {'s/step':>6} {'1024² s':>7} "
            f"{'F1@0.5':>12} {'AP(DSB)':>12} {'precision':>12} {'recall':>12} {'split':>6} {'merged':>6}")
    print(head)
    print("-" * len(head))
    for (arch, loss), rs in sorted(groups.items()):
        t = timing.get(arch)
        print(f"{arch:<10} {loss:<13} {len(rs):>5} {rs[0]['params'] / 1e6:>6.2f}M "
              f"{statistics.mean(r['s_per_step'] for r in rs):>6.2f} "
              f"{(f'{t:.2f}' if t else '-'):>7} "
              f"{_mean_sd([r['f1'] for r in rs]):>12} {_mean_sd([r['ap_dsb'] for r in rs]):>12} "
              f"{_mean_sd([r['precision'] for r in rs]):>12} {_mean_sd([r['recall'] for r in rs]):>12} "
              f"{statistics.mean(r['split_gt'] for r in rs):>6.0f} "
              f"{statistics.mean(r['merged_gt'] for r in rs):>6.0f}")
    print("split: GT nuclei broken into >= 2 predicted objects; merged: GT nuclei inside a "
          "predicted object that holds >= 2 (instance_errors.split_merge_counts), mean over seeds")
    print("s/step: 1 thread on a shared 2-core machine (indicative); 1024² s: predict() of a "
          f"1024 x 1024 image incl. post-processing, {time_threads} threads (--time-threads)")


def main() -> None:
    from napari_segkit.losses import LOSSES
    from napari_segkit.nets import ARCHITECTURES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--archs", nargs="*", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    ap.add_argument("--losses", nargs="*", default=["ce_dice", "bce_dice", "jaccard", "focal"],
                    choices=LOSSES)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--time-threads", type=int, default=2, help="torch threads for the 1024² timing")
    ap.add_argument("--table", action="store_true", help="only print the cached table")
    ap.add_argument("--runs", nargs="*", metavar="ARCH:LOSS",
                    help="explicit (arch, loss) pairs instead of the default plan")
    args = ap.parse_args()

    import torch

    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results.setdefault("runs", {})
    results.setdefault("time_1024", {})

    def save():
        args.results.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.results.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.results)

    if not args.table:
        from napari_segkit.model_io import load_model, save_model

        _, tr_x, tr_y = load_split(args.data, "train")
        _, s_x, s_y = load_split(args.data, "sample_512")
        _, va_x, va_y = load_split(args.data, "val")
        todo = plan(args.archs, args.losses, args.seeds)
        if args.runs:
            pairs = [tuple(r.split(":")) for r in args.runs]
            todo = [(a, loss, s) for s in args.seeds for a, loss in pairs]
        for arch, loss, seed in todo:
            key = run_key(arch, loss, seed, args.steps, args.batch, args.patch)
            if key in results["runs"]:
                continue
            print(f"{key}: training", flush=True)
            torch.set_num_threads(args.threads)
            model, sps = train_one(arch, loss, seed, args.steps, args.batch, args.patch,
                                   args.threads, tr_x + s_x, tr_y + s_y)
            model_path = args.results.parent / "models" / (key.replace("|", "_") + ".safetensors")
            save_model(model, model_path)
            r = score(model, va_x, va_y)
            r.update(s_per_step=sps, params=sum(p.numel() for p in model.net.parameters()),
                     model=str(model_path.relative_to(args.results.parent)))
            results["runs"][key] = r
            save()
            print(f"{key}: F1 {r['f1']:.3f} AP {r['ap_dsb']:.3f} P {r['precision']:.3f} "
                  f"R {r['recall']:.3f} ({sps:.2f} s/step)", flush=True)
        for arch in args.archs:
            if arch in results["time_1024"]:
                continue
            keys = [k for k in results["runs"] if k.startswith(f"{arch}|")]
            if keys:
                model = load_model(args.results.parent / results["runs"][keys[0]]["model"])
                results["time_1024"][arch] = time_1024(model, va_x[7], args.time_threads)
                save()
    print_table(results, args.steps, args.batch, args.patch, args.seeds, args.time_threads)


if __name__ == "__main__":
    main()
