"""Halting accumulation: the halting mixtures of the machine's readouts and the ponder cost (docs/design.md §3 step 8).

:func:`halting_accumulate` validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either
the pure-PyTorch reference (autograd through it) or a fused forward with a hand-written fused backward.
"""

from __future__ import annotations

import numbers

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.checks import check_inputs
from ncl_kernels.halting import reference

__all__ = ["halting_accumulate"]



def halting_accumulate(acc_reg: torch.Tensor, acc_mem: torch.Tensor, expected: torch.Tensor, reg: torch.Tensor,
                       mem: torch.Tensor, h: torch.Tensor, t: float, *,
                       backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Add one step's readouts to the halting mixtures, weighted by the mass that halted during the step.

    .. math::
        \hat R_{reg}' = \hat R_{reg} + h\,\text{reg},\qquad \hat R_{mem}' = \hat R_{mem} + h\,\text{mem},\qquad
        E' = E + t\,h

    The machine's run (:mod:`ncl_kernels.machine`) does this after every step ``t`` (with ``h`` the step's halted
    mass and the state after the step), and once at the end with the mass still running (``h = ρ_T``, ``t = T``).

    Args:
        acc_reg: ``(B, K, n)`` the registers' halting mixture so far.
        acc_mem: ``(B, C, n)`` the memory's halting mixture so far.
        expected: ``(B,)`` the expected steps so far.
        reg: ``(B, K, n)`` registers after the step.
        mem: ``(B, C, n)`` memory after the step.
        h: ``(B,)`` halting weight.
        t: the step number, a Python number (no gradient).
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(acc_reg', acc_mem', expected')`` in the inputs' dtype.
    """
    check_inputs("halting_accumulate", ("acc_reg", acc_reg, "B K n"), ("acc_mem", acc_mem, "B C n"),
                 ("expected", expected, "B"), ("reg", reg, "B K n"), ("mem", mem, "B C n"), ("h", h, "B"))
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise ValueError(f"halting_accumulate: t must be a real number (the step), got {type(t).__name__}")
    chosen = dispatch.select(reg.device, reg.dtype, backend)
    if chosen == "reference":
        return reference.halting_accumulate(acc_reg, acc_mem, expected, reg, mem, h, t)
    return _oplib.apply("halting_accumulate", chosen, acc_reg, acc_mem, expected, reg, mem, h, float(t))


def _sample(g: torch.Generator):
    B, K, C, n = 3, 2, 4, 5
    return (torch.rand(B, K, n, generator=g), torch.rand(B, C, n, generator=g), torch.rand(B, generator=g) * 5,
            torch.softmax(torch.randn(B, K, n, generator=g), -1), torch.softmax(torch.randn(B, C, n, generator=g), -1),
            torch.rand(B, generator=g), 7.0)


_oplib.register(_oplib.OpSpec(
    name="halting_accumulate",
    fn=halting_accumulate,
    fwd_schema="(Tensor acc_reg, Tensor acc_mem, Tensor expected, Tensor reg, Tensor mem, Tensor h, float t)"
               " -> (Tensor, Tensor, Tensor)",
    bwd_schema="(Tensor grad_acc_reg, Tensor grad_acc_mem, Tensor grad_expected, Tensor acc_reg, Tensor acc_mem,"
               " Tensor expected, Tensor reg, Tensor mem, Tensor h, float t) -> (Tensor, Tensor, Tensor)",
    fwd_fake=lambda acc_reg, acc_mem, expected, reg, mem, h, t: (torch.empty_like(acc_reg), torch.empty_like(acc_mem),
                                                                 torch.empty_like(expected)),
    triton_module="ncl_kernels.halting.triton",
    num_outputs=3,
    passthrough=3,  # acc_reg' = acc_reg + h·reg, ...: the accumulators' gradients are their outputs'
    sample=_sample,
))
