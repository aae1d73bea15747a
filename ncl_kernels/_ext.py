"""Loads the compiled extension ``ncl_kernels._C`` once, remembering why it failed if it did."""

from __future__ import annotations

import importlib

REBUILD_HINT = "rebuild it with `pip install --no-build-isolation -e .` from the repository root"


# A plain memo rather than functools.lru_cache, which torch.compile warns about when it traces the caller.
_loaded: tuple | None = None
# Whether the loaded extension has its CUDA kernels, read once at load: torch.compile cannot trace a call into a
# pybind function, and dispatch asks this inside compiled regions.
_has_cuda = False


def load():
    """Return ``(module, None)`` or ``(None, reason)``.

    Importing ``_C`` registers the ``torch.ops.ncl.*`` kernels with the dispatcher as a side effect.
    """
    global _loaded, _has_cuda
    if _loaded is None:
        try:
            # Here, not at import: the build is optional (the reference backend runs without it). Loaded by name
            # because it is a compiled module, which static import analysis cannot see; torch first, since the
            # extension links against libtorch.
            import torch  # noqa: F401
            mod = importlib.import_module("ncl_kernels._C")
            _has_cuda = bool(mod.cuda_compiled())
            _loaded = (mod, None)
        except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
            _loaded = (None, f"ncl_kernels._C could not be loaded ({type(exc).__name__}: {exc}); {REBUILD_HINT}")
    return _loaded


def cuda_compiled() -> bool:
    """True when the extension was built with its CUDA kernels."""
    load()
    return _has_cuda
