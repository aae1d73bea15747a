"""The memory-bank ops the machine is built on: ``soft_read`` and ``soft_write`` from ``ncl_kernels``.

The dispatched, fused ops are used when ``ncl_kernels`` exports them (the foundation issue); until then the
pure-PyTorch reference, which is the same contract, is used.
"""

from __future__ import annotations

try:
    from ncl_kernels import soft_read, soft_write
except ImportError:  # ncl_kernels does not export the dispatched ops (yet)
    from ncl_kernels.memory.reference import soft_read, soft_write

__all__ = ["soft_read", "soft_write"]
