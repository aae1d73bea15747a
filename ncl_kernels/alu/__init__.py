"""The table ALU mixture: every binary and unary value op of the machine on soft operands, mixed by weight.

:func:`alu_mix` validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either the
pure-PyTorch reference (autograd through it) or a fused forward with a hand-written fused backward. The
fused kernels use each table's structure (docs/design.md §3 "Where the time goes"; see ``docs/alu.md``) and skip,
per row, an op whose weight is at most :data:`SKIP_REL` times the row's largest weight.
"""

from __future__ import annotations

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.alu import reference
from ncl_kernels.checks import check_inputs
from ncl_kernels.isa import ALU_OPS

__all__ = ["alu_mix", "check_operands", "op_names", "NUM_OPS", "SKIP_REL", "SUPPORT_REL"]

#: Number of mixed ops: ``len(ALU_OPS)`` of :mod:`ncl_kernels.isa`.
NUM_OPS = len(ALU_OPS)
#: Relative weight below which a fused backend skips an op in a row's forward pass: ``2**-40``. Each op's
#: output has ℓ1 mass at most ``‖x‖₁‖y‖₁`` (``‖x‖₁`` if unary), so the skipped terms move a row by at most
#: ``16 · 2**-40`` of that mass, below fp32 resolution of its large entries. Equals ``alu::kSkipRel`` in
#: ``csrc/include/ncl/alu.h`` (tested).
SKIP_REL = 2.0 ** -40
#: The fp32 fused forwards sum the pair ops over the operands' supports: the entries above ``SUPPORT_REL / n``
#: times the operand's largest entry (``alu::support_threshold<float>`` in ``csrc/include/ncl/alu.h``, where the
#: bound is derived: the dropped terms move a pair sum by at most ``2**-26`` of ``‖x‖₁‖y‖₁``, a quarter of its fp32
#: rounding). A sharp machine's registers are one-hot up to leaks of ~1e-13, so a pair op then costs O(n), not O(n²).
SUPPORT_REL = 2.0 ** -26

op_names = reference.op_names



def check_operands(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> dict[str, int]:
    """The checks of :func:`alu_mix` (and of the best-eager ``ncl_kernels.alu.eager.alu_mix``): shapes, dtypes,
    devices, 16 weights, ``n >= 2``; a ``ValueError`` naming the argument. Returns the sizes ``{"B", "n", "K"}``."""
    sizes = check_inputs("alu_mix", ("x", x, "B n"), ("y", y, "B n"), ("coeffs", coeffs, "B K"))
    if sizes["K"] != NUM_OPS:
        raise ValueError(f"alu_mix: coeffs must have shape (B, K) with K={NUM_OPS} (one weight per op of "
                         f"BINARY_OPS + UNARY_OPS), got shape {tuple(coeffs.shape)}")
    if sizes["n"] < 2:
        raise ValueError(f"alu_mix: x must have shape (B, n) with n >= 2 (comparisons give 0 or 1), "
                         f"got shape {tuple(x.shape)}")
    return sizes


def alu_mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    r"""Weighted mixture of the table ALU's ops on soft operands.

    .. math:: \text{out}_{b,c} = \sum_{k} e_{b,k}\, \text{op}_k(x_b, y_b)_c, \qquad
              \text{op}_k(x, y)_c = \sum_{i,j:\,T_k(i,j)=c} x_i y_j \ \text{(binary)}, \quad
              \text{op}_k(x)_c = \sum_{i:\,T_k(i)=c} x_i \ \text{(unary, on } x\text{)}

    ``T_k`` is op ``k``'s integer semantics on ``Z_n`` (:data:`ncl_kernels.isa.BINARY_FUNCS` and
    ``UNARY_FUNCS``). ``x`` and ``y`` are usually distributions over ``Z_n``, but need not be.

    Args:
        x: ``(B, n)`` operand a, ``n >= 2``.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, 16)`` op weights ``e`` in the order ``BINARY_OPS + UNARY_OPS`` (:func:`op_names`).
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(B, n)``, in the inputs' dtype (accumulated in fp32, or fp64 for fp64 inputs).
    """
    check_operands(x, y, coeffs)
    chosen = dispatch.select(x.device, x.dtype, backend)
    if chosen == "reference":
        return reference.alu_mix(x, y, coeffs)
    return _oplib.apply("alu_mix", chosen, x, y, coeffs)


def _sample(g: torch.Generator):
    """Soft operands and dense weights: every op contributes."""
    return (torch.softmax(torch.randn(3, 6, generator=g), -1), torch.softmax(torch.randn(3, 6, generator=g), -1),
            torch.softmax(torch.randn(3, NUM_OPS, generator=g), -1))


_oplib.register(_oplib.OpSpec(
    name="alu_mix",
    fn=alu_mix,
    fwd_schema="(Tensor x, Tensor y, Tensor coeffs) -> Tensor",
    bwd_schema="(Tensor grad, Tensor x, Tensor y, Tensor coeffs) -> (Tensor, Tensor, Tensor)",
    fwd_fake=lambda x, y, coeffs: torch.empty_like(x),
    triton_module="ncl_kernels.alu.triton",
    sample=_sample,
))
