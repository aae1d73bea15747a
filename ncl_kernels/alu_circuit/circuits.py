r"""The circuit ALU: soft boolean gates on bit marginals.

A value ``x`` (a distribution over :math:`\mathbb{Z}_n`, :math:`n = 2^m`) is reduced to its bit marginals
:math:`p_i = P(\text{bit}_i(X) = 1)`. Soft gates act on marginals as if the bits were independent:

.. math:: \mathrm{AND}(a,b) = ab,\quad \mathrm{OR}(a,b) = a + b - ab,\quad
          \mathrm{XOR}(a,b) = a + b - 2ab,\quad \mathrm{NOT}(a) = 1 - a,

and the output bits are folded back into a value by their product,
:math:`\text{out}[v] = \prod_i p_i^{\text{bit}_i(v)} (1 - p_i)^{1 - \text{bit}_i(v)}`.
On hard values every gate is exact, so the circuit ALU equals the table ALU there. On soft values it is a
mean-field approximation with O(m²) cost per op instead of O(n²).

Every op is a circuit, DIV and MOD included (restoring division); nothing falls back to a table.
A "bit vector" below is a list of ``m`` tensors of shape ``(B,)``, least significant bit first.
"""

from __future__ import annotations

import functools

import torch

from ncl_kernels.isa import BINARY_OPS, UNARY_OPS


def AND(a, b):  # noqa: N802  (gate names read as the gates)
    return a * b


def OR(a, b):  # noqa: N802
    return a + b - a * b


def XOR(a, b):  # noqa: N802
    return a + b - 2 * a * b


def NOT(a):  # noqa: N802
    return 1 - a


def MUX(s, if_one, if_zero):  # noqa: N802
    """``s ? if_one : if_zero`` on marginals."""
    return s * if_one + (1 - s) * if_zero


