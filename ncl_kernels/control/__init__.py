"""Control: the per-line ip update and the halting mass of one machine step (docs/design.md §3 steps 7-8).

:func:`control` validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either the
pure-PyTorch reference (autograd through it) or a fused forward with a hand-written fused backward.
"""

from __future__ import annotations

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.checks import check_inputs
from ncl_kernels.control import reference

__all__ = ["control", "NUM_OPS"]

NUM_OPS = reference.NUM_OPS



def control(ip: torch.Tensor, op: torch.Tensor, chi0: torch.Tensor, tgt: torch.Tensor, rstk: torch.Tensor,
            rsp: torch.Tensor, *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ip after one step, and the mass that halted during it.

    With :math:`q_k = ip \odot op[:, k]` (per line), :math:`c = \chi_0` and
    :math:`\mathrm{top} = \sum_s rsp_s\, rstk_s`:

    .. math::
        ip' = \mathrm{next}(q_{seq} + (1-c)\,q_{JZ} + c\,q_{JNZ})
              + (q_{JMP} + q_{CALL} + c\,q_{JZ} + (1-c)\,q_{JNZ})^\top tgt + (\textstyle\sum q_{RET})\,\mathrm{top}

    .. math::
        h = \textstyle\sum q_{HALT} + \text{run-off} + (\sum q_{RET})\,(1 - \sum_m \mathrm{top}_m)

    ``next`` moves line ℓ to ℓ+1; the last line's mass runs off the end and halts, and so does a RET's mass
    that finds no return address (``docs/machine.md``).

    Args:
        ip: ``(B, L)`` the ip at the start of the step.
        op: ``(L, O)`` opcode weights per line, ``O = 29`` in :data:`ncl_kernels.isa.OPCODES` order.
        chi0: ``(B,)`` the probability that operand a is 0 (``x[:, 0]``).
        tgt: ``(L, L)`` jump targets per line.
        rstk: ``(B, S, L)`` the return stack at the start of the step.
        rsp: ``(B, S)`` its pointer.
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(ip', halted)``: ``(B, L)`` and ``(B,)`` in the inputs' dtype.
    """
    sizes = check_inputs("control", ("ip", ip, "B L"), ("op", op, "L O"), ("chi0", chi0, "B"), ("tgt", tgt, "L L"),
                         ("rstk", rstk, "B S L"), ("rsp", rsp, "B S"))
    if sizes["O"] != NUM_OPS:
        raise ValueError(f"control: op must have shape (L, O) with O={NUM_OPS} (one column per opcode of "
                         f"ncl_kernels.isa.OPCODES), got shape {tuple(op.shape)}")
    chosen = dispatch.select(ip.device, ip.dtype, backend)
    if chosen == "reference":
        return reference.control(ip, op, chi0, tgt, rstk, rsp)
    return _oplib.apply("control", chosen, ip, op, chi0, tgt, rstk, rsp)


def _sample(g: torch.Generator):
    """A soft program (every opcode on every line), mass missing from ip (a half-halted machine) and from the
    return stack's slots (no return address). The branching ops (JZ, JNZ, RET) get extra weight: with 29 even
    weights the gradients of chi0 and rsp would be ~1e-3, too small for a 1% error to show at fp32 tolerance."""
    B, L, S = 3, 5, 4
    logits = torch.randn(L, NUM_OPS, generator=g)
    logits[:, [reference.JZ, reference.JNZ, reference.RET]] += 2.0
    return (torch.softmax(torch.randn(B, L, generator=g), -1) * torch.rand(B, 1, generator=g),
            torch.softmax(logits, -1), torch.rand(B, generator=g),
            torch.softmax(torch.randn(L, L, generator=g), -1),
            torch.softmax(torch.randn(B, S, L, generator=g), -1) * torch.rand(B, S, 1, generator=g),
            torch.softmax(torch.randn(B, S, generator=g), -1))


_oplib.register(_oplib.OpSpec(
    name="control",
    fn=control,
    fwd_schema="(Tensor ip, Tensor op, Tensor chi0, Tensor tgt, Tensor rstk, Tensor rsp) -> (Tensor, Tensor)",
    bwd_schema="(Tensor grad_ip, Tensor grad_halted, Tensor ip, Tensor op, Tensor chi0, Tensor tgt, Tensor rstk,"
               " Tensor rsp) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    fwd_fake=lambda ip, op, chi0, tgt, rstk, rsp: (torch.empty_like(ip), torch.empty_like(chi0)),
    triton_module="ncl_kernels.control.triton",
    num_outputs=2,
    sample=_sample,
))
