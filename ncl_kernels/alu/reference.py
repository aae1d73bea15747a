r"""Reference (pure PyTorch) table ALU: the plain statement of the math, autograd through it.

For a binary op with integer table :math:`T` (:data:`ncl_kernels.isa.BINARY_FUNCS`),

.. math:: \text{out}[c] = \sum_{i,j:\ T(i,j) = c} x_i\, y_j,

and for a unary op :math:`\text{out}[c] = \sum_{i:\ T(i) = c} x_i`: the exact distribution of ``T(X, Y)`` for
independent ``X ~ x`` and ``Y ~ y``. The outer product ``x ⊗ y`` is formed once and scatter-added into
every table, O(n²) per op; the fused kernels use the tables' structure instead (``docs/alu.md``).
"""

from __future__ import annotations

import functools

import torch

from ncl_kernels.isa import ALU_OPS, BINARY_FUNCS, BINARY_OPS, UNARY_FUNCS, UNARY_OPS


def op_names() -> tuple[str, ...]:
    """The ops mixed by :func:`alu_mix`, in coefficient order: ``BINARY_OPS + UNARY_OPS``."""
    return ALU_OPS


@functools.lru_cache(maxsize=None)
def tables(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer tables on ``device``: binary ``(13, n*n)`` with entry ``[k, i*n + j] = T_k(i, j)``, and unary
    ``(3, n)`` with ``[k, i] = T_k(i)``."""
    binary = torch.tensor([[BINARY_FUNCS[op](i, j, n) for i in range(n) for j in range(n)] for op in BINARY_OPS],
                          dtype=torch.int64, device=device)
    unary = torch.tensor([[UNARY_FUNCS[op](i, n) for i in range(n)] for op in UNARY_OPS],
                         dtype=torch.int64, device=device)
    return binary, unary


def binary_table(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Every binary op of :data:`~ncl_kernels.isa.BINARY_OPS` on ``(x, y)``, each op's output apart.

    .. math:: \text{out}_{b,k,c} = \sum_{i,j:\ T_k(i,j)=c} x_{b,i}\, y_{b,j}

    Args:
        x: ``(B, n)`` operand a.
        y: ``(B, n)`` operand b.

    Returns:
        ``(B, 13, n)``.
    """
    batch, n = x.shape
    index = tables(n, str(x.device))[0]
    ops = index.shape[0]
    outer = (x[:, :, None] * y[:, None, :]).reshape(batch, 1, n * n)
    out = x.new_zeros(batch, ops, n)
    # The outer product is shared by all tables (expanded, not copied).
    return out.scatter_add(2, index.expand(batch, ops, n * n), outer.expand(batch, ops, n * n))


def unary_table(x: torch.Tensor) -> torch.Tensor:
    r"""Every unary op of :data:`~ncl_kernels.isa.UNARY_OPS` on ``x``, each op's output apart.

    .. math:: \text{out}_{b,k,c} = \sum_{i:\ T_k(i)=c} x_{b,i}

    Args:
        x: ``(B, n)`` operand a.

    Returns:
        ``(B, 3, n)``.
    """
    batch, n = x.shape
    index = tables(n, str(x.device))[1]
    ops = index.shape[0]
    out = x.new_zeros(batch, ops, n)
    return out.scatter_add(2, index.expand(batch, ops, n), x[:, None, :].expand(batch, ops, n))


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
    weighted_x = (coeffs[:, nb:, None] * x[:, None, :]).reshape(B, unary.numel())
    return out.scatter_add(1, unary.reshape(1, -1).expand(B, -1), weighted_x)