@functools.lru_cache(maxsize=None)
def _bit_matrix(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    m = (n - 1).bit_length()
    v = torch.arange(n, device=device)
    return ((v[:, None] >> torch.arange(m, device=device)) & 1).to(dtype)


def to_bits(x: torch.Tensor) -> list[torch.Tensor]:
    r"""Bit marginals of a value: :math:`p_i = \sum_{v:\ \text{bit}_i(v) = 1} x_v`.

    Args:
        x: ``(B, n)``.

    Returns:
        ``m`` tensors ``(B,)``, least significant first.
    """
    return list((x @ _bit_matrix(x.shape[-1], x.device, x.dtype)).unbind(-1))


def from_bits(bits: list[torch.Tensor]) -> torch.Tensor:
    r"""Fold bit marginals into a value by their product.

    Args:
        bits: ``m`` tensors ``(B,)``, least significant first.

    Returns:
        ``(B, 2**m)``; a distribution whenever every marginal is in ``[0, 1]``.
    """
    out = torch.stack([1 - bits[0], bits[0]], dim=-1)
    for p in bits[1:]:
        # Values with bit i clear come first, then those with bit i set: index v + 2^i.
        out = torch.cat([out * (1 - p)[:, None], out * p[:, None]], dim=-1)
    return out


def _add(a, b, carry):
    """Ripple-carry adder; returns the sum bits (mod 2^m) and the carry out."""
    out = []
    for ai, bi in zip(a, b):
        axb = XOR(ai, bi)
        out.append(XOR(axb, carry))
        carry = OR(AND(ai, bi), AND(carry, axb))
    return out, carry


def _sub(a, b):
    """``a - b`` mod 2^m as ``a + ~b + 1``; the carry out is 1 exactly when ``a >= b``."""
    return _add(a, [NOT(bi) for bi in b], torch.ones_like(a[0]))


def _nonzero(a):
    """P(the value is not 0): OR over all bits, as NOT(AND of NOTs)."""
    return NOT(_all(NOT(ai) for ai in a))


def _all(bits):
    bits = list(bits)
    out = bits[0]
    for p in bits[1:]:
        out = AND(out, p)
    return out


def _flag(p, m):
    """A boolean marginal as a value in ``{0, 1}``."""
    return [p] + [torch.zeros_like(p)] * (m - 1)


def _mul(a, b):
    """Shift-and-add multiplier, truncated to m bits (mod 2^m)."""
    m = len(a)
    zero = torch.zeros_like(a[0])
    acc = [zero] * m
    for i, bi in enumerate(b):
        partial = [zero] * i + [AND(bi, aj) for aj in a[: m - i]]
        acc, _ = _add(acc, partial, zero)
    return acc


def _divmod(a, b):
    """Restoring division; both results are 0 when ``b == 0`` (docs/design.md §3)."""
    m = len(a)
    zero = torch.zeros_like(a[0])
    b_wide = list(b) + [zero]  # m+1 bits: the shifted remainder can reach 2b - 1
    rem = [zero] * (m + 1)
    quotient = [zero] * m
    for i in reversed(range(m)):
        rem = [a[i]] + rem[:m]  # shift left and bring down bit i; bit m of the old rem is 0 here
        diff, fits = _sub(rem, b_wide)
        quotient[i] = fits
        rem = [MUX(fits, d, r) for d, r in zip(diff, rem)]
    divides = _nonzero(b)  # b == 0 would give all ones and rem = a; force both to 0
    return [AND(q, divides) for q in quotient], [AND(r, divides) for r in rem[:m]]


def binary_bits(op: str, a: list, b: list) -> list:
    """Binary op ``op`` (a name of ``BINARY_OPS``) on the bit vectors ``a`` and ``b``: its result's bits."""
    m = len(a)
    if op == "ADD":
        return _add(a, b, torch.zeros_like(a[0]))[0]
    if op == "SUB":
        return _sub(a, b)[0]
    if op == "MUL":
        return _mul(a, b)
    if op in ("DIV", "MOD"):
        q, r = _divmod(a, b)
        return q if op == "DIV" else r
    if op in ("EQ", "NE"):
        eq = _all(NOT(XOR(ai, bi)) for ai, bi in zip(a, b))
        return _flag(eq if op == "EQ" else NOT(eq), m)
    if op == "LT":
        return _flag(NOT(_sub(a, b)[1]), m)
    if op == "LE":
        return _flag(_sub(b, a)[1], m)
    if op in ("MIN", "MAX"):
        a_lt_b = NOT(_sub(a, b)[1])
        pick = (lambda ai, bi: MUX(a_lt_b, ai, bi)) if op == "MIN" else (lambda ai, bi: MUX(a_lt_b, bi, ai))
        return [pick(ai, bi) for ai, bi in zip(a, b)]
    if op == "AND":
        return _flag(AND(_nonzero(a), _nonzero(b)), m)
    if op == "OR":
        return _flag(OR(_nonzero(a), _nonzero(b)), m)
    raise AssertionError(op)


def unary_bits(op: str, a: list) -> list:
    """Unary op ``op`` (a name of ``UNARY_OPS``) on the bit vector ``a``: its result's bits."""
    m = len(a)
    zero = torch.zeros_like(a[0])
    if op == "INC":
        return _add(a, [zero] * m, torch.ones_like(a[0]))[0]
    if op == "DEC":
        return _add(a, [torch.ones_like(a[0])] * m, zero)[0]  # a + (n - 1) = a - 1 mod n
    if op == "NOT":
        return _flag(NOT(_nonzero(a)), m)
    raise AssertionError(op)


def binary_circuit(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every binary op of :data:`~ncl_kernels.isa.BINARY_OPS` on ``(x, y)`` by circuits.

    Args:
        x: ``(B, n)`` operand a, ``n`` a power of two.
        y: ``(B, n)`` operand b.

    Returns:
        ``(B, len(BINARY_OPS), n)``.
    """
    a, b = to_bits(x), to_bits(y)
    return torch.stack([from_bits(binary_bits(op, a, b)) for op in BINARY_OPS], dim=1)


def unary_circuit(x: torch.Tensor) -> torch.Tensor:
    """Every unary op of :data:`~ncl_kernels.isa.UNARY_OPS` on ``x`` by circuits.

    Args:
        x: ``(B, n)`` operand a, ``n`` a power of two.

    Returns:
        ``(B, len(UNARY_OPS), n)``.
    """
    a = to_bits(x)
    return torch.stack([from_bits(unary_bits(op, a)) for op in UNARY_OPS], dim=1)
