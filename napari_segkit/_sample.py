"""Where the shipped sample data lives (no Qt, no napari).

In a source checkout the files are in ``<repo>/sample_data``; a wheel carries the same
files inside the package as ``napari_segkit/_sample_files`` (see pyproject.toml).
"""

from __future__ import annotations

import csv
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def sample_dir() -> Path:
    """Folder that holds the sample images, labels and example annotations."""
    for candidate in (_PACKAGE / "_sample_files", _PACKAGE.parent / "sample_data"):
        if (candidate / "manifest.csv").is_file():
            return candidate
    raise FileNotFoundError(
        "napari-segkit's sample data is missing: reinstall the package "
        "(pip install --force-reinstall napari-segkit) or run from a source checkout"
    )


def sample_path(name: str) -> Path:
    """Path of one sample file, e.g. ``sample_path("fluo_512.tif")``."""
    path = sample_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no sample file {name!r} in {sample_dir()}")
    return path


def list_samples() -> list[dict[str, str]]:
    """Rows of ``manifest.csv``: one per sample image (name, labels, points, title, ...)."""
    with open(sample_dir() / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))
