import pytest
import torch

from memory_cases import (DTYPES, check_against_reference, check_bad_input, check_compile, check_gradcheck,
                          check_noncontiguous, check_opcheck, fused_backends)
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


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend):
    check_gradcheck(content_address, make(3, 4, 5, 2), backend)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(backend):
    check_opcheck("content_address", make(2, 3, 5, 2), backend)


def test_noncontiguous_inputs():
    check_noncontiguous(content_address, make(4, 6, 5, 3))


def test_torch_compile_fullgraph():
    check_compile(content_address, make(3, 4, 5, 2))


def test_rows_are_distributions_and_a_key_finds_its_row():
    bank, _, _ = make(3, 6, 8, 1)
    keys = bank[:, 4:5] * 2.5  # same direction as row 4
    out = content_address(bank, keys, torch.full((3, 1), 50.0))
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 1))
    assert (out.argmax(-1) == 4).all()


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_zero_key_and_zero_row_are_finite(backend):
    bank, keys, strength = make(2, 4, 5, 2)
    bank[0, 1] = 0
    keys[1, 0] = 0
    leaves = [t.double().requires_grad_() for t in (bank, keys, strength)]
    out = content_address(*leaves, backend=backend)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in leaves)


@pytest.mark.parametrize("name, bad, match", [
    ("keys", torch.randn(3, 2, 6), r"keys must have shape \(B, H, D\) with D=5"),
    ("strength", torch.rand(3, 3), r"strength must have shape \(B, H\) with H=2"),
    ("bank", torch.randn(4, 5), r"bank must have shape \(B, N, D\)"),
])
def test_bad_input(name, bad, match):
    check_bad_input(content_address, make(3, 4, 5, 2), name, bad, match)
