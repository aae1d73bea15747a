r"""The table ALU: every binary and unary op as an exact lookup table on distributions.

For a binary op with integer table :math:`T`,

.. math:: \text{out}[c] = \sum_{i,j:\ T(i,j) = c} x_i\, y_j,

and for a unary op :math:`\text{out}[c] = \sum_{i:\ T(i) = c} x_i`. This is the exact distribution of
``T(X, Y)`` for independent ``X ~ x`` and ``Y ~ y``. The reference computes it in scatter form: the outer
product ``x ⊗ y`` once, scatter-added into every table. That costs O(n²) per op; a fused kernel should use
the tables' structure instead (DESIGN §3 step 3).
"""

from __future__ import annotations

import functools

import torch

from ncl.machine.opcodes import BINARY_FUNCS, BINARY_OPS, UNARY_FUNCS, UNARY_OPS


@functools.lru_cache(maxsize=None)
def _binary_index(n: int, device: torch.device) -> torch.Tensor:
    """``(len(BINARY_OPS), n*n)`` long: entry ``[k, i*n + j] = T_k(i, j)``, cached per device."""
    rows = [[BINARY_FUNCS[op](i, j, n) for i in range(n) for j in range(n)] for op in BINARY_OPS]
    return torch.tensor(rows, dtype=torch.long, device=device)


@functools.lru_cache(maxsize=None)
def _unary_index(n: int, device: torch.device) -> torch.Tensor:
    """``(len(UNARY_OPS), n)`` long: entry ``[k, i] = T_k(i)``, cached per device."""
    rows = [[UNARY_FUNCS[op](i, n) for i in range(n)] for op in UNARY_OPS]
    return torch.tensor(rows, dtype=torch.long, device=device)


def binary_table(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Every binary op of :data:`~ncl.machine.opcodes.BINARY_OPS` on ``(x, y)``.

    .. math:: \text{out}_{b,k,c} = \sum_{i,j:\ T_k(i,j)=c} x_{b,i}\, y_{b,j}

    Args:
        x: ``(B, n)`` operand a.
        y: ``(B, n)`` operand b.

    Returns:
        ``(B, len(BINARY_OPS), n)``.
    """
    batch, n = x.shape
    index = _binary_index(n, x.device)
    ops = index.shape[0]
    outer = (x[:, :, None] * y[:, None, :]).reshape(batch, 1, n * n)
    out = x.new_zeros(batch, ops, n)
    # The outer product is shared by all tables (expanded, not copied).
    return out.scatter_add(2, index.expand(batch, ops, n * n), outer.expand(batch, ops, n * n))


def unary_table(x: torch.Tensor) -> torch.Tensor:
    r"""Every unary op of :data:`~ncl.machine.opcodes.UNARY_OPS` on ``x``.

    .. math:: \text{out}_{b,k,c} = \sum_{i:\ T_k(i)=c} x_{b,i}

    Args:
        x: ``(B, n)`` operand a.

    Returns:
        ``(B, len(UNARY_OPS), n)``.
    """
    batch, n = x.shape
    index = _unary_index(n, x.device)
    ops = index.shape[0]
    out = x.new_zeros(batch, ops, n)
    return out.scatter_add(2, index.expand(batch, ops, n), x[:, None, :].expand(batch, ops, n))
