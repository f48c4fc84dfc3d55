"""How the axes of an image are read: planes, rows, columns and channels.

napari-segkit segments grey (Y, X), colour (Y, X, 3|4) images and stacks of them
(Z, Y, X[, 3|4]). Files do not always say which axis is which: a (3, H, W) TIFF may be
channels-first colour or three planes, a (H, W, 2) one two channels or H planes two
pixels wide. :func:`read_image_as` reads the file's own axis names (``S`` / ``C``
channels, ``Z`` planes), guesses from the shape when they say nothing, brings the image
to (Z, Y, X, C) order and returns a note saying how an ambiguous layout was read; an
``axes`` string (``YXC``, ``CYX``, ``ZYX`` ...) replaces the guess. Numpy only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["AXIS_LETTERS", "apply_axes", "check_array_layout", "check_axes", "guess_axes",
           "read_image_as"]

#: Z planes, Y rows, X columns, C channels.
AXIS_LETTERS = "ZYXC"
#: At most this many values along an axis make it a channel axis when guessing.
MAX_GUESSED_CHANNELS = 4


def check_axes(axes: str) -> str:
    """An upper-cased axis order (Z, Y, X, C each at most once, Y and X required)."""
    text = str(axes).strip().upper()
    if (not text or any(a not in AXIS_LETTERS for a in text) or len(set(text)) != len(text)
            or "Y" not in text or "X" not in text):
        raise ValueError(f"--axes {axes!r}: use the letters Z, Y, X and C once each, with Y "
                         "and X, e.g. YX, YXC, CYX, ZYX or ZYXC")
    return text


def guess_axes(shape: Sequence[int], file_axes: str | None = None) -> tuple[str, bool]:
    """Axis letters of an image of ``shape`` and whether they were guessed from an
    ambiguous shape. ``file_axes``: the file's own axis names (tifffile's series axes:
    ``S`` or ``C`` channels, ``Z`` planes, ``Y``, ``X``; others carry no meaning here)."""
    shape = tuple(int(s) for s in shape)
    n = len(shape)
    if file_axes is not None and len(file_axes) == n:
        named = "".join("C" if a in "SC" else a if a in "ZYX" else "?" for a in file_axes)
        if "?" not in named and named.count("C") <= 1 and named.endswith(("YX", "YXC")):
            return named, False
    if n == 2:
        return "YX", False
    if n == 3:
        first, _, last = shape
        if last <= MAX_GUESSED_CHANNELS and first > MAX_GUESSED_CHANNELS:
            return "YXC", last not in (3, 4)
        if first <= MAX_GUESSED_CHANNELS and min(shape[1:]) > MAX_GUESSED_CHANNELS:
            return "CYX", True
        return "ZYX", False
    if n == 4:
        if shape[-1] <= MAX_GUESSED_CHANNELS:
            return "ZYXC", shape[-1] not in (3, 4)
        if shape[0] <= MAX_GUESSED_CHANNELS:
            return "CZYX", True
        if shape[1] <= MAX_GUESSED_CHANNELS:
            return "ZCYX", True
    raise ValueError(f"cannot tell the axes of an image of shape {shape}; give them with "
                     "--axes (e.g. ZYXC), or save one time point / channel per file")


def apply_axes(image: np.ndarray, axes: str) -> np.ndarray:
    """The image with its axes in (Z, Y, X, C) order (absent letters stay absent)."""
    axes = check_axes(axes)
    if len(axes) != image.ndim:
        raise ValueError(f"--axes {axes} names {len(axes)} axes but the image has "
                         f"{image.ndim} (shape {image.shape}); give one letter per axis")
    order = [axes.index(a) for a in AXIS_LETTERS if a in axes]
    return np.transpose(image, order) if order != list(range(image.ndim)) else image


def _select_channel(image: np.ndarray, channel: int | None, name: str) -> tuple[np.ndarray, str]:
    """Channels last -> what the models read (grey or colour), with a note."""
    n = image.shape[-1]
    if channel is not None:
        if not 0 <= channel < n:
            raise ValueError(f"{name}: --channel {channel} does not exist; the image has "
                             f"{n} channels (0..{n - 1})")
        return image[..., channel], f"channel {channel} of {n}"
    if n == 1:
        return image[..., 0], ""
    if n in (3, 4):
        return image, "colour"
    raise ValueError(f"{name} has {n} channels; napari-segkit segments one grey channel or "
                     "colour (3 channels): choose the channel with --channel K (0.."
                     f"{n - 1}) (Python: image[..., K])")


def read_image_as(path: str | os.PathLike, axes: str | None = None,
                  channel: int | None = None) -> tuple[np.ndarray, str | None]:
    """Read a TIFF as (Z, Y, X[, C]) and say how an ambiguous layout was read.

    Returns the image and a note (None when the layout was plain: grey, colour last,
    or as ``axes`` says). ``channel`` picks one channel of a multi-channel image.
    """
    from .io import read_image, tiff_axes

    image = read_image(path)
    name = os.path.basename(os.fspath(path))
    if axes is not None:
        letters, guessed = check_axes(axes), False
    else:
        letters, guessed = guess_axes(image.shape, tiff_axes(path, image.shape))
    image = apply_axes(image, letters)
    if "C" not in letters:
        return image, None
    try:
        image, how = _select_channel(image, channel, name)
    except ValueError as err:
        if guessed:
            raise ValueError(f"{err}; or, if the file holds planes rather than channels, "
                             f"give --axes {letters.replace('C', 'Z')}") from None
        raise
    moved = letters.index("C") != len(letters) - 1
    if not (guessed or moved or channel is not None):
        return image, None
    source = "the file's axes" if not guessed and axes is None else (
        "--axes" if axes is not None else "a guess from the shape")
    note = f"{name}: shape read as {letters} ({how}, from {source})"
    if axes is None:
        alternative = "ZYX" if len(letters) == 3 else "ZYXC"
        note += f"; pass --axes {alternative} (or the right order) if that is wrong"
    return image, note


def check_array_layout(shape: Sequence[int]) -> None:
    """For arrays handed to the Python API: ValueError for a (H, W, 2) image (two
    channels, not H planes two pixels wide); a UserWarning for (2..4, H, W), which is
    read as a stack of planes but may be channels-first colour."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3 and shape[-1] == 2 and shape[0] > MAX_GUESSED_CHANNELS:
        raise ValueError(f"an image of shape {shape} looks like 2 channels (Y, X, 2), not "
                         f"{shape[0]} planes 2 pixels wide; pass one channel (image[..., k])")
    if (len(shape) == 3 and 2 <= shape[0] <= MAX_GUESSED_CHANNELS
            and min(shape[1:]) > MAX_GUESSED_CHANNELS):
        warnings.warn(f"an image of shape {shape} is read as a stack of {shape[0]} planes; if "
                      "it is channels-first colour, pass np.moveaxis(image, 0, -1)",
                      UserWarning, stacklevel=3)
