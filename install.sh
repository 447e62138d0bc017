#!/usr/bin/env bash
# Installs everything dreamwalk needs on Debian/Ubuntu, into a virtual environment:
#   system packages with apt-get (Mesa EGL/GL for offscreen rendering; Xvfb, xdotool, ImageMagick for the window
#   tests; python3-venv when Python cannot make a virtual environment yet), then a virtual environment .venv
#   (made, or reused; the active one instead when a virtual environment is active), torch 2.13.0 in it (the CPU
#   build from PyTorch's CPU wheel index when there is no NVIDIA GPU), and the project itself (editable).
#   bash install.sh          # to play:       then .venv/bin/python play.py
#   bash install.sh --dev    # to run tests:  then .venv/bin/python -m pytest -q
# PYTHON=python3.12 bash install.sh picks the Python that makes the environment (default python3, 3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

EXTRAS=""
for arg in "$@"; do
  case "$arg" in
    --dev) EXTRAS="[dev]" ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $arg (use --dev, or nothing)" ;;
  esac
done

TORCH_VERSION="2.13.0"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
VENV=".venv"

# --- which Python, and does it need apt's venv package ---------------------------------------------------------
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
  [ -x "$PY" ] || die "VIRTUAL_ENV=$VIRTUAL_ENV has no bin/python; deactivate it or fix it"
  say "using the active virtual environment $VIRTUAL_ENV"
  MAKE_VENV=0
elif [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import sys" 2>/dev/null; then
  PY="$VENV/bin/python"
  say "reusing the virtual environment $VENV"
  MAKE_VENV=0
else
  BASE="${PYTHON:-python3}"
  command -v "$BASE" >/dev/null 2>&1 || die "no $BASE found: install Python 3.11 or newer (apt-get install python3)"
  "$BASE" -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" \
    || die "$BASE is $("$BASE" --version 2>&1); dreamwalk needs Python 3.11 or newer (PYTHON=python3.x bash install.sh)"
  PY="$VENV/bin/python"
  MAKE_VENV=1
fi

# --- system packages ---------------------------------------------------------------------------------------------
APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 xvfb xauth xdotool imagemagick"
# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) apart from Python, in python3-venv.
if [ "$MAKE_VENV" = 1 ] && ! "$BASE" -c "import ensurepip, venv" 2>/dev/null; then
  APT_PACKAGES="$APT_PACKAGES python3-venv"
fi
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "apt packages missing:$missing; run as root or install sudo"
      SUDO="sudo"
    fi
    say "apt packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
else
  say "no apt-get: install Mesa EGL/GL (and Xvfb + xdotool for the tests) with your package manager"
fi

# --- the virtual environment ---------------------------------------------------------------------------------------
if [ "$MAKE_VENV" = 1 ]; then
  say "making the virtual environment $VENV with $("$BASE" --version 2>&1)"
  "$BASE" -m venv "$VENV" || die "$BASE could not make a virtual environment (on Debian/Ubuntu: apt-get install python3-venv)"
fi

# --- torch first, pinned: a bare 'torch' requirement with no torch installed pulls a multi-GB CUDA build ---------
if "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  :
elif command -v nvidia-smi >/dev/null 2>&1; then
  say "NVIDIA GPU driver found: torch $TORCH_VERSION from the package registry (its CUDA build)"
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
elif "$PY" -c "import urllib.request; urllib.request.urlopen('$TORCH_CPU_INDEX/torch/', timeout=15)" 2>/dev/null; then
  say "no NVIDIA GPU: torch $TORCH_VERSION, CPU build, from PyTorch's CPU wheel index"
  "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX" || {
    say "PyTorch's CPU wheel index had no torch $TORCH_VERSION for this Python; taking the registry's wheel instead"
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
  }
else
  say "PyTorch's CPU wheel index ($TORCH_CPU_INDEX) cannot be reached: torch $TORCH_VERSION from the package registry instead (its CUDA build, several GB, unless pip finds a CPU wheel locally)"
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi

# --- the project -------------------------------------------------------------------------------------------------
"$PY" -m pip install -q -e ".$EXTRAS"

say "done: $("$PY" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, in {sys.prefix}")')"
if [ "$MAKE_VENV" = 1 ] || [ -z "${VIRTUAL_ENV:-}" ]; then
  say "run with .venv/bin/python play.py, or activate the environment in your shell with:"
  echo "source $VENV/bin/activate"
fi
