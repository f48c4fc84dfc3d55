"""``napari-segkit``: the headless engine from a terminal.

    napari-segkit convert  --image IMG.tif (--points PTS.csv | --shapes SHAPES.csv) --mode MODE --out LABELS.tif
    napari-segkit train    --images DIR (--labels DIR | --points DIR) --out MODEL [--init MODEL|default|none] ...
    napari-segkit predict  --model MODEL|default --images DIR|IMG.tif|IMG.zarr --out DIR [--scheduler threads|local:N|tcp://HOST:PORT]
                           [--labels-format auto|tif|zarr] [--labels-into-source]
    napari-segkit evaluate --pred DIR --gt DIR [--json]
    napari-segkit suggest  --model MODEL|default --images DIR --out DIR [--points DIR] [-n 10]
    napari-segkit correct  --model MODEL|default --images DIR --points DIR --out MODEL [--minutes 1 | --steps N]
    napari-segkit demo     [--out DIR]

``--axes`` (YXC, CYX, ZYX...) and ``--channel`` say how images are read (convert, train,
predict). Bad input ends with a one-line message that says what to do and exit status 2:
number options and output paths are checked before any work (napari_segkit._cli_args).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import _cli_args as arg
from ._common import counted
from .label_outputs import LABELS_FORMATS
from .schedulers import SCHEDULER_HELP

# Every command imports what it needs when it runs: ``convert`` and ``evaluate`` never
# import torch; ``train``, ``predict`` and ``demo`` do (through workflows).

DEVICES = ["auto", "cpu", "cuda", "mps"]
PACKAGE_DIR = Path(__file__).resolve().parent


def all_cores() -> int:
    """CPU threads for training on the command line: every core. (The library's default,
    ``TrainConfig.num_threads=None``, keeps one core free for napari's window; on 2 cores
    that halved the steps of the headless demo: 229 against 368 in its minute.)"""
    return os.cpu_count() or 1


class UsageError(ValueError):
    """Bad command-line input; printed without a traceback."""


# --------------------------------------------------------------------------- helpers
def _parse_scale(values: list[float] | None, ndim: int) -> tuple[float, ...] | None:
    if not values:
        return None
    from ._common import check_scale

    try:
        return check_scale(values, ndim)
    except ValueError as err:
        raise UsageError(f"--scale: {err}") from None


def _read_image(path: Path, args: argparse.Namespace) -> np.ndarray:
    """An image as ``--axes`` / ``--channel`` say; how an ambiguous layout was read goes
    to stderr."""
    from .image_layout import read_image_as

    image, note = read_image_as(path, getattr(args, "axes", None), getattr(args, "channel", None))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return image


def _warn_left_out(names: list[str], lacking: str, fate: str) -> None:
    """``warning: 2 images have <lacking> and are <fate>: a.tif, b.tif`` (the first 5)."""
    one = len(names) == 1
    print(f"warning: {counted(len(names), 'images')} {'has' if one else 'have'} {lacking} and "
          f"{'is' if one else 'are'} {fate}: " + ", ".join(names[:5])
          + (" ..." if len(names) > 5 else ""), file=sys.stderr)


def _pairs(images: Path, ann_path: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(image, annotation) files that share a stem, from two folders (warns about images
    without one); or one image file and its annotation file (or the folder holding
    ``<stem><suffix>``)."""
    from .io import image_files

    if images.is_file():
        ann = ann_path / f"{images.stem}{suffix}" if ann_path.is_dir() else ann_path
        if not ann.is_file():
            raise UsageError(f"{ann} does not exist: with one image file, give its annotation "
                             f"file ({suffix}), or a folder holding {images.stem}{suffix}")
        return [(images, ann)]
    if ann_path.is_file():
        raise UsageError(f"{ann_path} is one file but {images} is not an image file: give "
                         f"one image file with it, or a folder of <stem>{suffix} annotations")
    pairs, missing = [], []
    for image in image_files(images):
        ann = ann_path / f"{image.stem}{suffix}"
        if ann.is_file():
            pairs.append((image, ann))
        else:
            missing.append(image.name)
    if missing:
        _warn_left_out(missing, f"no {suffix} annotation in {ann_path}", "skipped")
    if not pairs:
        raise UsageError(f"no image in {images} has a <stem>{suffix} in {ann_path}")
    return pairs


