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
(b) ``--train masks``: a 2-D model trained on the planes of 4 synthetic training stacks
    (seeds 7201-7204, disjoint from the scored ones) with their 3-D instance labels
    (``training.train(stacks, labels, scale=...)``), a STEP budget standing for 5 CPU
    minutes at 1 thread (``--steps``), from scratch or fine-tuning the default model
    (``--init``), xy planes or all three orientations (``--planes``), per ``--seeds``;
(c) ``--train clicks``: the same from one click per nucleus of the training stacks.
Trained rows print per seed and stack, then mean +- sd over the seeds (each seed's
figure the mean over the 3 synthetic stacks); ``--json`` appends them to a file.
``--big``: time and peak RSS of predicting a 64 x 1024 x 1024 synthetic stack made lazily
as dask (chunks synthesised on demand) on the dask path, labels stored to a zarr.

AP is the Data Science Bowl average precision over IoU thresholds 0.5-0.95
(``metrics.average_precision_dsb``). Count error = predicted - true objects.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_3d.py [--stardist DIR]
      ... bench_3d.py --train masks --init scratch --planes xy --steps 200 --seeds 0 1
      ... bench_3d.py --big --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage import measure

from napari_segkit.annotations import clicks_to_labels
from napari_segkit.instances3d import stack_instances
from napari_segkit.metrics import evaluate_instances
from napari_segkit.model_io import load_model
from napari_segkit.prediction import predict
from napari_segkit.synthetic import synthetic_nuclei_stack

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEEDS = (7101, 7102, 7103)
TRAIN_SEEDS = (7201, 7202, 7203, 7204)
DEV_SEEDS = (7301, 7302, 7303)  # --dev: stacks for design choices, never reported as results
SPACING = (1.0, 0.25, 0.25)
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
        s = synthetic_nuclei_stack((32, 128, 128), spacing=SPACING, seed=seed)
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
          f"{r['mean_matched_iou'] or 0.0:.3f} | {seconds:6.2f} |")
    return {"stack": name, "method": method, **r}


def train_row(args, stacks_scored, model_path: Path) -> list[dict]:
    """(b) / (c): train per seed on the training stacks, score on the held-out stacks."""
    from napari_segkit.training import TrainConfig, train

    train_stacks = [synthetic_nuclei_stack((32, 128, 128), spacing=SPACING, seed=s)
                    for s in TRAIN_SEEDS]
    labels = [s.labels for s in train_stacks] if args.train == "masks" else None
    points = None if args.train == "masks" else [
        clicks_of(s.labels, SPACING, np.random.default_rng(2000 + i))
        for i, s in enumerate(train_stacks)]
    init = None if args.init == "scratch" else str(model_path)
    method = f"({'b' if args.train == 'masks' else 'c'}) {args.train}, {args.init}, {args.planes}"
    if args.overrides:
        method += ", " + ", ".join(f"{k}={v}" for k, v in args.overrides.items())
    out = []
    for seed in args.seeds:
        cfg = TrainConfig(steps=args.steps, seed=seed, num_threads=args.threads,
                          stack_planes=args.planes, val_every=50, **args.overrides)
        t = time.perf_counter()
        model = None
        for event in train([s.image for s in train_stacks], labels, points, config=cfg,
                           init=init, scale=SPACING):
            model = event.model if event.model is not None else model
        seconds = time.perf_counter() - t
        print(f"seed {seed}: {args.steps} steps in {seconds:.0f} s "
              f"({args.steps / seconds:.2f} steps/s incl. validation), kept step "
              f"{event.kept_step}" + (f" (a blend, {event.blend:g} of the way from the start)"
                                      if event.blend else "") + f", held-out F1 {event.val_f1}")
        for name, image, gt, spacing in stacks_scored:
            t = time.perf_counter()
            pred = predict(model, image, scale=spacing).instances
            r = row(name, f"{method} s{seed}", gt, pred, time.perf_counter() - t)
            out.append({**r, "seed": seed, "config": method, "steps": args.steps,
                        "train_s": seconds, "kept_step": event.kept_step,
                        "blend": event.blend})
    return out


def summary(results: list[dict]) -> None:
    """Mean +- sd over seeds of the per-seed synthetic mean, and of the StarDist figure."""
    for config in dict.fromkeys(r["config"] for r in results):
        mine = [r for r in results if r["config"] == config]
        seeds = sorted({r["seed"] for r in mine})
        for group, test in (("synthetic", lambda r: r["stack"].startswith("synth")),
                            ("StarDist", lambda r: not r["stack"].startswith("synth"))):
            per_seed = [[r for r in mine if r["seed"] == s and test(r)] for s in seeds]
            per_seed = [p for p in per_seed if p]
            if not per_seed:
                continue
            f1 = np.array([np.mean([r["f1"] for r in p]) for p in per_seed])
            ap_ = np.array([np.mean([r["ap_dsb"] for r in p]) for p in per_seed])
            ce = np.array([np.mean([r["count_error"] for r in p]) for p in per_seed])
            print(f"{config:28s} {group:9s} mean +- sd over {len(per_seed)} seeds: "
                  f"F1 {f1.mean():.3f} +- {f1.std():.3f}, AP {ap_.mean():.3f} +- "
                  f"{ap_.std():.3f}, count error {ce.mean():+.1f} +- {ce.std():.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stardist", type=Path, default=REPO.parent / "shared/data/nuclei3d")
    ap.add_argument("--model", type=Path,
                    default=REPO / "napari_segkit/models/default_nuclei.safetensors")
    ap.add_argument("--train", choices=("masks", "clicks"), help="rows (b) / (c)")
    ap.add_argument("--init", choices=("scratch", "default"), default="scratch")
    ap.add_argument("--planes", choices=("xy", "all"), default="xy")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="append the trained rows to this JSON-lines file")
    ap.add_argument("--summary", type=Path, help="print mean +- sd of a JSON-lines file, exit")
    ap.add_argument("--big", action="store_true", help="time / peak RSS of a 64x1024x1024 stack")
    ap.add_argument("--ring", type=float,
                    help="development only: the ignored ring around click-grown masks, in "
                         "in-plane pixels (stack_training.RING_PIXELS)")
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig settings for the trained rows, e.g. start_blend=0")
    ap.add_argument("--dev", action="store_true",
                    help="score trained rows on development stacks (seeds 7301-7303, for "
                         "design choices) instead of the held-out ones and the StarDist stack")
    args = ap.parse_args()
    from bench_finetune import parse_overrides

    args.overrides = parse_overrides(args.overrides)
    if args.summary is not None:
        summary([json.loads(line) for line in args.summary.read_text().splitlines() if line])
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.ring is not None:
        from napari_segkit import stack_training

        stack_training.RING_PIXELS = args.ring
    if args.big:
        from bench_3d_big import predict_big

        predict_big(args.model, args.threads)
        return
    print("| stack | method | GT | F1@0.5 | AP | count err | mean IoU | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.train is not None:
        scored = stacks(args.stardist) if not args.dev else [
            (f"synthetic dev {seed}", *(lambda s: (s.image, s.labels, s.spacing))(
                synthetic_nuclei_stack((32, 128, 128), spacing=SPACING, seed=seed)))
            for seed in DEV_SEEDS]
        results = train_row(args, scored, args.model)
        print()
        summary(results)
        if args.json is not None:
            with args.json.open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in results)
        return
    model = load_model(args.model)
    k = model.config.n_classes
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


if __name__ == "__main__":
    main()
