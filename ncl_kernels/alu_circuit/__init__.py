r"""The circuit ALU mixture: every binary and unary value op of the machine computed by soft boolean circuits
on bit marginals (:mod:`ncl_kernels.alu_circuit.circuits`), mixed by weight, in one fused op.

:func:`alu_circuit_mix` validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either
the pure-PyTorch reference (the per-op circuits and an einsum, autograd through them) or a fused forward
with a hand-written fused backward. The fused kernels run the circuits as a netlist
(:mod:`ncl_kernels.alu_circuit.netlist`): the straight-line program of ``circuits.py``, recorded once per
bit width by running that code on symbolic wires, so the circuits are defined in one place only.
"""

from __future__ import annotations

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.alu_circuit import netlist, reference
from ncl_kernels.checks import check_inputs
from ncl_kernels.isa import ALU_OPS

__all__ = ["alu_circuit_mix", "NUM_OPS"]

#: Number of mixed ops: ``len(ALU_OPS)`` of :mod:`ncl_kernels.isa` (``circuit::kNumOps`` of
#: ``csrc/include/ncl/alu_circuit.h``, from the generated ``opcodes.h``).
NUM_OPS = len(ALU_OPS)



@torch.compiler.assume_constant_result
def _netlist(m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # A constant of the traced graph under torch.compile: the recording itself is plain Python on symbolic
    # wires, which Dynamo should neither trace nor guard on.
    return netlist.tensors(m, device)


def alu_circuit_mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, *,
                    backend: str | None = None) -> torch.Tensor:
    r"""Weighted mixture of the circuit ALU's ops on soft operands (docs/design.md §3, ``alu="circuit"``).

    With :math:`n = 2^m` and :math:`\text{bit}_i(v)` the ``i``-th bit of ``v``:

    .. math::
        a_i = \sum_v \text{bit}_i(v)\, x_v, \qquad b_i = \sum_v \text{bit}_i(v)\, y_v \qquad
        \text{(bit marginals, } i < m\text{)}

        p^{(k)} = C_k(a, b) \in \mathbb{R}^m \qquad \text{(op } k\text{'s circuit: gates }
        ab,\ a + b - ab,\ a + b - 2ab,\ 1 - a\text{)}

        \text{out}_{b,v} = \sum_k e_{b,k} \prod_{i<m} \big(p^{(k)}_i\big)^{\text{bit}_i(v)}
                           \big(1 - p^{(k)}_i\big)^{1 - \text{bit}_i(v)}

    ``C_k`` are the circuits of :mod:`ncl_kernels.alu_circuit.circuits` (ripple-carry ADD/SUB/INC/DEC, shift-add MUL,
    restoring DIV/MOD with 0 for division by 0, subtractor-based comparisons), unary ops on ``x``. On hard
    (one-hot) operands every op is exact and equals the table ALU (:func:`ncl_kernels.alu_mix`); on soft
    ones it is a mean-field approximation. ``x`` and ``y`` need not be distributions.

    The fused backends never form the ``(B, 16, n)`` per-op outputs: each row evaluates the netlist (about
    1400 gates at ``n = 128``), folds each op's bits into the output by doubling (``O(2n)`` per op), and the
    backward replays both in reverse (see ``docs/alu.md``).

    Args:
        x: ``(B, n)`` operand a, ``n`` a power of two ``>= 2``.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, 16)`` op weights ``e`` in the order ``BINARY_OPS + UNARY_OPS``
            (:func:`ncl_kernels.alu.op_names`).
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(B, n)``, in the inputs' dtype (accumulated in fp32, or fp64 for fp64 inputs).
    """
    sizes = check_inputs("alu_circuit_mix", ("x", x, "B n"), ("y", y, "B n"), ("coeffs", coeffs, "B K"))
    if sizes["K"] != NUM_OPS:
        raise ValueError(f"alu_circuit_mix: coeffs must have shape (B, K) with K={NUM_OPS} (one weight per op "
                         f"of BINARY_OPS + UNARY_OPS), got shape {tuple(coeffs.shape)}")
    n = sizes["n"]
    if n < 2 or n & (n - 1):
        raise ValueError(f"alu_circuit_mix: x must have shape (B, n) with n a power of two >= 2 (the circuits "
                         f"act on log2(n) bits), got shape {tuple(x.shape)}")
    chosen = dispatch.select(x.device, x.dtype, backend)
    if chosen == "reference":
        return reference.alu_circuit_mix(x, y, coeffs)
    gates, outputs = _netlist(n.bit_length() - 1, x.device)
    return _oplib.apply("alu_circuit_mix", chosen, x, y, coeffs, gates, outputs)


def _sample(g: torch.Generator):
    """Soft operands and dense weights: every op contributes, every bit marginal strictly inside (0, 1)."""
    return (torch.softmax(torch.randn(3, 8, generator=g), -1), torch.softmax(torch.randn(3, 8, generator=g), -1),
            torch.softmax(torch.randn(3, NUM_OPS, generator=g), -1))


def _kernel_args(x, y, coeffs):
    return (x, y, coeffs, *_netlist(x.shape[1].bit_length() - 1, x.device))


_oplib.register(_oplib.OpSpec(
    name="alu_circuit_mix",
    fn=alu_circuit_mix,
    fwd_schema="(Tensor x, Tensor y, Tensor coeffs, Tensor gates, Tensor outputs) -> Tensor",
    bwd_schema="(Tensor grad, Tensor x, Tensor y, Tensor coeffs, Tensor gates, Tensor outputs)"
               " -> (Tensor, Tensor, Tensor)",
    fwd_fake=lambda x, y, coeffs, gates, outputs: torch.empty_like(x),
    triton_module="ncl_kernels.alu_circuit.triton",
    sample=_sample,
    kernel_args=_kernel_args,
))
