#!/usr/bin/env bash
# Create (or refresh) ./.venv with the exact pins CI uses, then install spacy-spanbert in editable mode.
# Usage: bash scripts/setup.sh [--fresh]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ "${1:-}" = "--fresh" ]; then rm -rf .venv; fi
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch is pinned in requirements-ci.txt to the CPU wheel; never install it unpinned (that pulls CUDA builds).
.venv/bin/python -m pip install -q -r requirements-ci.txt -c requirements-lock.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, spacy; print("torch", torch.__version__, "spacy", spacy.__version__)'))"
