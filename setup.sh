#!/usr/bin/env bash
# Creates ./venv and installs the pinned requirements (runtime + tests).
# Safe to run again: pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x venv/bin/python ]; then
    "$PYTHON" -m venv venv
fi
venv/bin/python -m pip install --quiet --upgrade pip
venv/bin/python -m pip install --quiet -r requirements-dev.txt
# opencv-contrib-python (pulled in by mediapipe) links libGL and glib; slim
# images lack them. Install them from Debian only when cv2 cannot load.
if ! venv/bin/python -c "import cv2" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null
    else
        echo "setup.sh: cv2 cannot load; install libgl1 and libglib2.0-0 (Debian/Ubuntu)" >&2
        exit 1
    fi
fi
mkdir -p var
echo "setup.sh: venv ready ($(venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
