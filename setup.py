"""Builds ncl_kernels._C: the C++ CPU kernels always, the CUDA kernels when they can be built.

CUDA is compiled when torch has CUDA (``torch.version.cuda``), nvcc is found and ``NCL_SKIP_CUDA`` is not
set. The architectures come from ``TORCH_CUDA_ARCH_LIST``, else from the local GPU, else sm_90a.
"""

import glob
import os
import shutil
import sys

# torch.utils.cpp_extension reads CUDA_HOME when it is imported, so settle it first.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
# -fopenmp: at::parallel_for is an inline template that runs serially unless the calling file is compiled with
# OpenMP (ATen/ParallelOpenMP.h). The extension then links libgomp.so.1, which resolves to the copy torch has
# already loaded (same soname), so the kernels share torch's thread pool and torch.set_num_threads.
# Apple clang has no OpenMP runtime (and macOS torch wheels use none): there the kernels run on one thread.
OPENMP = [] if sys.platform == "darwin" else ["-fopenmp"]
CXX_FLAGS = ["-O3", "-g0", "-std=c++20", "-fopenmp-simd", *OPENMP]
LINK_FLAGS = OPENMP


def _nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME")
    candidate = os.path.join(home, "bin", "nvcc") if home else None
    if candidate and os.path.exists(candidate):
        return candidate
    return shutil.which("nvcc")


def _build_cuda() -> tuple[bool, str]:
    if os.environ.get("NCL_SKIP_CUDA", "0") not in ("", "0"):
        return False, "NCL_SKIP_CUDA is set"
    if not torch.version.cuda:
        return False, "this torch has no CUDA"
    if _nvcc() is None:
        return False, "nvcc was not found (set CUDA_HOME)"
    return True, f"torch CUDA {torch.version.cuda}"


def _pip_cuda_includes() -> list[str]:
    """The pip CUDA headers (cuBLAS, cuSPARSE, ...) that ATen/cuda/CUDAContext.h needs with pip torch."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for base in spec.submodule_search_locations:
        found += [p for p in glob.glob(os.path.join(base, "*", "include")) if os.path.isdir(p)]
    return sorted(found)


def _extension():
    sources = sorted(glob.glob("csrc/cpu/*.cpp")) + ["csrc/bindings.cpp"]
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    cuda, why = _build_cuda()
    print(f"ncl_kernels: CUDA kernels {'ON' if cuda else 'OFF'} ({why})", file=sys.stderr)
    if not cuda:
        return CppExtension("ncl_kernels._C", sources, include_dirs=include_dirs,
                            extra_compile_args={"cxx": CXX_FLAGS}, extra_link_args=LINK_FLAGS)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # Without a GPU and without an arch list, torch's arch detection crashes (docs/building.md).
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"
    return CUDAExtension(
        "ncl_kernels._C",
        sources + sorted(glob.glob("csrc/cuda/*.cu")),
        include_dirs=include_dirs + _pip_cuda_includes(),
        define_macros=[("NCL_WITH_CUDA", None)],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": ["-O3", "-std=c++20", "--use_fast_math", "-lineinfo"]},
        extra_link_args=LINK_FLAGS,
    )


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
