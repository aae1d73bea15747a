"""soft_read: what is particular to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import soft_read

SHAPES = [(5, 7, 13, 3), (1, 1, 1, 1), (2, 33, 65, 4)]  # (B, N, D, H), odd on purpose


def make(B, N, D, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(B, N, D, generator=g)
    weights = torch.softmax(torch.randn(B, H, N, generator=g), dim=-1)
    return bank, weights


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(backend, dtype, shape):
    check_against_reference(soft_read, make(*shape), backend, dtype)


def test_read_of_one_hot_weights_is_the_row():
    bank, _ = make(2, 5, 4, 1)
    weights = torch.zeros(2, 1, 5)
    weights[0, 0, 3] = weights[1, 0, 1] = 1
    out = soft_read(bank, weights)
    torch.testing.assert_close(out[:, 0], torch.stack([bank[0, 3], bank[1, 1]]))


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("bank", torch.randn(3, 4), r"bank must have shape \(B, N, D\)"),
    ("weights", torch.rand(3, 2, 5), r"weights must have shape \(B, H, N\) with N=4"),
    ("weights", torch.rand(2, 2, 4), r"weights must have shape \(B, H, N\) with B=3"),
    ("weights", torch.rand(3, 2, 4, dtype=torch.float64), r"weights has dtype torch.float64"),
])
def test_bad_input(name, bad, match):
    check_bad_input(soft_read, make(3, 4, 5, 2), name, bad, match)
