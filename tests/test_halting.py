"""halting_accumulate: the fused halting mixtures and ponder cost against the reference, and the machine's run:
what is particular to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import DTYPES, check_against_reference, check_bad_input, fused_backends
from ncl_kernels import halting_accumulate

SIZES = [(3, 5, 7, 4), (2, 3, 9, 1), (1, 2, 5, 33)]  # (B, K, C, n): odd sizes


def make(B, K, C, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    soft = lambda *shape: torch.softmax(torch.randn(*shape, generator=g), -1)  # noqa: E731
    return (torch.rand(B, K, n, generator=g), torch.rand(B, C, n, generator=g), torch.rand(B, generator=g) * 5,
            soft(B, K, n), soft(B, C, n), torch.rand(B, generator=g))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    check_against_reference(halting_accumulate, (*make(*size), 3), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
def test_readouts_longer_than_a_tile(backend):
    """Registers and memory of different lengths, both over one Triton tile; a non-integer t."""
    check_against_reference(halting_accumulate, (*make(2, 9, 17, 130, seed=2), 2.5), backend, torch.float32)


def test_machine_run_through_the_op():
    """Replaying ncl.machine.run.machine_run's accumulation with the op gives its RunResult."""
    from ncl.machine.run import machine_run
    from ncl_kernels.machine import MachineConfig, ProgramFields, initial_state, step

    g = torch.Generator().manual_seed(3)
    B, L, K, n, C, S = 2, 6, 3, 8, 4, 4
    soft = lambda *shape: torch.softmax(3 * torch.randn(*shape, generator=g, dtype=torch.float64), -1)  # noqa: E731
    fields = ProgramFields(soft(L, 29), soft(L, K), soft(L, K), soft(L, K), soft(L, n), soft(L, L))
    config = MachineConfig(n=n, cells=C, registers=K, stack=S)
    ip, reg, mem = soft(B, L), soft(B, K, n), soft(B, C, n)
    want = machine_run(fields, config, ip, reg, mem, max_steps=5)
    state = initial_state(ip, reg, mem, S)
    acc_reg, acc_mem, expected = torch.zeros_like(reg), torch.zeros_like(mem), reg.new_zeros(B)
    for t in range(1, want.steps + 1):
        state, outcome = step(state, fields, config)
        acc_reg, acc_mem, expected = halting_accumulate(acc_reg, acc_mem, expected, state.reg, state.mem,
                                                        outcome.halted, t, backend="cpp")
    rho = state.ip.sum(-1)
    regs, mem_out, expected = halting_accumulate(acc_reg, acc_mem, expected, state.reg, state.mem, rho, want.steps,
                                                 backend="cpp")
    torch.testing.assert_close(regs, want.regs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mem_out, want.mem, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(expected, want.expected_steps, rtol=1e-12, atol=1e-12)


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("acc_reg", torch.rand(3, 5), r"acc_reg must have shape \(B, K, n\)"),
    ("acc_mem", torch.rand(3, 7, 5), r"acc_mem must have shape \(B, C, n\) with n=4"),
    ("expected", torch.rand(2), r"expected must have shape \(B\) with B=3"),
    ("reg", torch.rand(3, 4, 4), r"reg must have shape \(B, K, n\) with K=5"),
    ("mem", torch.rand(3, 6, 4), r"mem must have shape \(B, C, n\) with C=7"),
    ("h", torch.rand(3, dtype=torch.float64), r"h has dtype torch.float64"),
    ("t", torch.tensor(2.0), r"t must be a real number"),
    ("t", True, r"t must be a real number"),
])
def test_bad_input(name, bad, match):
    check_bad_input(halting_accumulate, (*make(3, 5, 7, 4), 1), name, bad, match)
