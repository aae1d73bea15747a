"""stack_update: the fused soft push/pop against the reference, on every backend: what is particular to it (the
generic checks, unused outputs' zero gradients included, are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import stack_update
from ncl_kernels.stack import reference

SIZES = [(3, 5, 7), (2, 8, 16), (4, 2, 3)]  # (B, S, W): odd sizes, and the smallest stack (S = 2)


def make(B, S, W, seed=0):
    """Random soft stacks: distributions in the slots and the pointer, push and pop with u + o < 1."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.softmax(torch.randn(B, S, W, generator=g), -1)
    ptr = torch.softmax(torch.randn(B, S, generator=g), -1)
    weights = torch.softmax(torch.randn(B, 3, generator=g), -1)  # push, pop, neither
    item = torch.softmax(torch.randn(B, W, generator=g), -1)
    return slots, ptr, weights[:, 0].contiguous(), weights[:, 1].contiguous(), item


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    """Every output and every input gradient (through a random combination of all four outputs)."""
    check_against_reference(stack_update, make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
def test_faults_and_wide_stack(backend):
    """Mass at both ends (full and empty) so both faults are non-zero; W wider than one Triton tile."""
    slots, ptr, push, pop, item = make(2, 6, 300, seed=2)
    ptr = torch.tensor([[0.3, 0.1, 0.1, 0.1, 0.1, 0.3], [0.5, 0.0, 0.0, 0.0, 0.0, 0.5]])
    check_against_reference(stack_update, (slots, ptr, push, pop, item), backend, torch.float32)


def test_hard_push_and_pop():
    """A one-hot push onto [., 7] puts 7 at position 2; a pop from the empty stack reports underflow 1."""
    n = 8
    slots = torch.zeros(2, 4, n)
    slots[:, :, 0] = 1
    slots[0, 1] = torch.nn.functional.one_hot(torch.tensor(3), n).float()
    ptr = torch.tensor([[0.0, 1, 0, 0], [1.0, 0, 0, 0]])
    item = torch.nn.functional.one_hot(torch.tensor([7, 5]), n).float()
    for backend in ("reference", "cpp"):
        s2, p2, over, under = stack_update(slots, ptr, torch.tensor([1.0, 0]), torch.tensor([0.0, 1]), item,
                                           backend=backend)
        assert torch.equal(p2, torch.tensor([[0.0, 0, 1, 0], [1.0, 0, 0, 0]]))
        assert torch.equal(s2[0, 2], item[0]) and torch.equal(s2[0, 1], slots[0, 1]) and torch.equal(s2[1], slots[1])
        assert torch.equal(over, torch.zeros(2)) and torch.equal(under, torch.tensor([0.0, 1]))


def test_reference_module_equals_the_cpp_op_in_fp32():
    """ncl_kernels.stack.reference.stack_update, called directly in fp32 (as the machine's reference step does),
    equals the cpp op. (It replaces the comparison with ncl.machine.stack.update, which was this module.)"""
    xs = make(3, 6, 5, seed=4)
    for a, b in zip(reference.stack_update(*xs), stack_update(*xs, backend="cpp"), strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("slots", torch.rand(3, 5), r"slots must have shape \(B, S, W\)"),
    ("ptr", torch.rand(3, 4), r"ptr must have shape \(B, S\) with S=5"),
    ("push", torch.rand(2), r"push must have shape \(B\) with B=3"),
    ("pop", torch.rand(3, 1), r"pop must have shape \(B\)"),
    ("item", torch.rand(3, 6), r"item must have shape \(B, W\) with W=7"),
    ("item", torch.rand(3, 7, dtype=torch.float64), r"item has dtype torch.float64"),
])
def test_bad_input(name, bad, match):
    check_bad_input(stack_update, make(3, 5, 7), name, bad, match)


def test_one_position_is_rejected():
    with pytest.raises(ValueError, match=r"slots must have shape \(B, S, W\) with S >= 2"):
        stack_update(torch.rand(2, 1, 3), torch.rand(2, 1), torch.rand(2), torch.rand(2), torch.rand(2, 3))
