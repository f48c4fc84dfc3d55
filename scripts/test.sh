#!/usr/bin/env bash
# Run the whole test suite (sets everything up first). Extra arguments go to pytest.
# GUI tests run on a virtual X screen (pytest-xvfb starts Xvfb; napari's canvas needs GL).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
exec .venv/bin/python -m pytest "$@"
