"""Loads the compiled extension ``ncl_kernels._C`` once, remembering why it failed if it did."""

from __future__ import annotations

import functools

REBUILD_HINT = "rebuild it with `pip install --no-build-isolation -e .` from the repository root"


@functools.lru_cache(maxsize=None)
def load():
    """Return ``(module, None)`` or ``(None, reason)``.

    Importing ``_C`` registers the ``torch.ops.ncl.*`` kernels with the dispatcher as a side effect.
    """
    try:
        import torch  # noqa: F401  (the extension links against libtorch)
        from ncl_kernels import _C
    except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
        return None, f"ncl_kernels._C could not be loaded ({type(exc).__name__}: {exc}); {REBUILD_HINT}"
    return _C, None


def cuda_compiled() -> bool:
    """True when the extension was built with its CUDA kernels."""
    mod, _ = load()
    return bool(mod is not None and mod.cuda_compiled())
