r"""Reference (pure PyTorch) control step: the executable spec of :func:`ncl_kernels.control`.

docs/design.md §3 step 7 and the halting mass of step 8, with the decisions of ``docs/machine.md`` (running off the
last line halts; RET with no return address halts). With :math:`q_k = ip \odot op[:, k]` per line and
:math:`c = \chi_0`:

.. math::
    ip' = \mathrm{next}(q_{seq} + (1-c)\,q_{JZ} + c\,q_{JNZ})
          + (q_{JMP} + q_{CALL} + c\,q_{JZ} + (1-c)\,q_{JNZ})^\top tgt + (\textstyle\sum q_{RET})\,\mathrm{top}(rstk)

.. math::
    h = \textstyle\sum q_{HALT} + \text{run-off} + (\sum q_{RET})\,(1 - \sum_m \mathrm{top}(rstk)_m)

where :math:`\mathrm{top}(rstk) = \sum_s rsp_s\, rstk_s` and ``next`` moves line ℓ to ℓ+1 (the last line's
mass is the run-off). This is :func:`ncl_kernels.machine.step.step`'s steps 7-8, float64-capable.
"""

from __future__ import annotations

import torch

from ncl_kernels.isa import NUM_OPS, OP, SEQUENTIAL_OPS

#: Opcode columns (:mod:`ncl_kernels.isa`; the kernels' are ``csrc/include/ncl/opcodes.h``, generated from it).
HALT, JMP, JZ, JNZ, CALL, RET = (OP[o] for o in ("HALT", "JMP", "JZ", "JNZ", "CALL", "RET"))
#: The sequential ops' columns: every op but HALT and JMP..RET.
SEQUENTIAL = [OP[o] for o in SEQUENTIAL_OPS]


def _next(v: torch.Tensor) -> torch.Tensor:
    """Move line ℓ to ℓ+1; the last line's mass runs off the end. ``(B, L) -> (B, L)``."""
    return torch.nn.functional.pad(v[:, :-1], (1, 0))


def control(ip: torch.Tensor, op: torch.Tensor, chi0: torch.Tensor, tgt: torch.Tensor, rstk: torch.Tensor,
            rsp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ip update and the halting mass of one step.

    Args:
        ip: ``(B, L)`` the ip at the start of the step.
        op: ``(L, O)`` opcode weights per line, ``O = 29``.
        chi0: ``(B,)`` :math:`\chi_0`, the probability that operand a is 0.
        tgt: ``(L, L)`` jump targets per line.
        rstk: ``(B, S, L)`` the return stack at the start of the step.
        rsp: ``(B, S)`` its pointer.

    Returns:
        ``(ip', halted)``: ``(B, L)`` and ``(B,)``.
    """
    q = ip[:, :, None] * op[None]
    c = chi0[:, None]
    q_jz, q_jnz = q[:, :, JZ], q[:, :, JNZ]
    jumped = q[:, :, JMP] + q[:, :, CALL] + c * q_jz + (1 - c) * q_jnz
    moved_on = q[:, :, SEQUENTIAL].sum(-1) + (1 - c) * q_jz + c * q_jnz
    ret_mass = q[:, :, RET].sum(-1)
    ret_to = torch.einsum("bs,bsl->bl", rsp, rstk)  # its missing mass is "no return address"
    new_ip = _next(moved_on) + jumped @ tgt + ret_mass[:, None] * ret_to
    run_off = moved_on[:, -1:].sum(-1)  # the last line's mass (none in a program of no lines)
    halted = q[:, :, HALT].sum(-1) + run_off + ret_mass * (1 - ret_to.sum(-1))
    return new_ip, halted
