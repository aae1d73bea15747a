r"""Reference (pure PyTorch) halting accumulation: the executable spec of :func:`ncl_kernels.halting_accumulate`.

docs/design.md §3 step 8 as the machine's run computes it (:mod:`ncl_kernels.machine`): after step ``t`` the
readouts (registers and memory) of the state after the step are added to the halting mixtures with the mass
``h_t`` that halted during it, and ``t·h_t`` to the expected steps (the ponder cost):

.. math::
    \hat R_{reg} \mathrel{+}= h_t\,\text{reg}_t,\qquad \hat R_{mem} \mathrel{+}= h_t\,\text{mem}_t,\qquad
    E \mathrel{+}= t\,h_t

The end of a run is the same update with the running mass left, :math:`h = \rho_T` and :math:`t = T`.
"""

from __future__ import annotations

import torch


def halting_accumulate(acc_reg: torch.Tensor, acc_mem: torch.Tensor, expected: torch.Tensor, reg: torch.Tensor,
                       mem: torch.Tensor, h: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One halting accumulation.

    Args:
        acc_reg: ``(B, K, n)`` halting mixture of the registers so far.
        acc_mem: ``(B, C, n)`` halting mixture of the memory so far.
        expected: ``(B,)`` :math:`\sum_{t' < t} t' h_{t'}` so far.
        reg: ``(B, K, n)`` registers after step ``t``.
        mem: ``(B, C, n)`` memory after step ``t``.
        h: ``(B,)`` mass that halted during step ``t``.
        t: the step number (a Python number).

    Returns:
        ``(acc_reg + h·reg, acc_mem + h·mem, expected + t·h)``.
    """
    return (acc_reg + h[:, None, None] * reg, acc_mem + h[:, None, None] * mem, expected + t * h)
