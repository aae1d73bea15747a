#!/usr/bin/env bash
# Create a virtual environment and install ncl with its extension and test dependencies, from nothing.
# Usage: scripts/setup.sh [VENV_DIR]   (default .venv)
#   NCL_SKIP_CUDA=1 skips the CUDA kernels; TORCH_CUDA_ARCH_LIST picks their architectures.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${NCL_TORCH:-torch==2.14.1}  # the CUDA 13.0 build: it runs on CPU and lets the CUDA kernels compile

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC" numpy ninja cmake
# --no-build-isolation: the extension must be built against the torch installed above.
"$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[test,triton]"
"$VENV/bin/python" -c "import ncl_kernels, json; print(json.dumps(ncl_kernels.info(), indent=1))"
