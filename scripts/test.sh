#!/usr/bin/env bash
# Run the whole test suite (sets everything up first). Extra arguments go to pytest.
# Before the tests: the import layers (import-linter), ruff, and no private name used
# across modules. GUI tests run on a virtual X screen (pytest-xvfb starts Xvfb; napari's
# canvas needs GL).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
.venv/bin/lint-imports
.venv/bin/ruff check napari_segkit tests benchmarks scripts
.venv/bin/python scripts/check_private_names.py
exec .venv/bin/python -m pytest "$@"
