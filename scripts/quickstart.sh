#!/usr/bin/env bash
# One command from a fresh clone: install into .venv (scripts/setup.sh, which says up front how long and how much
# disk), then show the kernel backends and run the demo.
# Usage: scripts/quickstart.sh [--cpu | --cuda]   (default: the CUDA build of torch only when a GPU is found)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh "$@" .venv
echo "[ncl info]"
.venv/bin/ncl info
echo "[ncl demo]"
.venv/bin/ncl demo
echo "quickstart: done in $(( $(date +%s) - start ))s. Next: 'source .venv/bin/activate' (or call .venv/bin/ncl), then"
echo "'ncl --help'; '.venv/bin/python -m pytest -n auto' runs the tests."
