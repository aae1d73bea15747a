"""ncl_kernels: the fused ops under ncl, each with reference, cpp, triton and cuda backends (docs/design.md §2)."""

from __future__ import annotations

from ncl_kernels import dispatch
from ncl_kernels.alu import alu_mix
from ncl_kernels.alu_circuit import alu_circuit_mix
from ncl_kernels.control import control
from ncl_kernels.dispatch import BACKENDS, BackendUnavailable
from ncl_kernels.halting import halting_accumulate
from ncl_kernels.memory import content_address, soft_read, soft_write
from ncl_kernels.stack import stack_update

__all__ = ["soft_read", "soft_write", "content_address", "alu_mix", "alu_circuit_mix", "stack_update", "control",
           "halting_accumulate", "info", "BACKENDS", "BackendUnavailable"]


def info() -> dict[str, str]:
    """Every backend mapped to ``"available"`` or the reason it cannot run here."""
    return dispatch.info()
