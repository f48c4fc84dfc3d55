"""Where results go: output files and folders checked before any work starts.

A command that trains for minutes must not fail at its first checkpoint because its
output is a folder, sits under a file or lies in a read-only place; these checks say so
up front, with the option's name (``what``) in the message. Numpy-free, no Qt, no torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_output_file", "check_output_folder", "check_not_inside"]


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _check_creatable_folder(folder: Path, what: str) -> None:
    """``folder`` exists (or can be made) and can be written to."""
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise ValueError(f"{what}: cannot create {folder}: {existing} is a file, not a folder; "
                         "choose another output path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write to {existing} (permission denied); choose a "
                         "folder you can write to")


def check_output_file(path: str | os.PathLike, what: str = "output",
                      suffixes: Sequence[str] = ()) -> Path:
    """A file path that can be written: not an existing folder, its folder creatable and
    writable, an existing file writable; ``suffixes`` (e.g. ``(".tif",)``) are the endings
    it may have. Returns the path; ValueError says what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {path} is an existing folder; give a file name, e.g. "
                         f"{path / ('model' + (suffixes[0] if suffixes else ''))}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what}: {path} should end with {' or '.join(suffixes)}")
    _check_creatable_folder(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what}: {path} exists and cannot be overwritten (permission denied)")
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output") -> Path:
    """A folder that exists or can be made, and can be written to (not an existing file)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what}: {path} is an existing file; give a folder for the results")
    _check_creatable_folder(path, what)
    return path


def check_not_inside(out: str | os.PathLike, source: str | os.PathLike, what: str = "output"
                     ) -> None:
    """Refuse an output folder that is the folder the inputs are read from (a second run
    would read its own results as inputs)."""
    if Path(out).resolve() == Path(source).resolve():
        raise ValueError(f"{what}: {out} is the folder the images are read from, so a second "
                         "run would predict the predictions; write them to another folder, "
                         f"e.g. {Path(out) / 'predictions'}")
