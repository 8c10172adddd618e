#!/usr/bin/env bash
# Creates .venv and installs the project with the given extras, keeping the local CPU build of torch.
# Usage: bash scripts/install.sh [EXTRAS]   e.g. bash scripts/install.sh serve,export,dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve,export,train,speaker}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: the constraints file then stops any dependency from replacing it.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
# resemblyzer ships the pretrained GE2E speaker-encoder weights; its declared deps would pull torch
# from the index, so it is installed without them (its runtime needs are already satisfied above).
.venv/bin/python -m pip install --quiet -c constraints.txt --no-deps "resemblyzer==0.1.4"
echo "installed into .venv (extras: ${extras})"
