"""``napari-segkit train | predict | demo``: the commands that use a model (torch).

Kept apart from cli.py so ``convert`` and ``evaluate`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a UNet on images + labels or clicks")
    p.add_argument("--images", required=True, type=Path, help="folder of <stem>.tif images")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path, help="folder of <stem>.tif instance label images")
    src.add_argument("--points", type=Path, help="folder of <stem>.csv napari points files (clicks)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    p.add_argument("--init", default="default",
                   help="'default' (fine-tune the shipped nuclei model), 'none' (from scratch) or a model file")
    p.add_argument("--minutes", type=float, help="time budget in minutes (default 3 unless --epochs)")
    p.add_argument("--epochs", type=float,
                   help="passes over the data (one = as many patch pixels as there are labelled pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--patch-size", type=int, default=None)
    p.add_argument("--zoom", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="zoom augmentation range, e.g. 0.5 2 when the images to segment "
                        "later have nuclei of other sizes than the training images "
                        "(default: none)")
    p.add_argument("--val-images", type=Path, help="separate validation images (with --val-labels)")
    p.add_argument("--val-labels", type=Path)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="instances, semantic labels and an objects table per image")
    p.add_argument("--model", required=True, help="model file or 'default'")
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the 4 mirror images "
                        "(4x slower, slightly more accurate)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="clicks -> training -> prediction -> counts and IoU on sample data")
    p.add_argument("--out", type=Path, default=Path("segkit_output"))
    p.add_argument("--minutes", type=float, default=1.0, help="training time budget")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.set_defaults(func=cmd_demo)


# --------------------------------------------------------------------------- shared
def _pairs(images_dir: Path, ann_dir: Path, suffix: str) -> list[tuple[Path, Path]]:
    from .cli import UsageError, _image_files

    pairs, missing = [], []
    for image in _image_files(images_dir):
        ann = ann_dir / f"{image.stem}{suffix}"
        if ann.is_file():
            pairs.append((image, ann))
        else:
            missing.append(image.name)
    if missing:
        print(f"warning: {len(missing)} image(s) have no {suffix} annotation in {ann_dir} and are skipped: "
              + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), file=sys.stderr)
    if not pairs:
        raise UsageError(f"no image in {images_dir} has a <stem>{suffix} in {ann_dir}")
    return pairs


def _resolve_model_arg(text: str):
    from . import model_io

    if text == "default":
        return model_io.load_default_model()
    return model_io.load_model(text)


def training_fraction(event) -> float:
    """How far a training is, from its elapsed time and ETA (works for budgets and steps)."""
    if event.kind in ("done", "stopped"):
        return 1.0
    if event.eta_s is not None and event.elapsed_s + event.eta_s > 0:
        return event.elapsed_s / (event.elapsed_s + event.eta_s)
    return event.step / event.total_steps if event.total_steps else 0.0


def run_with_progress(events, out=None):
    """Drive a ``train`` generator with a progress line; return (last event, model)."""
    from .cli import ProgressLine

    bar, last = ProgressLine(out or sys.stderr), None
    try:
        while True:
            ev = next(events)
            last = ev
            frac = training_fraction(ev)
            val = f" val F1 {ev.val_f1:.3f}" if ev.val_f1 is not None else ""
            loss = f" loss {ev.loss:.3f}" if ev.loss is not None else ""
            eta = f" ETA {ev.eta_s:.0f}s" if ev.eta_s is not None else ""
            bar.update(frac, f"step {ev.step}/{ev.total_steps}{loss}{val} [{ev.device}]{eta}")
    except StopIteration as done:
        bar.close()
        return last, done.value
    except BaseException:
        bar.close()
        raise


# --------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from . import io
    from .training import TrainConfig, train

    if args.labels:
        pairs = _pairs(args.images, args.labels, ".tif")
    else:
        pairs = _pairs(args.images, args.points, ".csv")
    images = [io.read_image(im) for im, _ in pairs]
    labels = points = None
    if args.labels:
        labels = [io.read_labels(lb) for _, lb in pairs]
    else:
        points = []
        for _, csv_path in pairs:
            coords, features = io.read_points_csv(csv_path)
            classes = features["class"].astype(str).to_numpy() if "class" in features else None
            points.append((coords, classes))
    cfg = TrainConfig(seed=args.seed, device=args.device)
    if args.patch_size:
        cfg.patch_size = args.patch_size
    if args.zoom:
        cfg.scale_range = tuple(args.zoom)
    if args.epochs:
        cfg.epochs = args.epochs
        cfg.time_budget_s = args.minutes * 60 if args.minutes else None
    else:
        cfg.time_budget_s = (args.minutes if args.minutes else 3.0) * 60
        cfg.steps = 10**7  # the time budget decides
    val = None
    if args.val_images:
        if not args.val_labels:
            raise ValueError("--val-images needs --val-labels (full instance labels)")
        vpairs = _pairs(args.val_images, args.val_labels, ".tif")
        val = ([io.read_image(a) for a, _ in vpairs], [io.read_labels(b) for _, b in vpairs])
    init = None if args.init == "none" else args.init
    args.out.parent.mkdir(parents=True, exist_ok=True)
    what = "labels" if args.labels else "clicks"
    print(f"training on {len(images)} image(s) from {what}; init={args.init}; "
          f"budget={'%.1f min' % (cfg.time_budget_s / 60) if cfg.time_budget_s else f'{cfg.steps} steps'}",
          file=sys.stderr)
    t0 = time.perf_counter()
    last, model = run_with_progress(
        train(images, labels=labels, points=points, config=cfg, init=init, out_path=args.out, val=val)
    )
    best = (model.provenance.get("training", {}) if model is not None else {}).get("best", {})
    shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items() if v is not None}
    print(f"done in {time.perf_counter() - t0:.0f} s: {last.step} steps on {last.device}; "
          f"best validation {json.dumps(shown)}; model: {args.out}")
    return 0


# --------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import io
    from .cli import _image_files
    from .measure import object_table
    from .prediction import predict

    model = _resolve_model_arg(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = []
    for path in _image_files(args.images):
        image = io.read_image(path)
        result = predict(model, image, tile_size=args.tile_size, tta=args.tta,
                         device=None if args.device == "auto" else args.device)
        io.write_labels(args.out / f"{path.stem}_instances.tif", result.instances)
        io.write_labels(args.out / f"{path.stem}_semantic.tif", result.semantic)
        table = object_table(result.instances, image)
        table.insert(0, "image", path.stem)
        tables.append(table)
        print(f"{path.stem}: {len(table)} objects")
    objects = pd.concat(tables, ignore_index=True)
    objects.to_csv(args.out / "objects.csv", index=False)
    print(f"wrote {len(tables)} x (<stem>_instances.tif, <stem>_semantic.tif) and objects.csv "
          f"({len(objects)} rows) to {args.out}")
    return 0


# --------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, minutes=args.minutes, device=args.device)
    return 0
