#!/usr/bin/env bash
# Set up napari-segkit on a fresh machine: system libraries for napari's OpenGL canvas
# and a virtual screen (installed when running as root with apt-get, otherwise named),
# then .venv/ at the repo root with the project and its test extras.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

SYSTEM_PACKAGES="xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
libxcb-cursor0 libdbus-1-3 libfontconfig1"

missing_system_packages() {
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local p
  for p in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$p"
  done
}

if command -v apt-get >/dev/null 2>&1; then
  missing="$(missing_system_packages)"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "[setup] installing system packages: $missing"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "[setup] napari's canvas and the test display need these Debian packages:"
      echo "        sudo apt-get install -y $missing"
      echo "        (continuing; GUI tests and the viewer may fail without them)"
    fi
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }

# torch: a CPU build unless one is there already. A GPU user installs the CUDA build of
# torch into .venv first (README, "GPU"); this step then keeps it.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch ${SEGKIT_TORCH:-torch==2.13.0}"
  pip install -q ${SEGKIT_TORCH:-torch==2.13.0}
fi

stamp=".venv/.segkit-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing napari-segkit and its test extras into .venv"
  pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $repo/.venv"
