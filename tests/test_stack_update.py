"""stack_update: the fused soft push/pop against the reference, on every backend, and the machine's stack."""

import pytest
import torch

from memory_cases import (DTYPES, check_compile, check_gradcheck, check_noncontiguous, check_opcheck, check_schema,
                          device_for, fused_backends, leaves, skip_unless_runnable)
from ncl_kernels import stack_update
from ncl_kernels.testing import assert_close

SIZES = [(3, 5, 7), (2, 8, 16), (4, 2, 3)]  # (B, S, W): odd sizes, and the smallest stack (S = 2)


def make(B, S, W, seed=0):
    """Random soft stacks: distributions in the slots and the pointer, push and pop with u + o < 1."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.softmax(torch.randn(B, S, W, generator=g), -1)
    ptr = torch.softmax(torch.randn(B, S, generator=g), -1)
    weights = torch.softmax(torch.randn(B, 3, generator=g), -1)  # push, pop, neither
    item = torch.softmax(torch.randn(B, W, generator=g), -1)
    return slots, ptr, weights[:, 0].contiguous(), weights[:, 1].contiguous(), item


def check_outputs(inputs, backend, dtype):
    """Every output and every input gradient (through a random combination of all four outputs)."""
    skip_unless_runnable(backend)
    device = device_for(backend)
    ref_in = leaves(inputs, torch.float64, "cpu")
    ref_out = stack_update(*ref_in, backend="reference")
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, dtype=torch.float64, generator=g) for o in ref_out]
    ref_grads = torch.autograd.grad(ref_out, ref_in, upstream)
    fused_in = leaves(inputs, dtype, device)
    out = stack_update(*fused_in, backend=backend)
    grads = torch.autograd.grad(out, fused_in, [u.to(device=device, dtype=dtype) for u in upstream])
    for name, o, r in zip(("slots'", "ptr'", "overflow", "underflow"), out, ref_out):
        assert o.dtype == dtype and o.device.type == device
        assert_close(o.cpu(), r, dtype, f"stack_update {name}")
    for name, gr, r in zip(("slots", "ptr", "push", "pop", "item"), grads, ref_grads):
        assert gr.dtype == dtype
        assert_close(gr.cpu(), r, dtype, f"stack_update grad of {name}")


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    check_outputs(make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
def test_faults_and_wide_stack(backend):
    """Mass at both ends (full and empty) so both faults are non-zero; W wider than one Triton tile."""
    slots, ptr, push, pop, item = make(2, 6, 300, seed=2)
    ptr = torch.tensor([[0.3, 0.1, 0.1, 0.1, 0.1, 0.3], [0.5, 0.0, 0.0, 0.0, 0.0, 0.5]])
    check_outputs((slots, ptr, push, pop, item), backend, torch.float32)


def test_unused_outputs_get_zero_gradients():
    """Only slots' in the loss: the other outputs' gradients are zeros, as in the reference."""
    xs = leaves(make(3, 5, 4), torch.float64, "cpu")
    got = torch.autograd.grad(stack_update(*xs, backend="cpp")[0].sum(), xs)
    want = torch.autograd.grad(stack_update(*xs, backend="reference")[0].sum(), xs, materialize_grads=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


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


def test_matches_the_machine_stack():
    """ncl.machine.stack.update is the same function (the machine may call this op in its place)."""
    from ncl.machine import stack as machine_stack

    xs = make(3, 6, 5, seed=4)
    for a, b in zip(machine_stack.update(*xs), stack_update(*xs, backend="cpp")):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend):
    check_gradcheck(stack_update, make(2, 4, 3), backend)


@pytest.mark.parametrize("name, bad, match", [
    ("slots", torch.rand(3, 5), r"slots must have shape \(B, S, W\)"),
    ("ptr", torch.rand(3, 4), r"ptr must have shape \(B, S\) with S=5"),
    ("push", torch.rand(2), r"push must have shape \(B\) with B=3"),
    ("pop", torch.rand(3, 1), r"pop must have shape \(B\)"),
    ("item", torch.rand(3, 6), r"item must have shape \(B, W\) with W=7"),
    ("item", torch.rand(3, 7, dtype=torch.float64), r"item has dtype torch.float64"),
    ("ptr", torch.randint(0, 2, (3, 5)), r"ptr must be float16, bfloat16, float32 or float64"),
])
def test_bad_input(name, bad, match):
    args = list(make(3, 5, 7))
    args[["slots", "ptr", "push", "pop", "item"].index(name)] = bad
    with pytest.raises(ValueError, match=match):
        stack_update(*args)


def test_one_position_is_rejected():
    with pytest.raises(ValueError, match=r"slots must have shape \(B, S, W\) with S >= 2"):
        stack_update(torch.rand(2, 1, 3), torch.rand(2, 1), torch.rand(2), torch.rand(2), torch.rand(2, 3))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(backend):
    check_opcheck("stack_update", make(2, 5, 3), backend)


def test_noncontiguous_inputs():
    check_noncontiguous(stack_update, make(4, 5, 6))


def test_torch_compile_fullgraph():
    check_compile(stack_update, make(2, 4, 3))


def test_schema_matches_the_extension():
    check_schema("stack_update")
