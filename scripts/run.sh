#!/usr/bin/env bash
# The main job: set up, then open napari with napari-segkit's docks and the sample data.
# Without a display it runs the headless demo instead (clicks -> training -> prediction ->
# counts and IoU against the ground truth) and says where its outputs went.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${SEGKIT_HEADLESS:-}" ]; then
  exec .venv/bin/python -m napari_segkit._widgets.launch "$@"
fi
echo "[run] no display: running the headless demo (set DISPLAY to open napari)"
exec .venv/bin/napari-segkit demo --out "${SEGKIT_DEMO_OUT:-$repo/segkit_output}" "$@"
