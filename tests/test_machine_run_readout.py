"""The whole-run kernel reads the run out (``run_steps`` of ``ncl::machine_run_fwd``, ``finish`` of
``ncl::machine_run_bwd``, ``ncl_kernels.machine.READS_OUT``): the call in which a run ends adds the mass still
running to the halting mixtures, as ``ncl.machine.run.finish`` does with ``halting_accumulate``, and the backward
of that chunk starts with the readout's adjoint.

- forward: what the call without it returns, then the reference readout (at the step where the run ends: the
  limit, or inside the chunk where the batch halts); nothing when the run goes on;
- backward: the call without it, given the gradient that autograd carries back through the reference readout;
  also for a last call with no step of its own (the batch halted at a chunk boundary);
- a checkpointed run whose batch halts at a chunk boundary has the gradients of full BPTT.
"""

from __future__ import annotations

import pytest
import torch

import ncl
from ncl_kernels import dispatch
from ncl_kernels.halting import reference as halting_reference
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import Carry, initial_state
from ncl_kernels.testing import assert_close
from test_machine_fused import LOOP, _soft_inputs, _soft_program

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                                reason=f"cpp backend: {dispatch.unavailable_reason('cpp')}")

fwd, bwd = torch.ops.ncl.machine_run_fwd, torch.ops.ncl.machine_run_bwd


def _soft_case(seed: int, dtype=torch.float64):
    """A soft program, soft registers and memory, and random (nonzero) halting mixtures so far."""
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=6, dtype=dtype, seed=seed)
    regs, mem = (t.detach() for t in _soft_inputs(config, batch=3, dtype=dtype, seed=seed))
    ip = one_hot(torch.zeros(3, dtype=torch.long), program.length, dtype)
    g = torch.Generator().manual_seed(seed)
    acc = [torch.rand(t.shape, generator=g, dtype=dtype) for t in (regs, mem, regs[:, 0, 0])]
    carry = list(Carry(initial_state(ip, regs, mem, config.stack), *acc, torch.zeros(3, dtype=dtype)).flat())
    return [f.detach() for f in program.fields()], carry, g


def _read_out(carry, t):
    """The reference readout of the mass still running after step t (ncl.machine.run.finish)."""
    acc_reg, acc_mem, expected = halting_reference.halting_accumulate(carry[7], carry[8], carry[9], carry[1],
                                                                      carry[2], carry[0].sum(-1), t)
    return [*carry[:7], acc_reg, acc_mem, expected, carry[10]]


def _assert_carries_close(got, want, dtype, what):
    for i, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, dtype, f"{what}: carry[{i}]")


def test_the_call_that_ends_the_run_reads_it_out():
    fields, carry, _ = _soft_case(seed=3)
    plain = fwd(*fields, carry, 2, 5, 0.0, 1e-20, True)
    at_limit = fwd(*fields, carry, 2, 5, 0.0, 1e-20, True, 7)
    assert not torch.equal(at_limit[8], plain[8])
    _assert_carries_close(at_limit[:11], _read_out(plain[:11], 7), torch.float64, "run_steps = first + count")
    for i in range(11, len(plain)):  # the step count and the tape do not change
        assert torch.equal(at_limit[i], plain[i]), i
    goes_on = fwd(*fields, carry, 2, 5, 0.0, 1e-20, True, 9)
    assert all(torch.equal(a, b) for a, b in zip(goes_on, plain))
    with pytest.raises(RuntimeError, match="run_steps"):
        fwd(*fields, carry, 2, 5, 0.0, 1e-20, True, 6)


def test_a_batch_that_halts_inside_the_call_is_read_out_where_it_halted():
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    regs = one_hot(torch.tensor([[0, 1, 0, 0], [0, 2, 0, 0]]), config.n, torch.float32)
    mem = one_hot(torch.arange(2 * 16).reshape(2, 16) % 16, config.n, torch.float32)
    ip = one_hot(torch.zeros(2, dtype=torch.long), program.length, torch.float32)
    zero = torch.zeros(2)
    carry = list(Carry(initial_state(ip, regs, mem, config.stack), torch.zeros_like(regs), torch.zeros_like(mem),
                       zero, zero.clone()).flat())
    fields = [f.detach() for f in program.fields()]
    plain = fwd(*fields, carry, 0, 40, config.halt_eps, 1e-20)
    done = int(plain[11])
    assert 0 < done < 40
    read = fwd(*fields, carry, 0, 40, config.halt_eps, 1e-20, False, 100)
    assert int(read[11]) == done
    _assert_carries_close(read[:11], _read_out(plain[:11], done), torch.float32, "halted inside the call")