# --------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    from . import annotations, io
    from ._common import SPARSE_BACKGROUND, SPARSE_OBJECT, spatial_shape

    image = _read_image(args.image, args)
    shape = spatial_shape(image.shape)
    scale = _parse_scale(args.scale, len(shape))
    if args.shapes:
        labels = annotations.convert_shapes(io.read_shapes_csv(args.shapes), shape, args.mode,
                                            image=image, scale=scale)
    else:
        coords, features = io.read_points_csv(args.points)
        labels = annotations.convert_points(coords, features, shape, args.mode, image=image,
                                            scale=scale)
    out = io.write_labels(args.out, labels)
    if args.mode == "sparse":
        print(f"{out}: {int(np.count_nonzero(labels))} labelled pixels "
              f"({int(np.sum(labels == SPARSE_OBJECT))} object, "
              f"{int(np.sum(labels == SPARSE_BACKGROUND))} background)")
    else:
        print(f"{out}: {len(np.unique(labels[labels > 0]))} objects")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import metrics

    pred_dir, gt_dir = Path(args.pred), Path(args.gt)
    rows = []
    for stem, gt_file, pred_file in _evaluated_pairs(pred_dir, gt_dir):
        gt, pred = _scored_labels(gt_file), _scored_labels(pred_file)
        if gt.shape != pred.shape:
            raise UsageError(f"{stem}: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        rows.append({"image": stem, **metrics.evaluate_instances(gt, pred)})
    if not rows:
        raise UsageError(f"no <stem>_instances.tif or <stem>_instances.zarr in {pred_dir} has "
                         f"a <stem>.tif or <stem>.zarr in {gt_dir}")
    summary = metrics.summarise(rows)
    if args.json:
        print(json.dumps({"summary": summary, "images": rows}, indent=2, default=float))
        return 0
    print(f"{'image':<28} {'n_gt':>5} {'n_pred':>6} {'F1@0.5':>7} {'AP(DSB)':>8} {'meanIoU':>8}")
    for r in rows:
        print(f"{r['image'][:28]:<28} {r['n_gt']:>5} {r['n_pred']:>6} {_score(r['f1']):>7} "
              f"{_score(r['ap_dsb']):>8} {_score(r['mean_matched_iou']):>8}")
    print("summary: " + ", ".join(f"{k}={_score(v)}" if isinstance(v, float) or v is None
                                  else f"{k}={v}" for k, v in summary.items()))
    return 0


def _evaluated_pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """(name, ground truth, prediction): one label file each, or the <stem>_instances
    predictions of a folder with their <stem> ground truth (warns about those without)."""
    from .io import is_one_image

    if is_one_image(pred) or is_one_image(gt):
        if not (is_one_image(pred) and is_one_image(gt)):
            raise UsageError("give --pred and --gt as two label images (.tif / .zarr), or "
                             "as two folders")
        return [(pred.stem.removesuffix("_instances"), gt, pred)]
    gt_files = {p.stem: p for p in _gt_inputs(gt)}
    pairs = []
    for pred_file in _instance_outputs(pred):
        stem = pred_file.name[: -len("_instances" + pred_file.suffix)]
        if stem in gt_files:
            pairs.append((stem, gt_files[stem], pred_file))
        else:
            print(f"warning: no ground truth {stem}.tif or {stem}.zarr in {gt}; skipped "
                  f"{pred_file.name}", file=sys.stderr)
    return pairs


def _gt_inputs(folder: Path) -> list[Path]:
    """Ground-truth label images of a folder: its ``.tif`` files and ``.zarr`` folders."""
    from . import io

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of ground-truth label images")
    return io.prediction_inputs(folder)


def _instance_outputs(folder: Path) -> list[Path]:
    """``<stem>_instances.tif`` files and ``<stem>_instances.zarr`` folders, sorted."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of predictions")
    return sorted(p for p in folder.iterdir()
                  if p.name.endswith(("_instances.tif", "_instances.zarr")))


def _scored_labels(path: Path) -> np.ndarray:
    """A label image to score, in memory: a TIFF, or an OME-Zarr / zarr label image (level
    0); a UsageError when it is too large to score in memory."""
    from . import io, io_zarr

    if path.suffix.lower() != ".zarr":
        return io.read_labels(path)
    image = io_zarr.open_image(path, max_in_memory_pixels=io_zarr.MAX_IN_MEMORY_PIXELS)
    if not isinstance(image.data, np.ndarray):
        shape = " x ".join(str(n) for n in image.data.shape)
        raise UsageError(f"{path.name} ({shape} pixels) is too large to score in memory; "
                         "score crops of it (e.g. written with --labels-format tif from "
                         "cropped images)")
    return np.asarray(image.data)


def _score(value) -> str:
    """A score with 3 decimals; 'n/a' when there is none (no matched object, no object)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


# --------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace):
    from .losses import check_loss
    from .model import UNetConfig
    from .training import TrainConfig

    cfg = TrainConfig(seed=args.seed, device=args.device, loss=check_loss(args.loss),
                      color_variants=int(args.color_variants), stack_planes=args.stack_planes,
                      num_threads=all_cores())
    if args.arch is not None:
        if args.init != "none":
            raise ValueError("--arch chooses the network of a new model: use it with --init none "
                             "(a fine-tuned model keeps its own architecture)")
        cfg.model = UNetConfig(**{**cfg.model.to_dict(), "arch": args.arch})
    # the values were checked when the command line was read (napari_segkit._cli_args):
    # None means "not given", never 0
    if args.patch_size is not None:
        cfg.patch_size = args.patch_size
    if args.zoom is not None:
        cfg.scale_range = tuple(args.zoom)
    if args.replay is not None:
        if args.init == "none":
            raise ValueError("--replay mixes the start model's training patches into a "
                             "fine-tuning; a new model (--init none) has none: leave it out")
        cfg.replay_fraction = args.replay
    return cfg


def _set_budget(cfg, args: argparse.Namespace, default_minutes: float) -> tuple[str, float | None]:
    """How long a training runs: ``--epochs`` or ``--steps`` (``--minutes``, when also
    given, can end it first), else ``--minutes`` (``default_minutes`` when not given).
    Returns the budget as the log says it, and the seconds a progress bar counts (None:
    it counts steps)."""
    epochs = getattr(args, "epochs", None)  # correct has no --epochs
    if epochs is not None or args.steps is not None:
        if epochs is not None:
            cfg.epochs = epochs
        else:
            cfg.steps = args.steps
        cfg.time_budget_s = args.minutes * 60 if args.minutes is not None else None
        seconds = None
    else:
        cfg.time_budget_s = seconds = (args.minutes or default_minutes) * 60
        cfg.steps = 10**7  # the time budget decides
    parts = [f"{epochs:g} epochs"] if epochs is not None else \
        [f"{args.steps} steps"] if args.steps is not None else []
    if cfg.time_budget_s:
        parts.append(f"{cfg.time_budget_s / 60:g} min")
    return " or ".join(parts), seconds


def _until_done_or_stopped(progress, run):
    """``run()``'s model, or None after Ctrl-C, said with what was saved; the progress bar
    is closed either way."""
    from .training import TrainingInterrupted

    try:
        return run()
    except TrainingInterrupted as stop:
        saved = (f"the weights so far were saved to {stop.model_path}" if stop.model_path
                 else "no model was saved")
        said = f"interrupted at step {stop.step}: {saved}"
    except KeyboardInterrupt:
        said = "interrupted before training started: no model was saved"
    finally:
        progress.close()
    print(said, file=sys.stderr)
    return None


def cmd_train(args: argparse.Namespace) -> int:
    from . import io
    from ._common import classes_of
    from .outcome_text import kept_text, score_text
    from .workflows import TrainingProgress, run_training

    pairs = _pairs(args.images, args.labels or args.points, ".tif" if args.labels else ".csv")
    images = [_read_image(im, args) for im, _ in pairs]
    labels = points = None
    if args.labels:
        labels = [io.read_labels(lb) for _, lb in pairs]
    else:
        points = []
        for _, csv_path in pairs:
            coords, features = io.read_points_csv(csv_path)
            points.append((coords, classes_of(features)))
    cfg = _train_config(args)
    budget, seconds = _set_budget(cfg, args, default_minutes=3.0)
    val = None
    if args.val_images:
        if not args.val_labels:
            raise ValueError("--val-images needs --val-labels (full instance labels)")
        vpairs = _pairs(args.val_images, args.val_labels, ".tif")
        val = ([_read_image(a, args) for a, _ in vpairs], [io.read_labels(b) for _, b in vpairs])
    init = None if args.init == "none" else args.init
    args.out.parent.mkdir(parents=True, exist_ok=True)
    what = "labels" if args.labels else "clicks"
    print(f"training on {counted(len(images), 'images')} from {what}; init={args.init}; "
          f"budget={budget}", file=sys.stderr)
    t0 = time.perf_counter()
    # a bar of seconds when the time budget decides, of steps when --epochs or --steps do
    progress = TrainingProgress(seconds)
    model = _until_done_or_stopped(progress, lambda: run_training(
        images, labels=labels, points=points, config=cfg, init=init, out_path=args.out,
        val=val, on_event=progress, scale=args.scale))
    if model is None:
        return 130
    last = progress.last
    if last is not None and last.diverged:
        print(f"warning: {last.message}", file=sys.stderr)
    score = score_text(last)
    print(f"done in {time.perf_counter() - t0:.0f} s: {last.step} steps on {last.device}; "
          f"{kept_text(last)}{f'; {score}' if score else ''}; model: {args.out}")
    return 0


# --------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from .io import prediction_inputs
    from .workflows import open_model, predict_folder

    model = open_model(args.model)  # a bad model file is reported before anything else
    files = prediction_inputs(args.images)
    objects = predict_folder(model, files, args.out, tile_size=args.tile_size, tta=args.tta,
                             device=None if args.device == "auto" else args.device,
                             diameter=args.diameter, axes=args.axes, channel=args.channel,
                             progress_bar=True, scheduler=args.scheduler,
                             labels_format=args.labels_format,
                             labels_into_source=args.labels_into_source)
    labels = {
        "tif": "<stem>_instances.tif, <stem>_semantic.tif",
        "zarr": "<stem>_instances.zarr, <stem>_semantic.zarr",
        "auto": "<stem>_instances, <stem>_semantic: .zarr (OME-Zarr) for .zarr and large "
                "images, .tif for the others",
    }[args.labels_format]
    if args.labels_into_source:
        print(f"wrote the labels of {counted(len(files), 'images')} into <image>.zarr/labels/instances "
              f"and .../semantic, and objects.csv ({len(objects)} rows) to {args.out}")
    else:
        print(f"wrote {len(files)} x ({labels}) and objects.csv ({len(objects)} rows) "
              f"to {args.out}")
    return 0


# --------------------------------------------------------------------------- fit
def cmd_fit(args: argparse.Namespace) -> int:
    from . import io
    from .model_io import save_model
    from .postprocess_fit import fit_model_postprocess
    from .workflows import open_model

    model = open_model(args.model)
    pairs = _pairs(args.images, args.labels, ".tif")  # never empty: _pairs says why
    print(f"fitting the post-processing of {args.model} to {counted(len(pairs), 'annotated images')}",
          file=sys.stderr)
    fitted, fit = fit_model_postprocess(
        model, [_read_image(im, args) for im, _ in pairs],
        [io.read_labels(lb) for _, lb in pairs],
        device=None if args.device == "auto" else args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(fitted, args.out)
    print(f"{fit.summary()}; model with these settings: {args.out}")
    return 0


# --------------------------------------------------------------------------- correction loop
def _correction_clicks(csv_path: Path, image: np.ndarray):
    """The corrections of one image from a napari points CSV (``class`` column:
    ``nucleus`` / ``background``, all nuclei without it); clicks outside the image are
    left out with a warning, and a file with none inside is an error."""
    from . import io
    from ._common import classes_of
    from .annotations.common import points_inside
    from .corrections import Corrections, corrections_from_layers

    coords, features = io.read_points_csv(csv_path)
    if "reason" in features and "class" not in features:
        raise ValueError(f"{csv_path} holds suggestions (napari-segkit suggest), not "
                         "corrections: answer each with a 'nucleus' or 'background' click in a "
                         "points file of your own, with a 'class' column")
    fixes = corrections_from_layers(coords, classes_of(features))
    inside = points_inside(fixes.coords, image.shape[:2])
    if len(fixes) and not inside.any():
        raise ValueError(f"all {len(fixes)} clicks of {csv_path.name} lie outside its image "
                         f"{image.shape[:2]}; check that the points file belongs to it")
    if inside.all():
        return fixes
    print(f"warning: {int((~inside).sum())} of {len(fixes)} clicks of {csv_path.name} lie "
          "outside the image and are left out", file=sys.stderr)
    return Corrections([p for p, ok in zip(fixes.points, inside) if ok],
                       [c for c, ok in zip(fixes.classes, inside) if ok])


def cmd_suggest(args: argparse.Namespace) -> int:
    from . import io
    from .corrections import Corrections
    from .suggestions import suggest_clicks
    from .workflows import open_model

    model = open_model(args.model)
    files = io.image_files(args.images)
    if not files:
        raise UsageError(f"no image in {args.images}")
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in files:
        image = _read_image(path, args)
        done = args.points / f"{path.stem}.csv" if args.points else None
        fixes = _correction_clicks(done, image) if done and done.is_file() else Corrections()
        coords, scores, reasons = suggest_clicks(model, image, fixes.coords, n=args.n,
                                                 classes=fixes.classes)
        io.write_points_csv(args.out / f"{path.stem}.csv", coords.reshape(-1, 2),
                            {"rank": np.arange(1, len(coords) + 1), "score": np.round(scores, 3),
                             "reason": reasons})
        total += len(coords)
        print(f"{path.name}: {counted(len(coords), 'suggestions')}"
              + (f", first: {reasons[0]}" if reasons else ""), file=sys.stderr)
    print(f"wrote <stem>.csv with {counted(total, 'suggested clicks')} for "
          f"{counted(len(files), 'images')} to "
          f"{args.out}: open each as a Points layer over its image, answer with a nucleus or "
          "background click, and run `napari-segkit correct`")
    return 0


def _edited_instances(model, image: np.ndarray, stem: str, args: argparse.Namespace):
    """(painted, erased) from ``<stem>_instances.tif`` in ``args.edited``, compared with the
    unedited prediction (``args.predicted``, or the model predicting the image again)."""
    from . import io
    from .corrections import edits_from_layers
    from .prediction import predict

    path = args.edited / f"{stem}_instances.tif"
    edited = io.read_labels(path)
    if edited.shape != image.shape[:2]:
        raise ValueError(f"{path} is {edited.shape[0]} x {edited.shape[1]} px but its image is "
                         f"{image.shape[0]} x {image.shape[1]}: edit the instances that "
                         "napari-segkit predict wrote for this image")
    if args.predicted:
        ref = args.predicted / f"{stem}_instances.tif"
        if not ref.is_file():
            raise ValueError(f"--predicted {args.predicted} has no {ref.name}: give the folder "
                             "napari-segkit predict wrote, before any edit")
        predicted = io.read_labels(ref)
    else:
        predicted = predict(model, image).instances
    painted, erased = edits_from_layers(edited, predicted)
    touched = int(np.count_nonzero(np.unique(predicted[edited != predicted])))
    n_pred = int(np.count_nonzero(np.unique(predicted)))
    if not args.predicted and n_pred and touched > n_pred / 2:
        print(f"warning: {path.name} differs from this model's prediction in {touched} of "
              f"{n_pred} objects; if it was predicted with other settings (--tta, "
              "--diameter, another model), pass the unedited folder as --predicted",
              file=sys.stderr)
    return painted, erased


def cmd_correct(args: argparse.Namespace) -> int:
    from .corrections import Corrections, retrain_with_corrections
    from .io import image_files
    from .training import TrainConfig
    from .workflows import TrainingProgress, open_model

    if args.points is None and args.edited is None:
        raise UsageError("give the corrections: --points (clicks), --edited (edited "
                         "instances), or both")
    model = open_model(args.model)  # a bad model file is reported before anything else
    images, fixes, skipped = [], [], []
    for image_path in image_files(args.images):
        csv_path = args.points / f"{image_path.stem}.csv" if args.points else None
        has_csv = csv_path is not None and csv_path.is_file()
        has_edit = args.edited is not None and \
            (args.edited / f"{image_path.stem}_instances.tif").is_file()
        if not (has_csv or has_edit):
            skipped.append(image_path.name)
            continue
        image = _read_image(image_path, args)
        clicks = _correction_clicks(csv_path, image) if has_csv else Corrections()
        painted, erased = _edited_instances(model, image, image_path.stem, args) \
            if has_edit else (None, None)
        images.append(image)
        fixes.append(Corrections(clicks.points, clicks.classes, painted=painted, erased=erased))
    if skipped:
        _warn_left_out(skipped, "no corrections", "left out")
    n = sum(len(f) for f in fixes)
    n_drawn = sum(0 if f.painted is None else int(np.count_nonzero(np.unique(f.painted)))
                  for f in fixes)
    n_erased = sum(0 if f.erased is None else int(f.erased.sum()) for f in fixes)
    if not images or n + n_drawn + n_erased == 0:
        where = " and ".join(str(d) for d in (args.points, args.edited) if d is not None)
        raise ValueError(f"no corrections in {where} for the images in {args.images}; click "
                         "missed nuclei ('nucleus') and false objects ('background'), or edit "
                         "<stem>_instances.tif (draw, merge, erase objects), first")
    cfg = TrainConfig(seed=args.seed, device=args.device, num_threads=all_cores())
    budget, seconds = _set_budget(cfg, args, default_minutes=1.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n_bg = sum(c == "background" for f in fixes for c in f.classes)
    edits = f", {counted(n_drawn, 'objects')} drawn or edited, {n_erased} px erased" \
        if args.edited is not None else ""
    print(f"retraining {args.model} on {counted(len(images), 'images')} with "
          f"{counted(n, 'corrections')} "
          f"({n - n_bg} nucleus, {n_bg} background){edits}; budget={budget}",
          file=sys.stderr)
    t0 = time.perf_counter()
    progress = TrainingProgress(seconds)
    if _until_done_or_stopped(progress, lambda: retrain_with_corrections(
            model, images, fixes, config=cfg, out_path=args.out, progress=progress)) is None:
        return 130
    last = progress.last
    print(f"done in {time.perf_counter() - t0:.0f} s: {last.step} steps on {last.device}; "
          f"model: {args.out} (predict with it, correct again, repeat)")
    return 0


# --------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, minutes=args.minutes, device=args.device, num_threads=all_cores())
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-segkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="annotations (napari CSV) -> label image")
    p.add_argument("--image", required=True, type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--points", type=Path, help="napari points CSV")
    src.add_argument("--shapes", type=Path, help="napari shapes CSV")
    p.add_argument("--mode", required=True,
                   choices=["fill", "box-object", "outline", "click", "click-all", "sparse"],
                   help="click-all: like click, when every object has a click")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--scale", type=arg.scale, help="pixel spacing per axis, e.g. '2,0.5,0.5' (z,y,x)")
    _layout_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("evaluate", help="score <stem>_instances.tif / .zarr against <stem>.tif / "
                       ".zarr")
    p.add_argument("--pred", required=True, type=Path,
                   help="folder of <stem>_instances.tif / .zarr, or one label image")
    p.add_argument("--gt", required=True, type=Path,
                   help="folder of <stem>.tif / .zarr ground truth, or one label image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train or fine-tune a UNet on images + labels or clicks")
    p.add_argument("--images", required=True, type=Path,
                   help="folder of <stem>.tif images, or one .tif image")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path,
                     help="folder of <stem>.tif instance label images (or one, with one image)")
    src.add_argument("--points", type=Path,
                     help="folder of <stem>.csv napari points files (clicks; or one, with one "
                          "image)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    p.add_argument("--init", default="default",
                   help="'default' (fine-tune the shipped nuclei model), 'none' (from scratch) or a model file")
    p.add_argument("--minutes", type=arg.minutes,
                   help="time budget in minutes (default 3 unless --epochs or --steps)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=arg.epochs,
                        help="passes over the data (one = as many patch pixels as there are "
                             "labelled pixels)")
    length.add_argument("--steps", type=arg.steps,
                        help="training steps: the same length of training on any machine, "
                             "fast or slow (with --minutes, whichever ends first)")
    p.add_argument("--seed", type=arg.seed, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--patch-size", type=arg.patch_size, default=None,
                   help="training patch side in pixels (default 128)")
    p.add_argument("--zoom", type=arg.zoom_factor, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="zoom augmentation range, e.g. 0.5 2 when the images to segment "
                        "later have nuclei of other sizes than the training images "
                        "(default: none)")
    p.add_argument("--replay", type=arg.replay_fraction, default=None, metavar="FRACTION",
                   help="fine-tuning: the fraction of every batch taken from the default "
                        "model's own training patches, so it forgets less of what it knew "
                        "(default: 0.25 from clicks, 0 from full masks)")
    p.add_argument("--arch", default=None,
                   help="network of a new model (--init none): unet (default), resunet, unetpp, "
                        "aspp_unet or unext")
    p.add_argument("--loss", default="ce_dice",
                   help="ce_dice (default), bce_dice, jaccard (Lovász), soft_jaccard or focal")
    p.add_argument("--color-variants", type=arg.color_variants, default=0, metavar="N",
                   help="colour / stain variants per image (H&E jitter; fluorescence rendered as "
                        "brightfield), drawn for half of the patches; default 0")
    p.add_argument("--scale", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                   help="voxel size of 3-D stacks (z, y, x), physical units; needed to train "
                        "from 3-D clicks, used to join 3-D objects in validation")
    p.add_argument("--stack-planes", choices=("xy", "all"), default="xy",
                   help="3-D stacks: train on xy planes (default) or on xy, xz and yz planes")
    p.add_argument("--val-images", type=Path, help="separate validation images (with --val-labels)")
    p.add_argument("--val-labels", type=Path)
    _layout_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="instances, semantic labels and an objects table per image")
    p.add_argument("--model", required=True, help="model file or 'default'")
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--tile-size", type=arg.tile_size, default=256)
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the 4 mirror images "
                        "(4x slower, slightly more accurate)")
    p.add_argument("--diameter", type=arg.diameter, default=None,
                   help="typical nucleus diameter in pixels, or 'auto' (estimated per image): "
                        "images are zoomed so that nuclei match the model's training size")
    p.add_argument("--scheduler", type=arg.scheduler, default="threads",
                   help=SCHEDULER_HELP + "; the blocks of large and .zarr images run "
                        "there, smaller images here")
    p.add_argument("--labels-format", choices=LABELS_FORMATS, default="auto",
                   help="label images as OME-Zarr (zarr: <stem>_instances.zarr, multiscale, "
                        "the image's scale and units), zlib TIFF (tif) or auto (default): "
                        "OME-Zarr for .zarr images and large images predicted block by "
                        "block, TIFF for the others")
    p.add_argument("--labels-into-source", action="store_true",
                   help="write the labels of .zarr images into the image's own labels/ "
                        "group (labels/instances, labels/semantic) instead of --out; refused "
                        "for TIFFs, read-only images and images that already have them")
    _layout_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("fit", help="fit a model's probability threshold and split level to "
                                   "images with full masks (kept in the model file)")
    _model_and_images(p)
    p.add_argument("--labels", required=True, type=Path,
                   help="folder of <stem>.tif instance label images (every nucleus annotated; "
                        "or one, with one image)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    _layout_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("suggest", help="where a correction click would teach the model most: "
                                       "<stem>.csv napari points per image, best first")
    _model_and_images(p)
    p.add_argument("--out", required=True, type=Path, help="folder for <stem>.csv suggestions")
    p.add_argument("--points", type=Path, default=None,
                   help="folder of <stem>.csv corrections already made (not suggested again)")
    p.add_argument("-n", type=arg.suggestions, default=10, help="suggestions per image (default 10)")
    _layout_options(p)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("correct", help="retrain a model from corrections of its predictions "
                                       "(clicks, edited instances: the correction loop's "
                                       "Retrain)")
    _model_and_images(p, "the model that predicted: a file or 'default'")
    p.add_argument("--points", type=Path,
                   help="folder of <stem>.csv napari points: clicks with a 'class' column, "
                        "'nucleus' on missed nuclei (one per nucleus) and 'background' on "
                        "false objects (the nuclei of an object that merged several are best "
                        "painted, each with its own label, in --edited)")
    p.add_argument("--edited", type=Path,
                   help="folder of <stem>_instances.tif as napari-segkit predict wrote them, "
                        "edited (objects drawn, merged, cut or erased, e.g. in napari): the "
                        "objects you touched are taught as you left them, erased pixels as "
                        "background; images with neither file are left out")
    p.add_argument("--predicted", type=Path,
                   help="with --edited: the unedited folder napari-segkit predict wrote "
                        "(default: the model predicts each image again with default settings; "
                        "give it when you predicted with --tta or --diameter)")
    p.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=arg.minutes,
                        help="time budget in minutes (default 1)")
    budget.add_argument("--steps", type=arg.steps,
                        help="a budget of training steps instead of minutes: the same length "
                             "of training on any machine, fast or slow")
    p.add_argument("--seed", type=arg.seed, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    _layout_options(p)
    p.set_defaults(func=cmd_correct)

    p = sub.add_parser("demo", help="clicks -> training -> prediction -> counts and IoU on sample data")
    p.add_argument("--out", type=Path, default=Path("segkit_output"))
    p.add_argument("--minutes", type=arg.minutes, default=1.0, help="training time budget")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=cmd_demo)
    return parser


def _model_and_images(p: argparse.ArgumentParser, model_help: str = "model file or 'default'"
                      ) -> None:
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--images", required=True, type=Path,
                   help="folder of <stem>.tif images, or one .tif image")


def _layout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axes", type=arg.axes, default=None, help=arg.AXES_HELP)
    p.add_argument("--channel", type=arg.channel, default=None, metavar="K",
                   help="segment channel K (from 0) of multi-channel images")


def _user_warnings(show):
    """A ``warnings.showwarning`` that prints napari-segkit's own warnings to the user
    (skipped clicks, a stack read as planes) as the command line says things, ``warning:
    <text>``, and hands the others to ``show`` (Python's form, with file and line)."""
    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, UserWarning) and \
                Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        arg.check_parsed(parser, args)  # option combinations and output paths
    except SystemExit as done:  # usage errors (2, message printed) and --help (0)
        return done.code if isinstance(done.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _user_warnings(warnings.showwarning)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:  # includes ModelFileError, UsageError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable, full or vanished outputs
        print(f"error: {err.strerror or err}: {err.filename or ''}; check the path and "
              "that you may write there", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
