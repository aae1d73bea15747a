r"""The table ALU mixture in its fastest plain-PyTorch form: the best-eager baseline of ``alu_mix``.

Same math as :mod:`ncl_kernels.alu.reference` (the readable statement and the correctness oracle), exact
against it in float64 (``tests/test_alu_eager.py``), but no op builds its ``n × n`` table per row. With
``x, y: (B, n)`` and :math:`\bar{k} = -k \bmod n`:

* **ADD, SUB, INC, DEC** are one circulant product. With :math:`H_{c,k} = x_{(c+k) \bmod n}`,
  :math:`\mathrm{ADD}_c = \sum_k H_{c,k}\, y_{\bar k}`, :math:`\mathrm{SUB}_c = \sum_k H_{c,k}\, y_k`,
  :math:`\mathrm{INC}_c = H_{c,n-1}` and :math:`\mathrm{DEC}_c = H_{c,1}`, so their mixture is
  :math:`H v` with :math:`v = e_{ADD}\, y_{\bar\cdot} + e_{SUB}\, y + e_{INC}\, \delta_{n-1} + e_{DEC}\, \delta_1`:
  one product with a strided view of ``x`` (:class:`_Circulant`, whose backward is the same product twice).
* **MUL, DIV, MOD**, the only tables without such structure, are one ``index_add`` of the outer product
  into the three ops' outputs (:class:`_PairTables`), batch-last so every row of the scatter is ``B``
  contiguous numbers.
* **MIN, MAX** from prefix and suffix sums:
  :math:`\mathrm{MIN}_c = x_c \sum_{j \ge c} y_j + y_c \sum_{i > c} x_i`,
  :math:`\mathrm{MAX}_c = x_c \sum_{j \le c} y_j + y_c \sum_{i < c} x_i`.
* **EQ, NE, LT, LE, AND, OR, NOT** put mass on 0 and 1 only, from three numbers per row,
  :math:`P(X<Y) = \sum_j y_j \sum_{i<j} x_i`, :math:`P(X=Y) = \sum_i x_i y_i`,
  :math:`P(X>Y) = \sum_j y_j \sum_{i>j} x_i`, and the masses at and away from 0.

No formula subtracts one probability from another, so one-hot or non-negative inputs give non-negative
outputs with no cancellation error (an FFT convolution would leave rounding noise of either sign on every
entry, which in fp32 is far above the 1e-13 leaks of a sharp machine). Autograd runs through every formula;
the two :class:`torch.autograd.Function` s have backward passes made of the same differentiable ops.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from ncl_kernels.alu import check_operands
from ncl_kernels.alu.reference import tables
from ncl_kernels.isa import ALU_OPS, BINARY_OPS

#: Column of each op in ``coeffs`` (the order of :data:`ncl_kernels.isa.ALU_OPS`).
_COL = {name: k for k, name in enumerate(ALU_OPS)}
#: The ops computed by :class:`_PairTables`, as rows of the reference's binary tables.
PAIR_OPS = ("MUL", "DIV", "MOD")
#: The ops whose output is 0 or 1, and :math:`(P(1), P(0))` of each as sums of the features of
#: :func:`_bool_features`: ``lt, eq, gt`` (P(X<Y), P(X=Y), P(X>Y)) and the products of the masses at and away
#: from 0, ``x0 = P(X=0)``, ``xz = P(X≠0)``, ``sx = Σx`` (the same for y).
BOOL_OPS = {
    "EQ": (("eq",), ("lt", "gt")),
    "NE": (("lt", "gt"), ("eq",)),
    "LT": (("lt",), ("eq", "gt")),
    "LE": (("lt", "eq"), ("gt",)),
    "AND": (("xz*yz",), ("x0*sy", "xz*y0")),
    "OR": (("xz*sy", "x0*yz"), ("x0*y0",)),
    "NOT": (("x0",), ("xz",)),
}
_FEATURES = ("lt", "eq", "gt", "x0*y0", "x0*yz", "x0*sy", "xz*y0", "xz*yz", "xz*sy", "x0", "xz")


class Tables(NamedTuple):
    """The constants of :func:`mix` for one ``(n, dtype, device)``, built once by :func:`tables_for` (outside
    any ``torch.compile``'d code, which would trace the Python loops that build them).

    ``pairs``: three ``(n*n,)`` int64 tensors, the ``k``-th mapping ``i*n + j`` to ``T_k(i, j)`` for ``k`` in
    :data:`PAIR_OPS`, sliced from the reference's tables (:func:`ncl_kernels.alu.reference.tables`), the one
    source of the integer semantics. Separate tensors, not rows of one: ``index_select`` and ``index_add``
    with a row view as the index ran 3-5x slower (PyTorch 2.14, CPU).
    ``bool_map``: ``(11, 14)`` 0/1, the features of :func:`_bool_features` to :data:`BOOL_OPS`' P(1) columns,
    then their P(0) columns.
    """

    pairs: tuple[torch.Tensor, ...]
    bool_map: torch.Tensor


@functools.lru_cache(maxsize=None)
def tables_for(n: int, dtype: torch.dtype, device: str) -> Tables:
    """:class:`Tables` for values in ``Z_n``, in ``dtype`` on ``device`` (cached)."""
    binary = tables(n, device)[0]
    pairs = tuple(binary[BINARY_OPS.index(op)].clone() for op in PAIR_OPS)
    bool_map = torch.zeros(len(_FEATURES), 2 * len(BOOL_OPS), dtype=dtype)
    for k, (ones, zeros) in enumerate(BOOL_OPS.values()):
        for half, names in ((0, ones), (1, zeros)):
            for name in names:
                bool_map[_FEATURES.index(name), half * len(BOOL_OPS) + k] = 1
    return Tables(pairs, bool_map.to(device))


#: Below this batch :func:`mix` scatters MUL/DIV/MOD batch-first: ``index_add`` costs per index entry (3n² of
#: them) almost independently of ``B``, ``scatter_add`` per element (3n²·B); measured equal near B = 6 (CPU).
PAIR_BATCH_LAST = 8


def _hankel_mv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r""":math:`\text{out}_{b,c} = \sum_k a_{b,(c+k) \bmod n}\, v_{b,k}`. ``a, v: (B, n) -> (B, n)``.

    The Hankel matrix is a strided view of ``[a, a]`` (``unfold``): no index tensor, no gather. Multiplying the
    view and summing measured 1.8x faster than ``bmm`` of it (which copies it first) on CPU."""
    n = a.shape[-1]
    hankel = torch.cat([a, a], -1).unfold(-1, n, 1)[:, :n]  # (B, n, n)
    return (hankel * v[:, None, :]).sum(-1)


def _reverse(v: torch.Tensor) -> torch.Tensor:
    r""":math:`v_{\bar k} = v_{-k \bmod n}` along the last axis."""
    return torch.cat([v[..., :1], v[..., 1:].flip(-1)], -1)


class _Circulant(torch.autograd.Function):
    r""":math:`\text{out}_c = \sum_k a_{(c+k) \bmod n}\, v_k` (``a, v: (B, n)``), with the backward written out.

    The Hankel matrix is symmetric, so :math:`\partial/\partial v = H(a)\, g` and
    :math:`\partial/\partial a_m = \sum_{c+k \equiv m} g_c v_k = H(g)\, v_{\bar\cdot}`: the same product twice.
    Autograd through the ``unfold`` view instead materialises the ``(B, n, n)`` gradient of the matrix and
    scatters it back: forward+backward measured 2-4x slower (CPU, B = 32, n = 128).
    """

    @staticmethod
    def forward(ctx, a, v):
        ctx.save_for_backward(a, v)
        return _hankel_mv(a, v)

    @staticmethod
    def backward(ctx, grad):
        a, v = ctx.saved_tensors
        grad = grad.contiguous()
        return _Circulant.apply(grad, _reverse(v)), _Circulant.apply(a, grad)


def _pair_forward(xt: torch.Tensor, yt: torch.Tensor, index: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``xt, yt: (n, B)`` -> ``(3, n, B)``, the :data:`PAIR_OPS` outputs, batch-last."""
    n, batch = xt.shape
    outer = (xt[:, None, :] * yt[None, :, :]).reshape(n * n, batch)
    zero = xt.new_zeros(n, batch)
    return torch.stack([torch.index_add(zero, 0, row, outer) for row in index])


class _PairTables(torch.autograd.Function):
    r"""MUL, DIV and MOD of batch-last operands: ``xt, yt: (n, B)``, ``index`` :attr:`Tables.pairs` ->
    ``(3, n, B)``, :math:`\text{out}_{k,c} = \sum_{i,j:\ T_k(i,j)=c} x_i\, y_j`.

    The outer product is ``(n*n, B)``, so ``index_add`` adds rows of ``B`` contiguous numbers: about 4x faster on
    CPU than ``scatter_add`` along a batch-first row at B = 32. The backward gathers rows of the (contiguous)
    gradient, :math:`G_{ij} = \sum_k g_{k, T_k(i,j)}`, then :math:`\partial/\partial x_i = \sum_j G_{ij} y_j`
    and :math:`\partial/\partial y_j = \sum_i G_{ij} x_i`; autograd's own backward gathered from a strided
    gradient, several times slower.
    """

    @staticmethod
    def forward(ctx, xt, yt, *index):
        ctx.save_for_backward(xt, yt, *index)
        return _pair_forward(xt, yt, index)

    @staticmethod
    def backward(ctx, grad):
        xt, yt, *index = ctx.saved_tensors
        n, batch = xt.shape
        grad = grad.contiguous()
        g = grad[0].index_select(0, index[0])
        for k in range(1, len(index)):
            g = g + grad[k].index_select(0, index[k])
        g = g.view(n, n, batch)
        return ((g * yt[None]).sum(1), (g * xt[:, None]).sum(0), *(None for _ in index))


def _pairs(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, index: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The weighted sum of MUL, DIV and MOD, ``(B, n)``: batch-last from :data:`PAIR_BATCH_LAST` rows on, else
    one batch-first ``scatter_add`` (the reference's, on three tables instead of thirteen)."""
    batch, n = x.shape
    weights = coeffs[:, [_COL[op] for op in PAIR_OPS]]  # (B, 3)
    if batch >= PAIR_BATCH_LAST:
        pairs = _PairTables.apply(x.t().contiguous(), y.t().contiguous(), *index)  # (3, n, B)
        return (pairs * weights.t()[:, None, :]).sum(0).t()
    outer = (x[:, :, None] * y[:, None, :]).reshape(batch, 1, n * n).expand(batch, len(index), n * n)
    table = torch.stack(index)[None].expand(batch, len(index), n * n)
    pairs = x.new_zeros(batch, len(index), n).scatter_add(2, table, outer)
    return torch.bmm(weights[:, None, :], pairs)[:, 0]


def _bool_features(x: torch.Tensor, y: torch.Tensor, x_lt: torch.Tensor, x_gt: torch.Tensor,
                   prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
    r"""The features named in :data:`_FEATURES`, ``(B, 11)``, from :math:`\sum_{i<j} x_i` and
    :math:`\sum_{i>j} x_i` ``(B, n)`` and the inclusive prefix and suffix sums ``(B, 2, n)`` of ``x`` (row 0)
    and ``y`` (row 1)."""
    lt_eq_gt = (torch.stack([x_lt, x, x_gt], 1) * y[:, None, :]).sum(-1)
    # Masses at 0, away from 0 (a suffix sum, not Σ - x0: no cancellation) and in all, of x then of y.
    masses = torch.stack([x[:, 0], suffix[:, 0, 1], prefix[:, 0, -1]], 1)
    ymass = torch.stack([y[:, 0], suffix[:, 1, 1], prefix[:, 1, -1]], 1)
    products = (masses[:, :2, None] * ymass[:, None, :]).reshape(-1, 6)  # x0*y0, x0*yz, x0*sy, xz*y0, ...
    return torch.cat([lt_eq_gt, products, masses[:, :2]], 1)


def mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, constants: Tables,
        mov: torch.Tensor | None = None) -> torch.Tensor:
    r"""The mixture of every table op, no input checks (the body of :func:`alu_mix`).

    .. math:: \text{out}_{b,c} = \sum_k e_{b,k}\, \text{op}_k(x_b, y_b)_c \;(+\ m_b\, x_{b,c})

    Args:
        x: ``(B, n)`` operand a, ``n >= 2``.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, 16)`` op weights in the order of :data:`~ncl_kernels.isa.ALU_OPS`.
        constants: :func:`tables_for` ``(n, dtype, device)``.
        mov: ``(B,)`` weight of ``x`` itself, added in the same circulant product (the machine's MOV is
            :math:`H_{c,0}`); default none.

    Returns:
        ``(B, n)``.
    """
    n = x.shape[-1]
    col = _COL

    # ADD, SUB, INC, DEC (and MOV): one circulant product H(x) v.
    v = coeffs[:, col["ADD"], None] * _reverse(y) + coeffs[:, col["SUB"], None] * y
    v[:, n - 1] += coeffs[:, col["INC"]]
    v[:, 1] += coeffs[:, col["DEC"]]
    if mov is not None:
        v[:, 0] += mov
    out = _Circulant.apply(x, v)

    # MUL, DIV, MOD: one index_add, batch-last (or one scatter_add at a small batch).
    out = out + _pairs(x, y, coeffs, constants.pairs)

    # MIN, MAX from inclusive prefix and suffix sums of x and y.
    xy = torch.stack([x, y], 1)  # (B, 2, n)
    prefix = xy.cumsum(-1)
    suffix = xy.flip(-1).cumsum(-1).flip(-1)
    c_min, c_max = coeffs[:, col["MIN"], None], coeffs[:, col["MAX"], None]
    x_lt = torch.nn.functional.pad(prefix[:, 0, :-1], (1, 0))  # Σ_{i<c} x_i, exclusive: no cancellation
    x_gt = torch.nn.functional.pad(suffix[:, 0, 1:], (0, 1))   # Σ_{i>c} x_i
    out = out + x * (c_min * suffix[:, 1] + c_max * prefix[:, 1]) + y * (c_min * x_gt + c_max * x_lt)

    # EQ NE LT LE AND OR NOT: P(1) and P(0) per op from 11 features, mixed by their weights.
    features = _bool_features(x, y, x_lt, x_gt, prefix, suffix)
    per_op = (features @ constants.bool_map).view(-1, 2, len(BOOL_OPS))
    p1, p0 = (per_op * coeffs[:, None, [col[op] for op in BOOL_OPS]]).sum(-1).unbind(1)
    return out + torch.nn.functional.pad(torch.stack([p0, p1], 1), (0, n - 2))


def alu_mix(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    r"""Weighted mixture of the table ALU's ops on soft operands, best-eager form (module docstring).

    .. math:: \text{out}_{b,c} = \sum_{k} e_{b,k}\, \text{op}_k(x_b, y_b)_c

    The same function as :func:`ncl_kernels.alu.reference.alu_mix`, with its input checks (a ``ValueError``
    naming the argument); differentiable by autograd; any float dtype and device.

    Args:
        x: ``(B, n)`` operand a, ``n >= 2``.
        y: ``(B, n)`` operand b.
        coeffs: ``(B, 16)`` op weights ``e`` in the order of :data:`~ncl_kernels.isa.ALU_OPS`.

    Returns:
        ``(B, n)`` in the inputs' dtype.
    """
    n = check_operands(x, y, coeffs)["n"]
    return mix(x, y, coeffs, tables_for(n, x.dtype, str(x.device)))
