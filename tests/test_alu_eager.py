"""The best-eager table ALU (ncl_kernels.alu.eager) equals the reference alu_mix: forward and gradients, in
float64 to the repository's float64 tolerance and in float32 to the float32 one, on sharp (one-hot) and soft
(dense) operands, at batches on both sides of PAIR_BATCH_LAST (its two MUL/DIV/MOD paths)."""

from __future__ import annotations

import pytest
import torch

from ncl_kernels.alu import NUM_OPS, eager, reference
from ncl_kernels.isa import ALU_OPS, BINARY_FUNCS, UNARY_FUNCS
from ncl_kernels.testing import TOLERANCES, assert_close

BATCHES = (3, eager.PAIR_BATCH_LAST)  # batch-first scatter_add, then batch-last index_add


def _operands(kind: str, batch: int, n: int, g: torch.Generator, dtype=torch.float64):
    """``x, y (B, n)`` and weights ``(B, 16)``: one-hot operands with one op at 1 and the others at 1e-13 (a
    sharp program), or softmax operands with signed random weights (never zero)."""
    if kind == "sharp":
        x = torch.nn.functional.one_hot(torch.randint(0, n, (batch,), generator=g), n).to(dtype)
        y = torch.nn.functional.one_hot(torch.randint(0, n, (batch,), generator=g), n).to(dtype)
        coeffs = torch.full((batch, NUM_OPS), 1e-13, dtype=dtype)
        coeffs[torch.arange(batch), torch.randint(0, NUM_OPS, (batch,), generator=g)] = 1.0
    else:
        x = torch.softmax(3 * torch.randn(batch, n, generator=g, dtype=dtype), -1)
        y = torch.softmax(3 * torch.randn(batch, n, generator=g, dtype=dtype), -1)
        coeffs = torch.randn(batch, NUM_OPS, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, y, coeffs)]


def _grads(fn, inputs, upstream):
    return torch.autograd.grad(fn(*inputs), inputs, upstream)


@pytest.mark.parametrize("kind", ["sharp", "soft"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", [2, 3, 8, 13, 128])
def test_equals_the_reference_in_float64(kind, batch, n):
    g = torch.Generator().manual_seed(n * 100 + batch)
    inputs = _operands(kind, batch, n, g)
    assert_close(eager.alu_mix(*inputs), reference.alu_mix(*inputs), torch.float64, "forward")
    upstream = torch.randn(batch, n, generator=g, dtype=torch.float64)
    for name, got, want in zip(("x", "y", "coeffs"), _grads(eager.alu_mix, inputs, upstream),
                               _grads(reference.alu_mix, inputs, upstream)):
        assert_close(got, want, torch.float64, f"grad {name}")


@pytest.mark.parametrize("kind", ["sharp", "soft"])
@pytest.mark.parametrize("batch", BATCHES)
def test_float32_equals_the_float64_reference(kind, batch):
    g = torch.Generator().manual_seed(batch)
    inputs = _operands(kind, batch, 64, g)
    single = [t.detach().float().requires_grad_() for t in inputs]
    assert_close(eager.alu_mix(*single), reference.alu_mix(*inputs), torch.float32, "forward")
    upstream = torch.randn(batch, 64, generator=g, dtype=torch.float64)
    for name, got, want in zip(("x", "y", "coeffs"), _grads(eager.alu_mix, single, upstream.float()),
                               _grads(reference.alu_mix, inputs, upstream)):
        assert_close(got, want, torch.float32, f"grad {name}")


@pytest.mark.parametrize("batch", BATCHES)
def test_each_op_alone_is_its_integer_semantics(batch):
    """Every op alone, on one-hot operands, puts all the mass on BINARY_FUNCS/UNARY_FUNCS of them."""
    n = 12
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, n, (batch,), generator=g), torch.randint(0, n, (batch,), generator=g)
    x = torch.nn.functional.one_hot(a, n).double()
    y = torch.nn.functional.one_hot(b, n).double()
    for k, op in enumerate(ALU_OPS):
        coeffs = torch.zeros(batch, NUM_OPS, dtype=torch.float64)
        coeffs[:, k] = 1
        want = [BINARY_FUNCS[op](int(i), int(j), n) if op in BINARY_FUNCS else UNARY_FUNCS[op](int(i), n)
                for i, j in zip(a, b)]
        assert torch.equal(eager.alu_mix(x, y, coeffs), torch.nn.functional.one_hot(torch.tensor(want), n).double()), op


@pytest.mark.parametrize("batch", BATCHES)
def test_non_negative_inputs_give_non_negative_outputs(batch):
    """No formula subtracts probabilities, so rounding never leaves a negative entry (fp32, sharp and soft)."""
    g = torch.Generator().manual_seed(2)
    for kind in ("sharp", "soft"):
        x, y, coeffs = (t.detach().float() for t in _operands(kind, batch, 128, g))
        assert bool((eager.alu_mix(x, y, coeffs.abs()) >= 0).all()), kind


@pytest.mark.parametrize("batch", [2, eager.PAIR_BATCH_LAST])
def test_second_derivatives(batch):
    g = torch.Generator().manual_seed(3)
    inputs = _operands("soft", batch, 5, g)
    assert torch.autograd.gradgradcheck(eager.alu_mix, inputs, fast_mode=True)


@pytest.mark.parametrize("args, message", [
    (((4, 8), (4, 8), (4, 15)), "coeffs must have shape (B, K) with K=16"),
    (((4, 8), (4, 9), (4, 16)), "alu_mix: y must have shape (B, n) with n=8"),
    (((4, 8, 1), (4, 8), (4, 16)), "alu_mix: x must have shape (B, n)"),
    (((4, 1), (4, 1), (4, 16)), "x must have shape (B, n) with n >= 2"),
])
def test_bad_shapes_raise_naming_the_argument(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eager.alu_mix(*(torch.rand(*shape) for shape in args))


def test_bad_dtype_raises_naming_the_argument():
    with pytest.raises(ValueError, match="alu_mix: coeffs has dtype torch.float64 but x has torch.float32"):
        eager.alu_mix(torch.rand(2, 8), torch.rand(2, 8), torch.rand(2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="alu_mix: y must be float16, bfloat16, float32 or float64"):
        eager.alu_mix(torch.rand(2, 8), torch.ones(2, 8, dtype=torch.long), torch.rand(2, 16))

