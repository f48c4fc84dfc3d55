"""How much memory there is, and whether an image can be held in it.

Images are sized from their TIFF header (:func:`tiff_array_info`) before any pixel is
read, so a small file that decodes to gigabytes (a "TIFF bomb") is refused or sent to the
block-wise path instead of being allocated.

The budget (:func:`memory_budget`) is half of the memory available now: psutil's
``virtual_memory().available`` when psutil is installed, else ``os.sysconf``'s free
physical pages, and never more than what an address-space limit (``ulimit -v``,
``RLIMIT_AS``) leaves to this process. Half, because the operating system, napari and
the arrays a step makes on top of its input need the rest.

No Qt, napari or torch imports.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "PREDICT_BYTES_PER_PIXEL",
    "READ_BYTES_PER_PIXEL",
    "available_memory",
    "format_bytes",
    "memory_budget",
    "tiff_array_info",
]

#: What an in-memory prediction holds per pixel of a plane, beyond the image: 4
#: float32 probability channels (16), the prepared float32 input (4), tiling buffers and
#: the normalisation (8), semantic labels (1), instance labels and their block copies
#: (10), the foreground map (4) and the measurement (8): about 50 bytes, 52 with slack.
PREDICT_BYTES_PER_PIXEL = 52
#: What reading an image for annotation conversion or training adds per pixel: an int64
#: label image or a float32 copy (8 bytes).
READ_BYTES_PER_PIXEL = 8


def _address_space_left() -> int | None:
    """Bytes an address-space limit (RLIMIT_AS) still leaves to this process, if any."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as fh:
            used_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmSize"))
    except (OSError, StopIteration, ValueError):
        used_kb = 0
    return max(0, soft - used_kb * 1024)


def available_memory() -> int:
    """Bytes of memory available to this process now (see the module notes)."""
    try:
        import psutil

        free = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 4 << 30  # no way to ask: assume a small machine (4 GiB)
    left = _address_space_left()
    return free if left is None else min(free, left)


def memory_budget() -> int:
    """Bytes one image's processing may use: half of :func:`available_memory`."""
    return available_memory() // 2


def tiff_array_info(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a TIFF's first image series, from its header only (no pixel is
    decoded). Raises ValueError for a file that is not a readable TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(Path(path)) as tf:
            series = tf.series[0]
            return tuple(int(n) for n in series.shape), np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises several kinds for broken files
        raise ValueError(
            f"could not read {str(path)!r} as a TIFF image ({exc}); "
            "save the image as .tif (e.g. from napari or Fiji) and try again"
        ) from exc


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``300 MiB``."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.0f} MiB"
