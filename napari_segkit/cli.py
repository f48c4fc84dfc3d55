"""``napari-segkit``: the headless engine from a terminal.

    napari-segkit convert  --image IMG.tif (--points PTS.csv | --shapes SHAPES.csv) --mode MODE --out LABELS.tif
    napari-segkit train    --images DIR (--labels DIR | --points DIR) --out MODEL [--init MODEL|default|none] ...
    napari-segkit predict  --model MODEL|default --images DIR --out DIR
    napari-segkit evaluate --pred DIR --gt DIR [--json]
    napari-segkit demo     [--out DIR]

Bad input ends with a one-line message that says what to do and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff")


class UsageError(ValueError):
    """Bad command-line input; printed without a traceback."""


# --------------------------------------------------------------------------- helpers
def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of .tif images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no .tif images in {folder}")
    return files


def _parse_scale(text: str | None, ndim: int) -> tuple[float, ...] | None:
    if not text:
        return None
    from ._utils import check_scale

    return check_scale([float(v) for v in text.replace(",", " ").split()], ndim)


def _spatial_shape(image: np.ndarray) -> tuple[int, ...]:
    return image.shape[:-1] if image.ndim == 3 and image.shape[-1] in (3, 4) else image.shape


class ProgressLine:
    """A one-line progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream=None, every_s: float = 5.0):
        self.stream, self.every_s = stream or sys.stderr, every_s
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def update(self, fraction: float, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            width = 30
            filled = int(round(width * min(max(fraction, 0.0), 1.0)))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
            self.stream.flush()
        elif now - self._last >= self.every_s or fraction >= 1.0:
            self.stream.write(f"{100 * fraction:5.1f}% {text}\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    from . import convert, io

    image = io.read_image(args.image)
    shape = _spatial_shape(image)
    scale = _parse_scale(args.scale, len(shape))
    if args.shapes:
        labels = convert.convert_shapes(io.read_shapes_csv(args.shapes), shape, args.mode,
                                        image=image, scale=scale)
    else:
        coords, features = io.read_points_csv(args.points)
        labels = convert.convert_points(coords, features, shape, args.mode, image=image, scale=scale)
    out = io.write_labels(args.out, labels)
    if args.mode == "sparse":
        print(f"{out}: {int(np.count_nonzero(labels))} labelled pixels "
              f"({int(np.sum(labels == 2))} object, {int(np.sum(labels == 1))} background)")
    else:
        print(f"{out}: {len(np.unique(labels[labels > 0]))} objects")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import io, metrics

    pred_dir, gt_dir = Path(args.pred), Path(args.gt)
    gt_files = {p.stem: p for p in _image_files(gt_dir)}
    rows = []
    for pred_file in sorted(pred_dir.glob("*_instances.tif")):
        stem = pred_file.name[: -len("_instances.tif")]
        if stem not in gt_files:
            print(f"warning: no ground truth {stem}.tif in {gt_dir}; skipped {pred_file.name}",
                  file=sys.stderr)
            continue
        gt, pred = io.read_labels(gt_files[stem]), io.read_labels(pred_file)
        if gt.shape != pred.shape:
            raise UsageError(f"{stem}: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        rows.append({"image": stem, **metrics.evaluate_instances(gt, pred)})
    if not rows:
        raise UsageError(f"no <stem>_instances.tif in {pred_dir} has a <stem>.tif in {gt_dir}")
    summary = metrics.summarise(rows)
    if args.json:
        print(json.dumps({"summary": summary, "images": rows}, indent=2, default=float))
        return 0
    print(f"{'image':<28} {'n_gt':>5} {'n_pred':>6} {'F1@0.5':>7} {'AP(DSB)':>8} {'meanIoU':>8}")
    for r in rows:
        print(f"{r['image'][:28]:<28} {r['n_gt']:>5} {r['n_pred']:>6} {r['f1']:>7.3f} "
              f"{r['ap_dsb']:>8.3f} {r['mean_matched_iou']:>8.3f}")
    print("summary: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in summary.items()))
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
    p.add_argument("--mode", required=True, choices=["fill", "box-object", "outline", "click", "sparse"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--scale", help="pixel spacing per axis, e.g. '2,0.5,0.5' (z,y,x)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("evaluate", help="score <stem>_instances.tif against <stem>.tif")
    p.add_argument("--pred", required=True, type=Path)
    p.add_argument("--gt", required=True, type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    _add_model_commands(sub)
    return parser


def _add_model_commands(sub) -> None:
    """train / predict / demo (defined in _cli_model to keep this file short)."""
    from . import _cli_model

    _cli_model.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:  # includes ModelFileError, UsageError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
