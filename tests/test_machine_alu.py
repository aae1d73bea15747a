"""The two ALUs: exact integer semantics on hard values, the circuit equal to the table there, and the table
equal to the exact distribution of T(X, Y) on soft values."""

from __future__ import annotations

import pytest
import torch

from ncl_kernels.alu_circuit.circuits import binary_circuit, from_bits, to_bits, unary_circuit
from ncl_kernels.alu.reference import binary_table, unary_table
from ncl_kernels.isa import BINARY_FUNCS, BINARY_OPS, UNARY_FUNCS, UNARY_OPS


def _all_pairs(n, dtype=torch.float64):
    i = torch.arange(n).repeat_interleave(n)
    j = torch.arange(n).repeat(n)
    return i, j, torch.nn.functional.one_hot(i, n).to(dtype), torch.nn.functional.one_hot(j, n).to(dtype)


@pytest.mark.parametrize("n", [2, 8, 16])
def test_table_is_exact_on_every_hard_pair(n):
    i, j, x, y = _all_pairs(n)
    out = binary_table(x, y)
    for k, op in enumerate(BINARY_OPS):
        want = torch.tensor([BINARY_FUNCS[op](a, b, n) for a, b in zip(i.tolist(), j.tolist())])
        assert torch.equal(out[:, k].argmax(-1), want), op
        assert torch.equal(out[:, k], torch.nn.functional.one_hot(want, n).double()), op
    un = unary_table(x)
    for k, op in enumerate(UNARY_OPS):
        want = torch.tensor([UNARY_FUNCS[op](a, n) for a in i.tolist()])
        assert torch.equal(un[:, k], torch.nn.functional.one_hot(want, n).double()), op


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_circuit_equals_table_on_hard_values(n):
    """Exhaustive over every (a, b) pair, every op, DIV and MOD by zero included."""
    _, _, x, y = _all_pairs(n)
    assert torch.equal(binary_circuit(x, y), binary_table(x, y))
    assert torch.equal(unary_circuit(x), unary_table(x))


def test_table_on_soft_values_is_the_distribution_of_the_result():
    """Monte-Carlo-free check: out[c] = Σ_{i,j: T(i,j)=c} x_i y_j, computed by a plain double loop."""
    n = 7  # not a power of two: the table ALU allows any n
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, n, generator=g, dtype=torch.float64) + 0.1
    y = torch.rand(3, n, generator=g, dtype=torch.float64) + 0.1
    x, y = x / x.sum(-1, keepdim=True), y / y.sum(-1, keepdim=True)
    out = binary_table(x, y)
    for k, op in enumerate(BINARY_OPS):
        want = torch.zeros(3, n, dtype=torch.float64)
        for a in range(n):
            for b in range(n):
                want[:, BINARY_FUNCS[op](a, b, n)] += x[:, a] * y[:, b]
        torch.testing.assert_close(out[:, k], want, rtol=1e-12, atol=1e-14)
    assert torch.allclose(out.sum(-1), torch.ones(3, len(BINARY_OPS), dtype=torch.float64))


def test_circuit_outputs_are_distributions_on_soft_values():
    n = 16
    g = torch.Generator().manual_seed(1)
    x = torch.softmax(torch.randn(5, n, generator=g, dtype=torch.float64), -1)
    y = torch.softmax(torch.randn(5, n, generator=g, dtype=torch.float64), -1)
    for out in (binary_circuit(x, y), unary_circuit(x)):
        assert bool((out >= 0).all())
        torch.testing.assert_close(out.sum(-1), torch.ones(out.shape[:2], dtype=torch.float64))


def test_bits_round_trip_and_product_fold():
    n = 16
    g = torch.Generator().manual_seed(2)
    v = torch.randint(0, n, (20,), generator=g)
    x = torch.nn.functional.one_hot(v, n).double()
    assert torch.equal(from_bits(to_bits(x)), x)
    # The fold of independent marginals is their product distribution.
    p = torch.rand(4, generator=g, dtype=torch.float64)
    folded = from_bits([p[i].reshape(1) for i in range(4)])[0]
    for value in range(n):
        want = 1.0
        for i in range(4):
            want *= float(p[i]) if value >> i & 1 else 1 - float(p[i])
        assert abs(float(folded[value]) - want) < 1e-12
