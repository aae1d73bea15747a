"""control: the fused ip update and halting mass against the reference, on every backend, and the machine: what
is particular to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import control
from ncl_kernels.control import NUM_OPS, reference

SIZES = [(3, 5, 4), (2, 9, 3), (4, 1, 2)]  # (B, L, S): odd sizes, and a one-line program


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
    check_against_reference(control, make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
def test_sharp_program_and_more_lines_than_a_tile(backend):
    """β-sharp opcode rows (most jump weights ~0: the kernels' skip of zero jumps must not matter), and
    more lines and samples than one Triton row tile."""
    check_against_reference(control, make(5, 40, 3, seed=2, sharpness=30.0), backend, torch.float32)


def test_matches_the_machine_step():
    """The ip and halted mass of the machine step (ncl_kernels.machine.step), on a random soft program and state."""
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


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
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
    check_bad_input(control, make(3, 5, 2), name, bad, match)
