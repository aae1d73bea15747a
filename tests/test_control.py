"""control: the fused ip update and halting mass against the reference, on every backend, and the machine."""

import pytest
import torch

from memory_cases import (DTYPES, check_compile, check_gradcheck, check_noncontiguous, check_opcheck, check_schema,
                          device_for, fused_backends, leaves, skip_unless_runnable)
from ncl_kernels import control
from ncl_kernels.control import NUM_OPS, reference
from ncl_kernels.testing import assert_close

SIZES = [(3, 5, 4), (2, 9, 3), (4, 1, 2)]  # (B, L, S): odd sizes, and a one-line program
NAMES = ("ip", "op", "chi0", "tgt", "rstk", "rsp")


def make(B, L, S, seed=0, sharpness=1.0):
    """A random soft program (every opcode on every line) and a random soft state with mass missing from
    ip (a half-halted machine) and from the return stack's slots (no return address)."""
    g = torch.Generator().manual_seed(seed)
    ip = torch.softmax(torch.randn(B, L, generator=g), -1) * torch.rand(B, 1, generator=g)
    op = torch.softmax(sharpness * torch.randn(L, NUM_OPS, generator=g), -1)
    chi0 = torch.rand(B, generator=g)
    tgt = torch.softmax(torch.randn(L, L, generator=g), -1)
    rstk = torch.softmax(torch.randn(B, S, L, generator=g), -1) * torch.rand(B, S, 1, generator=g)
    rsp = torch.softmax(torch.randn(B, S, generator=g), -1)
    return ip, op, chi0, tgt, rstk, rsp


def check_outputs(inputs, backend, dtype):
    skip_unless_runnable(backend)
    device = device_for(backend)
    ref_in = leaves(inputs, torch.float64, "cpu")
    ref_out = control(*ref_in, backend="reference")
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, dtype=torch.float64, generator=g) for o in ref_out]
    ref_grads = torch.autograd.grad(ref_out, ref_in, upstream)
    fused_in = leaves(inputs, dtype, device)
    out = control(*fused_in, backend=backend)
    grads = torch.autograd.grad(out, fused_in, [u.to(device=device, dtype=dtype) for u in upstream])
    for name, o, r in zip(("ip'", "halted"), out, ref_out):
        assert o.dtype == dtype and o.device.type == device
        assert_close(o.cpu(), r, dtype, f"control {name}")
    for name, gr, r in zip(NAMES, grads, ref_grads):
        assert gr.dtype == dtype
        assert_close(gr.cpu(), r, dtype, f"control grad of {name}")


def test_opcode_columns_match_the_machine():
    from ncl_kernels.isa import CONTROL_OPS, OP, OPCODES, SEQUENTIAL_OPS

    assert NUM_OPS == len(OPCODES)
    assert (reference.HALT, reference.JMP, reference.JZ, reference.JNZ, reference.CALL, reference.RET) == \
        tuple(OP[o] for o in ("HALT", "JMP", "JZ", "JNZ", "CALL", "RET"))
    assert set(CONTROL_OPS) == {"HALT", "JMP", "JZ", "JNZ", "CALL", "RET"}
    assert reference.SEQUENTIAL == [OP[o] for o in SEQUENTIAL_OPS]


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    check_outputs(make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
def test_sharp_program_and_more_lines_than_a_tile(backend):
    """β-sharp opcode rows (most jump weights ~0: the kernels' skip of zero jumps must not matter), and
    more lines and samples than one Triton row tile."""
    check_outputs(make(5, 40, 3, seed=2, sharpness=30.0), backend, torch.float32)


def test_matches_the_machine_step():
    """The ip and halted mass of ncl.machine.interpreter.step, on a random soft program and state."""
    from ncl_kernels.machine import MachineConfig, MachineState, ProgramFields, step

    g = torch.Generator().manual_seed(3)
    B, L, S, K, n, C = 3, 7, 4, 3, 8, 4
    ip, op, _, tgt, rstk, rsp = (t.double() for t in make(B, L, S, seed=3))
    soft = lambda *shape: torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), -1)  # noqa: E731
    fields = ProgramFields(op, soft(L, K), soft(L, K), soft(L, K), soft(L, n), tgt)
    state = MachineState(ip, soft(B, K, n), soft(B, C, n), soft(B, S, n), soft(B, S), rstk, rsp)
    new_state, outcome = step(state, fields, MachineConfig(n=n, cells=C, registers=K, stack=S))
    alpha = (ip @ fields.a) / ip.sum(-1, keepdim=True)
    chi0 = torch.einsum("bk,bk->b", alpha, state.reg[:, :, 0])  # x[:, 0], x = Σ_k ᾱ_k reg_k
    new_ip, halted = control(ip, op, chi0, tgt, rstk, rsp, backend="cpp")
    torch.testing.assert_close(new_ip, new_state.ip, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(halted, outcome.halted, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend):
    check_gradcheck(control, make(2, 4, 3), backend)


@pytest.mark.parametrize("name, bad, match", [
    ("ip", torch.rand(3), r"ip must have shape \(B, L\)"),
    ("op", torch.rand(5, 28), r"op must have shape \(L, O\) with O=29"),
    ("op", torch.rand(4, 29), r"op must have shape \(L, O\) with L=5"),
    ("chi0", torch.rand(2), r"chi0 must have shape \(B\) with B=3"),
    ("tgt", torch.rand(5, 4), r"tgt must have shape \(L, L\) with L=5"),
    ("rstk", torch.rand(3, 2, 4), r"rstk must have shape \(B, S, L\) with L=5"),
    ("rsp", torch.rand(3, 3), r"rsp must have shape \(B, S\) with S=2"),
    ("rsp", torch.rand(3, 2, dtype=torch.float64), r"rsp has dtype torch.float64"),
])
def test_bad_input(name, bad, match):
    args = list(make(3, 5, 2))
    args[NAMES.index(name)] = bad
    with pytest.raises(ValueError, match=match):
        control(*args)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(backend):
    check_opcheck("control", make(2, 5, 3), backend)


def test_noncontiguous_inputs():
    check_noncontiguous(control, make(4, 5, 3))


def test_torch_compile_fullgraph():
    check_compile(control, make(2, 4, 3))


def test_schema_matches_the_extension():
    check_schema("control")
