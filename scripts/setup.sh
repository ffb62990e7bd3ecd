#!/usr/bin/env bash
# Set up everything avu needs on a fresh machine: ffmpeg, a virtual environment, the package.
# Idempotent: run it again and it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# torch and torchvision must match; these two install from local disk on the project machines
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    echo "[setup] installing ffmpeg"
    if command -v apt-get >/dev/null; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq ffmpeg >/dev/null
    elif command -v brew >/dev/null; then
        brew install ffmpeg
    elif command -v conda >/dev/null; then
        conda install -y -c conda-forge ffmpeg
    else
        echo "[setup] error: ffmpeg (with ffprobe) is needed and no package manager was found; install it and rerun" >&2
        exit 1
    fi
fi

# headless Chromium for the browser test of `avu predict`'s page (tests/test_predict_page.py); optional:
# where it cannot be installed the test skips and says so, and setup goes on
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ "${AVU_NO_CHROMIUM:-0}" != 1 ]; then
    if command -v apt-get >/dev/null; then
        echo "[setup] installing chromium (headless browser for the predict page test)"
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
        { $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
          || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq chromium >/dev/null 2>&1; }; } \
          || echo "[setup] note: chromium could not be installed; the predict page test will be skipped"
    else
        echo "[setup] note: no apt-get, so no chromium; the predict page test will be skipped"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q $TORCH_SPEC
fi
if [ ! -f "$VENV/.avu-installed" ] || [ pyproject.toml -nt "$VENV/.avu-installed" ]; then
    echo "[setup] installing avu and its dependencies"
    "$VENV/bin/pip" install -q -e ".[test]"
    touch "$VENV/.avu-installed"
fi
echo "[setup] ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'), $(ffmpeg -version | head -n1 | cut -d' ' -f1-3)"
