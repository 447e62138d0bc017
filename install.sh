#!/usr/bin/env bash
# Installs everything dreamwalk needs on Debian/Ubuntu:
#   system packages (Mesa EGL/GL for offscreen rendering; Xvfb, xdotool, ImageMagick for the window
#   tests), the CPU build of torch 2.13.0, and the project itself (editable).
#   bash install.sh          # to play
#   bash install.sh --dev    # to play and run the tests (adds pytest)
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 xvfb xauth xdotool imagemagick"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "install.sh: apt packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
else
  echo "install.sh: no apt-get; install Mesa EGL/GL (and Xvfb + xdotool for the tests) with your package manager"
fi

# torch first, pinned: a bare 'torch' requirement with no torch installed can pull a multi-GB CUDA build.
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.') else 1)" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if [ "${1:-}" = "--dev" ]; then
  "$PY" -m pip install -q -e ".[dev]"
else
  "$PY" -m pip install -q -e .
fi
echo "install.sh: done ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
