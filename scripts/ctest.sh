#!/usr/bin/env bash
# Configure, build and run the C++ tests (CMakeLists.txt) against the torch in the active Python.
# Usage: scripts/ctest.sh [BUILD_DIR]   (default build/cmake)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/cmake}
PY=${PYTHON:-python}
TORCH_PREFIX=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')
args=(-S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX")
# With a CUDA build of torch, Caffe2's CMake config needs the toolkit and the pip CUDA libraries spelled out
# (docs/building.md).
if [ "$($PY -c 'import torch; print(int(bool(torch.version.cuda)))')" = 1 ] && [ -x /usr/local/cuda/bin/nvcc ] \
   && [ "${NCL_SKIP_CUDA:-0}" = 0 ]; then
  CU=$($PY -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}  # Caffe2 takes the arch from here, not CMake
  args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDA_TOOLKIT_ROOT_DIR=/usr/local/cuda
         "-DCMAKE_CUDA_FLAGS=-I$CU/include"
         -DCUDA_nvrtc_LIBRARY="$CU/lib/libnvrtc.so.13")
else
  args+=(-DNCL_WITH_CUDA=OFF)
fi
cmake "${args[@]}"
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure
