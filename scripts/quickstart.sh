#!/usr/bin/env bash
# One command from a fresh clone: install (scripts/setup.sh), then show the backends and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh .venv
.venv/bin/ncl info
.venv/bin/ncl demo
