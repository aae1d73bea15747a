#!/usr/bin/env bash
# The package as a user gets it: build the sdist, build a wheel from that sdist in a fresh venv, install the wheel
# and run `ncl info` and `ncl demo` from a directory outside the source tree. About 4 minutes on 2 cores.
# Usage: scripts/check_sdist.sh [WORKDIR]   (default: a new temporary directory, outside the source tree)
# The fresh venv gets the CPU-only torch (scripts/torch.env; NCL_TORCH overrides), the one the quickstart installs
# without a GPU, and the wheel holds the C++ kernels only (NCL_SKIP_CUDA=1): the CUDA kernels compile for many
# minutes, and the install stage of CI builds them already.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch.env
WORK=${1:-$(mktemp -d)}
rm -rf "$WORK" && mkdir -p "$WORK/outside"
WORK=$(cd "$WORK" && pwd)
case $WORK/ in "$PWD"/*) echo "check_sdist.sh: WORKDIR must be outside the source tree" >&2; exit 2 ;; esac
TORCH_SPEC=${NCL_TORCH:-$NCL_TORCH_CPU_SPEC}
t0=$(date +%s)
step() { echo "--- $1 ($(( $(date +%s) - t0 ))s)"; }

step "fresh venv with $TORCH_SPEC, numpy, setuptools, ninja, build"
"${PYTHON:-python3}" -m venv "$WORK/venv"
python=$WORK/venv/bin/python
$python -m pip install -q --upgrade pip
$python -m pip install -q "$TORCH_SPEC" numpy "setuptools>=77" ninja build

# --no-isolation / --no-build-isolation: setup.py imports torch, and the extension must be compiled against the
# torch installed above (an isolated build would fetch the newest torch).
step "sdist"
$python -m build --sdist --no-isolation -o "$WORK/dist" . > "$WORK/sdist.log" 2>&1 || { cat "$WORK/sdist.log"; exit 1; }
sdist=$(ls "$WORK"/dist/ncl-*.tar.gz)
tar tzf "$sdist" > "$WORK/sdist-files.txt"
grep -q '/csrc/ops.h$' "$WORK/sdist-files.txt"  # the header whose absence once broke every wheel build
echo "$(basename "$sdist"): $(wc -l < "$WORK/sdist-files.txt") entries, $(du -k "$sdist" | cut -f1) KB"

step "wheel from $(basename "$sdist") (C++ kernels)"
NCL_SKIP_CUDA=1 $python -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/dist" "$sdist"
wheel=$(ls "$WORK"/dist/ncl-*.whl)
echo "$(basename "$wheel"): $(du -k "$wheel" | cut -f1) KB"

step "install the wheel"
$python -m pip install -q "$wheel"

step "ncl info, ncl demo from $WORK/outside"
cd "$WORK/outside"
$python -c "import ncl, ncl_kernels._C; print('ncl imported from', ncl.__file__)"
"$WORK/venv/bin/ncl" info
"$WORK/venv/bin/ncl" demo
step "sdist -> wheel -> install -> ncl info, ncl demo: passed"
