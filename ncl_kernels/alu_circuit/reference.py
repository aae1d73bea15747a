"""Reference (pure PyTorch) circuit ALU mixture: the per-op circuits of :mod:`ncl_kernels.alu_circuit.circuits`,
mixed by an einsum, autograd through them. The executable spec of :func:`ncl_kernels.alu_circuit_mix` (float64
capable), and exactly what the machine step's reference path computes for ``alu="circuit"``."""

from __future__ import annotations

import torch

from ncl_kernels.alu_circuit.circuits import binary_circuit, unary_circuit


def alu_circuit_mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    r"""Mixture of every circuit op.

    .. math:: \text{out}_{b} = \sum_k e_{b,k}\, \mathrm{from\_bits}(C_k(\mathrm{to\_bits}(x_b), \mathrm{to\_bits}(y_b)))

    Args:
        x: ``(B, n)`` operand a, ``n`` a power of two.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, 16)`` op weights in the order ``BINARY_OPS + UNARY_OPS``.

    Returns:
        ``(B, n)`` in the inputs' dtype.
    """
    outs = torch.cat([binary_circuit(x, y), unary_circuit(x)], dim=1)  # (B, 16, n)
    return torch.einsum("bk,bkn->bn", coeffs, outs)
