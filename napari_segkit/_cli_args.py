"""Argument types and checks of the ``napari-segkit`` command (argparse, no torch).

Every number option is checked when the command line is read: zero, negative, NaN,
infinite and absurdly large values end the command with exit status 2 and a message
that names the option, before any image is read or any model is built.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from .schedulers import parse_scheduler

#: Upper bounds of the number options (a week of training, a 16k tile...).
MAX_MINUTES = 7 * 24 * 60.0
MAX_EPOCHS = 100_000.0
MAX_PATCH = 8192
MAX_TILE = 16384
MAX_SEED = 2**32 - 1
MAX_COLOR_VARIANTS = 64
MAX_DIAMETER = 10_000.0
ZOOM_BOUNDS = (0.05, 20.0)
#: The axis letters ``--axes`` knows (see :mod:`napari_segkit.image_layout`).
AXES_HELP = ("axis order of the images, e.g. YX, YXC, CYX, ZYX, ZYXC (Z planes, Y rows, "
             "X columns, C channels); default: read from the file, guessed when ambiguous")


def _number(text: str, integer: bool) -> float | int:
    try:
        value = float(text) if not integer else int(text, 10)
    except ValueError:
        what = "a whole number" if integer else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    return value


def bounded(low: float, high: float, *, integer: bool = False, low_open: bool = False,
            what: str = "") -> Callable[[str], float | int]:
    """An argparse ``type`` accepting numbers in ``[low, high]`` (``(low, high]`` with
    ``low_open``): NaN, infinities and values out of range are refused with a message."""

    def parse(text: str) -> float | int:
        value = _number(text.strip(), integer)
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            side = f"greater than {low:g}" if low_open else f"at least {low:g}"
            raise argparse.ArgumentTypeError(
                f"must be {side} and at most {high:g}{what}, got {text!r}")
        return value

    return parse


minutes = bounded(0.0, MAX_MINUTES, low_open=True, what=" minutes")
epochs = bounded(0.0, MAX_EPOCHS, low_open=True, what=" passes over the data")
patch_size = bounded(16, MAX_PATCH, integer=True, what=" pixels")
tile_size = bounded(16, MAX_TILE, integer=True, what=" pixels")
seed = bounded(0, MAX_SEED, integer=True)
color_variants = bounded(0, MAX_COLOR_VARIANTS, integer=True)
zoom_factor = bounded(ZOOM_BOUNDS[0], ZOOM_BOUNDS[1])
channel = bounded(0, 1023, integer=True)
suggestions = bounded(1, 1000, integer=True, what=" per image")
replay_fraction = bounded(0.0, 0.9, what=" of every batch")
steps = bounded(1, 10**6, integer=True, what=" training steps")


def diameter(text: str) -> str | float:
    """``auto`` or a positive number of pixels."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return bounded(0.0, MAX_DIAMETER, low_open=True, what=" pixels")(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (or 'auto')") from None


def scheduler(text: str) -> str:
    """``threads``, ``local:N`` or a dask scheduler address (checked, kept as text)."""
    try:
        return str(parse_scheduler(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def axes(text: str) -> str:
    """An axis order such as ``YXC``: the letters Z, Y, X, C, each at most once, with Y and X."""
    from .image_layout import check_axes

    try:
        return check_axes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def scale(text: str) -> list[float]:
    """Pixel spacings separated by commas or spaces, e.g. ``2,0.5,0.5``."""
    parts = text.replace(",", " ").split()
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be numbers separated by commas, e.g. '2,0.5,0.5', got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be positive finite spacings, one per axis, got {text!r}")
    return values


# --------------------------------------------------------------------------- after parsing
def check_parsed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that involve several options or the file system (``parser.error`` exits 2)."""
    zoom = getattr(args, "zoom", None)
    if zoom is not None and zoom[0] > zoom[1]:
        parser.error(f"argument --zoom: LOW must not exceed HIGH, got {zoom[0]:g} {zoom[1]:g}")
    try:
        _check_folders(args)
    except ValueError as err:
        parser.error(str(err))


def _same(a: Path | None, b: Path | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _check_folders(args: argparse.Namespace) -> None:
    """Folder aliasing and output paths, before any work starts."""
    from .output_paths import check_not_inside, check_output_file, check_output_folder

    command = args.command
    if command == "fit":
        if _same(args.images, args.labels):
            raise ValueError(f"argument --labels: {args.labels} is the same folder as --images; "
                             "keep the label images in a folder of their own")
        check_output_file(args.out, "argument --out")
    elif command == "train":
        for images, annotations, names in (
                (args.images, args.labels, ("--images", "--labels")),
                (args.val_images, args.val_labels, ("--val-images", "--val-labels"))):
            if _same(images, annotations):
                raise ValueError(
                    f"argument {names[1]}: {annotations} is the same folder as {names[0]}, so "
                    "every image would be paired with itself; keep the label images in a "
                    "folder of their own")
        check_output_file(args.out, "argument --out")
    elif command == "predict":
        check_not_inside(args.out, args.images, "argument --out")
        check_output_folder(args.out, "argument --out")
    elif command == "convert":
        check_output_file(args.out, "argument --out", (".tif", ".tiff"))
    elif command == "correct":
        check_output_file(args.out, "argument --out")
    elif command == "suggest":
        if _same(args.out, args.points):
            raise ValueError(f"argument --out: {args.out} is the --points folder; the "
                             "suggestions would overwrite your corrections: write them elsewhere")
        check_output_folder(args.out, "argument --out")
    elif command == "demo":
        check_output_folder(args.out, "argument --out")
