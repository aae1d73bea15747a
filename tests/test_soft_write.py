"""soft_write: what is particular to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import soft_write

SHAPES = [(5, 7, 13), (1, 1, 1), (3, 33, 65)]  # (B, N, D)


def make(B, N, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(B, N, D, generator=g)
    weights = torch.softmax(torch.randn(B, N, generator=g), dim=-1)
    values = torch.randn(B, D, generator=g)
    gate = torch.rand(B, generator=g) * 0.9 + 0.05
    return bank, weights, values, gate


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(backend, dtype, shape):
    check_against_reference(soft_write, make(*shape), backend, dtype)


def test_is_functional_and_hard_write_replaces_the_row():
    bank, _, values, _ = make(2, 5, 4)
    before = bank.clone()
    weights = torch.zeros(2, 5)
    weights[:, 2] = 1
    out = soft_write(bank, weights, values, torch.ones(2))
    torch.testing.assert_close(bank, before)  # input untouched
    torch.testing.assert_close(out[:, 2], values)
    torch.testing.assert_close(out[:, [0, 1, 3, 4]], bank[:, [0, 1, 3, 4]])


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("bank", torch.randn(3, 4, 5, 1), r"bank must have shape \(B, N, D\)"),
    ("weights", torch.rand(3, 5), r"weights must have shape \(B, N\) with N=4"),
    ("values", torch.randn(3, 6), r"values must have shape \(B, D\) with D=5"),
    ("gate", torch.rand(3, 1), r"gate must have shape \(B\)"),
    ("gate", torch.rand(3, dtype=torch.float16), r"gate has dtype torch.float16"),
])
def test_bad_input(name, bad, match):
    check_bad_input(soft_write, make(3, 4, 5), name, bad, match)
