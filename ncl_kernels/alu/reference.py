"""Reference (pure PyTorch) table ALU mixture: the plain statement of the math, autograd through it.

The integer tables come from :mod:`ncl.machine.opcodes` (the one list of ops and their semantics); the
outer product ``x ⊗ y`` is formed once and scatter-added, weighted by each op's coefficient, into the output.
"""

from __future__ import annotations

import functools

import torch


def op_names() -> tuple[str, ...]:
    """The ops mixed by :func:`alu_mix`, in coefficient order: ``BINARY_OPS + UNARY_OPS``."""
    from ncl.machine.opcodes import BINARY_OPS, UNARY_OPS  # here, not at import: ncl imports ncl_kernels

    return BINARY_OPS + UNARY_OPS


@functools.lru_cache(maxsize=None)
def tables(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer tables on ``device``: binary ``(13, n*n)`` with entry ``[k, i*n + j] = T_k(i, j)``, and unary
    ``(3, n)`` with ``[k, i] = T_k(i)``."""
    from ncl.machine.opcodes import BINARY_FUNCS, BINARY_OPS, UNARY_FUNCS, UNARY_OPS

    binary = torch.tensor([[BINARY_FUNCS[op](i, j, n) for i in range(n) for j in range(n)] for op in BINARY_OPS],
                          dtype=torch.int64, device=device)
    unary = torch.tensor([[UNARY_FUNCS[op](i, n) for i in range(n)] for op in UNARY_OPS],
                         dtype=torch.int64, device=device)
    return binary, unary


def alu_mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    r"""Mixture of every table op, scatter form.

    .. math:: \text{out}_{b,c} = \sum_{k \in \text{binary}} e_{b,k} \sum_{i,j:\,T_k(i,j)=c} x_{b,i}\, y_{b,j}
              + \sum_{k \in \text{unary}} e_{b,k} \sum_{i:\,T_k(i)=c} x_{b,i}

    Args:
        x: ``(B, n)`` operand a.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, K)`` op weights ``e``, ``K = 16`` in the order of :func:`op_names`.

    Returns:
        ``(B, n)`` in the inputs' dtype.
    """
    B, n = x.shape
    binary, unary = tables(n, str(x.device))
    nb = binary.shape[0]
    outer = (x[:, :, None] * y[:, None, :]).reshape(B, 1, n * n)  # once, shared by every binary op
    weighted = (coeffs[:, :nb, None] * outer).reshape(B, nb * n * n)
    out = x.new_zeros(B, n).scatter_add(1, binary.reshape(1, -1).expand(B, -1), weighted)
    weighted_x = (coeffs[:, nb:, None] * x[:, None, :]).reshape(B, -1)
    return out.scatter_add(1, unary.reshape(1, -1).expand(B, -1), weighted_x)
