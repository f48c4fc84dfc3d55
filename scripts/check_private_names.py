"""Fail when a private name (``_name``) of one napari_segkit module is used from another.

Checked in napari_segkit/, tests/, benchmarks/ and scripts/:

* ``from napari_segkit.x import _y`` / ``from .x import _y`` (``_y`` not a module);
* ``x._y`` where ``x`` names an imported napari_segkit module (``_y`` not a module).

Private *modules* (``_common``, ``_widgets``, ``_sample``) may be imported: their public
names are the package's internal API. Run: ``python scripts/check_private_names.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "napari_segkit"
FOLDERS = ("napari_segkit", "tests", "benchmarks", "scripts")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str | None:
    """The absolute module an ``import from`` reads from, or None outside the package."""
    if node.level == 0:
        return node.module if node.module and node.module.split(".")[0] == PACKAGE else None
    parts = here.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    if not parts or parts[0] != PACKAGE:
        return None
    return ".".join(parts + ([node.module] if node.module else []))


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def check(path: Path) -> list[str]:
    here = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    problems, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = absolute(node, here, path.name == "__init__.py")
            if source is None:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if is_module(full):
                    modules[alias.asname or alias.name] = full
                elif private(alias.name):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {full}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    modules[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else PACKAGE)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            target = node.value
            dotted = []
            while isinstance(target, ast.Attribute):
                dotted.insert(0, target.attr)
                target = target.value
            if isinstance(target, ast.Name) and target.id in modules:
                owner = ".".join([modules[target.id], *dotted])
                if is_module(owner) and not is_module(f"{owner}.{node.attr}"):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses {owner}.{node.attr}")
    return problems


def main() -> int:
    problems = []
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    for path in files:
        problems += check(path)
    for line in problems:
        print(line)
    print(f"{len(files)} files: {len(problems) or 'no'} private names used across modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
