"""content_address: what is particular to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, FLOAT64_BACKENDS, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import content_address

SHAPES = [(5, 7, 13, 3), (1, 1, 1, 1), (2, 33, 65, 4)]  # (B, N, D, H)


def make(B, N, D, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(B, N, D, generator=g)
    keys = torch.randn(B, H, D, generator=g)
    strength = torch.rand(B, H, generator=g) * 5 + 0.5
    return bank, keys, strength


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(backend, dtype, shape):
    check_against_reference(content_address, make(*shape), backend, dtype)


def test_rows_are_distributions_and_a_key_finds_its_row():
    bank, _, _ = make(3, 6, 8, 1)
    keys = bank[:, 4:5] * 2.5  # same direction as row 4
    out = content_address(bank, keys, torch.full((3, 1), 50.0))
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 1))
    assert (out.argmax(-1) == 4).all()


@pytest.mark.parametrize("backend", FLOAT64_BACKENDS)
def test_zero_key_and_zero_row_are_finite(backend):
    bank, keys, strength = make(2, 4, 5, 2)
    bank[0, 1] = 0
    keys[1, 0] = 0
    leaves = [t.double().requires_grad_() for t in (bank, keys, strength)]
    out = content_address(*leaves, backend=backend)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in leaves)


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("keys", torch.randn(3, 2, 6), r"keys must have shape \(B, H, D\) with D=5"),
    ("strength", torch.rand(3, 3), r"strength must have shape \(B, H\) with H=2"),
    ("bank", torch.randn(4, 5), r"bank must have shape \(B, N, D\)"),
])
def test_bad_input(name, bad, match):
    check_bad_input(content_address, make(3, 4, 5, 2), name, bad, match)
