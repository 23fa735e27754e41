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
mkdir -p var
echo "setup.sh: venv ready ($(venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