@pytest.mark.parametrize("first, count", [(0, 4), (4, 0)])
def test_the_backward_starts_with_the_readouts_adjoint(first, count):
    """Random gradients for every part of the carry, fp64; ``count = 0`` is the last call of a run whose batch
    halted at a chunk boundary: its backward is the readout's adjoint alone."""
    fields, carry, g = _soft_case(seed=4)
    out = fwd(*fields, carry, first, count, 0.0, 1e-20, True, first + count)
    plain = fwd(*fields, carry, first, count, 0.0, 1e-20, True)
    grads = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in carry]
    tape = (*out[12:], plain[2])  # ALU rows, LOAD rows, invertible, and the memory leaving the steps
    got = bwd(*fields, carry, grads, first, count, 1e-20, True, *tape, True)
    # What the readout's adjoint hands on: autograd through the reference readout of the state leaving the steps.
    leaving = [t.detach().requires_grad_() for t in plain[:11]]
    through = torch.autograd.grad(_read_out(leaving, first + count), leaving, grads, allow_unused=True)
    through = [torch.zeros_like(t) if d is None else d for t, d in zip(leaving, through)]
    assert all(torch.equal(a, b) for a, b in zip(through[7:], grads[7:]))  # the accumulators' pass through
    want = bwd(*fields, carry, through, first, count, 1e-20, True, *tape)
    assert not torch.equal(got[6], bwd(*fields, carry, grads, first, count, 1e-20, True, *tape)[6])
    for i, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, torch.float64, f"gradient {i}")


def test_a_batch_that_halts_at_a_chunk_boundary_has_the_gradients_of_full_bptt():
    """The chunk after the boundary runs no step; it still reads the run out, and its backward applies that."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config).double()
    regs = one_hot(torch.tensor([[0, 1, 0, 0], [0, 3, 5, 1]]), config.n, torch.float64)
    mem = one_hot((torch.arange(2 * 16).reshape(2, 16) * 7) % 16, config.n, torch.float64)
    with torch.no_grad():
        steps = program.run(regs, mem, max_steps=200).steps
    grads = {}
    for mode, chunk in (("checkpoint", steps), ("full", 16)):
        program.zero_grad(set_to_none=True)
        r, m = regs.clone().requires_grad_(), mem.clone().requires_grad_()
        out = program.run(r, m, max_steps=200, grad_mode=mode, chunk=chunk)
        assert out.steps == steps
        weights = torch.linspace(0.5, 1.5, config.n, dtype=torch.float64)
        ((out.regs * weights).sum() + (out.mem * weights).sum() + out.expected_steps.sum()
         + out.unhalted.sum()).backward()
        grads[mode] = {"regs": r.grad, "mem": m.grad, **{k: p.grad for k, p in program.named_parameters()}}
    for name, t in grads["full"].items():
        scale = float(t.abs().max())
        assert scale > 0, name
        assert float((grads["checkpoint"][name] - t).abs().max()) <= 1e-8 * scale, name


def test_opcheck_with_the_readout():
    fields, carry, g = _soft_case(seed=5, dtype=torch.float32)
    util = ("test_schema", "test_faketensor", "test_autograd_registration")
    torch.library.opcheck(fwd.default, (*fields, carry, 0, 3, 0.0, 1e-20, True, 3), test_utils=util)
    out = fwd(*fields, carry, 0, 3, 0.0, 1e-20, True, 3)
    grads = [torch.randn(t.shape, generator=g) for t in carry]
    torch.library.opcheck(bwd.default, (*fields, carry, grads, 0, 3, 1e-20, True, *out[12:], out[2], True),
                          test_utils=util)
