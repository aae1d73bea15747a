"""The best-eager machine (ncl_kernels.machine.eager) equals the reference: one step and whole runs, values and
gradients, in float64 to the repository's float64 tolerance (float32 to the float32 one), on sharp (assembled
program, one-hot values) and soft (dense fields and values) inputs; plus the soft write, and the run's checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ncl
from ncl.machine.run import finish, machine_run
from ncl_kernels.alu import eager as alu_eager
from ncl_kernels.isa import NUM_OPS, one_hot
from ncl_kernels.machine import MachineConfig, MachineState, ProgramFields, eager, initial_carry, step
from ncl_kernels.memory import eager as memory_eager
from ncl_kernels.memory import reference as memory_reference
from ncl_kernels.testing import assert_close

#: Every kind of op: calls and returns, both stacks, memory, jumps both ways, MUL/DIV/MOD and the other ALU ops.
SOURCE = """
        CONST r0, 0
loop:   JZ r1, done
        PUSH r1
        STORE [r2], r1
        LOAD r3, [r2]
        CALL body
        POP r1
        DEC r1, r1
        JNZ r1, loop
done:   HALT
body:   MUL r4, r3, r1
        DIV r5, r4, r2
        MOD r5, r5, r3
        ADD r0, r0, r4
        SUB r2, r2, r5
        MAX r2, r2, r5
        LT r5, r0, r3
        INC r2, r2
        MOV r4, r2
        RET
"""
#: Values wrap, addresses fold (n > C), registers and stacks are small; and n < C, n = C.
CONFIGS = [MachineConfig(n=16, cells=4, registers=6, stack=6), MachineConfig(n=8, cells=8, registers=6, stack=4),
           MachineConfig(n=6, cells=9, registers=6, stack=5)]
SOFT_SHARPNESS = 2.0
DOUBLE = torch.float64


def _assert_grad_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """The float64 tolerance relative to the gradient's scale: through a sharp run the input gradients reach
    O(100) (JZ/JNZ and RET on near-one-hot values amplify), so an elementwise tolerance meant for O(1) values
    would ask for more than the last bits (the fused cpp backend in fp64 is ~1e-6 of the scale from the
    reference there; this eager path ~5e-11)."""
    scale = max(1.0, float(want.abs().max()))
    assert_close(got / scale, want / scale, DOUBLE, what)


def _dist(g: torch.Generator, *shape, dtype=DOUBLE) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=dtype), -1)


def _state(kind: str, config: MachineConfig, batch: int, lines: int, g: torch.Generator) -> MachineState:
    """A random state: one-hot values and a one-hot ip ("sharp"), or dense everything ("soft"); stacks part-full."""
    n, k, c, s = config.n, config.registers, config.cells, config.stack
    if kind == "sharp":
        def value(*shape):
            return one_hot(torch.randint(0, n, shape, generator=g), n, DOUBLE)
        ip = one_hot(torch.randint(0, lines, (batch,), generator=g), lines, DOUBLE)
        pointers = [one_hot(torch.randint(0, s, (batch,), generator=g), s, DOUBLE) for _ in range(2)]
        rstk = one_hot(torch.randint(0, lines, (batch, s), generator=g), lines, DOUBLE)
    else:
        def value(*shape):
            return _dist(g, *shape, n)
        ip = 0.9 * _dist(g, batch, lines)  # a sub-distribution: some mass has halted
        pointers = [_dist(g, batch, s) for _ in range(2)]
        rstk = 0.8 * _dist(g, batch, s, lines)
    return MachineState(ip, value(batch, k), value(batch, c), value(batch, s), pointers[0], rstk, pointers[1])


def _fields(kind: str, config: MachineConfig, g: torch.Generator) -> ProgramFields:
    """The assembled program's fields (β = 30), or softmax of random logits for every field."""
    if kind == "sharp":
        return ncl.assemble(SOURCE, config).double().fields()
    lines = len(ncl.assemble(SOURCE, config).instructions())
    sizes = (NUM_OPS, config.registers, config.registers, config.registers, config.n, lines)
    return ProgramFields(*(_dist(g, lines, size) for size in sizes))


@pytest.mark.parametrize("kind", ["sharp", "soft"])
@pytest.mark.parametrize("config", CONFIGS + [dataclasses.replace(c, alu="circuit") for c in CONFIGS[:2]],
                         ids=lambda c: f"n{c.n}C{c.cells}-{c.alu}")
def test_step_equals_the_reference_step(config, kind):
    g = torch.Generator().manual_seed(config.n)
    fields = _fields(kind, config, g)
    leaves = [t.clone().requires_grad_() for t in (*_state(kind, config, 5, fields.op.shape[0], g), *fields)]
    state, fields = MachineState(*leaves[:7]), ProgramFields(*leaves[7:])
    want_state, want_outcome = step(state, fields, config, backend="reference")
    got_state, got_outcome = eager.step(state, fields, config)
    want, got = (*want_state, *want_outcome), (*got_state, *got_outcome)
    names = (*MachineState._fields, "halted", "faults")
    for name, a, b in zip(names, got, want):
        assert_close(a, b, DOUBLE, name)
    upstream = [torch.randn(t.shape, generator=g, dtype=DOUBLE) for t in want]
    for name, a, b in zip((*MachineState._fields, *ProgramFields._fields), torch.autograd.grad(got, leaves, upstream),
                          torch.autograd.grad(want, leaves, upstream)):
        assert_close(a, b, DOUBLE, f"grad {name}")


def _inputs(kind: str, config: MachineConfig, batch: int, g: torch.Generator, dtype=DOUBLE):
    if kind == "sharp":
        values = torch.randint(1, config.n, (batch, config.registers), generator=g)
        values[:, 1] = torch.randint(1, 3, (batch,), generator=g)  # one or two passes: it halts within 60 steps
        regs = one_hot(values, config.n, dtype)
        mem = one_hot(torch.randint(0, config.n, (batch, config.cells), generator=g), config.n, dtype)
    else:
        regs, mem = _dist(g, batch, config.registers, config.n), _dist(g, batch, config.cells, config.n)
    return regs.to(dtype).requires_grad_(), mem.to(dtype).requires_grad_()


def _program(kind: str, config: MachineConfig, dtype=DOUBLE):
    if kind == "soft":
        config = dataclasses.replace(config, sharpness=SOFT_SHARPNESS)
    return ncl.assemble(SOURCE, config).to(dtype)


def _eager_run(program, regs, mem, steps, step_fn=None):
    ip = one_hot(torch.zeros(regs.shape[0], dtype=torch.long), program.length, regs.dtype)
    carry, done = eager.run(program.fields(regs.dtype), program.config, ip, regs, mem, steps, step_fn=step_fn)
    return finish(carry, done)


def _outputs(out):
    return out.r0, out.regs, out.mem, out.unhalted, out.expected_steps, out.overflow


def _run_grads(out, program, regs, mem, g):
    upstream = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in _outputs(out)]
    leaves = [*program.parameters(), regs, mem]
    return torch.autograd.grad(_outputs(out), leaves, upstream, allow_unused=True), upstream


@pytest.mark.parametrize("kind", ["sharp", "soft"])
@pytest.mark.parametrize("batch", [3, alu_eager.PAIR_BATCH_LAST])
def test_run_equals_the_reference_run(kind, batch):
    """A whole run, values and gradients (program logits, registers, memory) against Program.run on the
    reference backend with plain BPTT; the sharp run halts inside the budget, the soft one does not."""
    config = CONFIGS[0]
    g = torch.Generator().manual_seed(batch)
    program = _program(kind, config)
    regs, mem = _inputs(kind, config, batch, g)
    steps = 60
    want = program.run(regs, mem, max_steps=steps, backend="reference", grad_mode="full")
    got = _eager_run(program, regs, mem, steps)
    assert got.steps == want.steps and (got.steps < steps) == (kind == "sharp")
    for name, a, b in zip(("r0", "regs", "mem", "unhalted", "expected_steps", "overflow"), _outputs(got),
                          _outputs(want)):
        assert_close(a, b, DOUBLE, name)
    got_grads, upstream = _run_grads(got, program, regs, mem, g)
    want_grads = torch.autograd.grad(_outputs(want), [*program.parameters(), regs, mem], upstream)
    for (name, _), a, b in zip([*program.named_parameters(), ("regs", 0), ("mem", 0)], got_grads, want_grads):
        _assert_grad_close(a, b, f"grad {name}")


@pytest.mark.parametrize("kind", ["sharp", "soft"])
def test_float32_run_equals_the_float64_reference(kind):
    config = CONFIGS[0]
    g = torch.Generator().manual_seed(7)
    regs, mem = _inputs(kind, config, 4, g)
    want = _program(kind, config).run(regs, mem, max_steps=30, backend="reference", grad_mode="full")
    got = _eager_run(_program(kind, config, torch.float32), regs.detach().float(), mem.detach().float(), 30)
    assert got.steps == want.steps
    for name, a, b in zip(("r0", "regs", "mem", "unhalted", "expected_steps", "overflow"), _outputs(got),
                          _outputs(want)):
        assert_close(a, b, torch.float32, name)


def test_the_step_is_a_step_fn_for_every_grad_mode():
    """eager.step has the reference step's signature, so machine_run's checkpointed and truncated modes run it."""
    config = CONFIGS[0]
    g = torch.Generator().manual_seed(3)
    program = _program("soft", config)
    regs, mem = _inputs("soft", config, 3, g)
    fields, ip = program.fields(), one_hot(torch.zeros(3, dtype=torch.long), program.length, DOUBLE)
    want = machine_run(fields, config, ip, regs, mem, 20, grad_mode="full", backend="reference")
    for mode in ("full", "checkpoint", "truncated"):
        got = machine_run(fields, config, ip, regs, mem, 20, grad_mode=mode, chunk=8, step_fn=eager.step)
        assert_close(got.r0, want.r0, DOUBLE, mode)


def test_the_callers_carry_is_left_as_it_was():
    """advance_steps accumulates in place into copies: a carry the caller keeps (the truncated mode keeps
    several) does not change."""
    config = CONFIGS[0]
    g = torch.Generator().manual_seed(4)
    program = _program("soft", config)
    regs, mem = _inputs("soft", config, 2, g)
    carry = initial_carry(one_hot(torch.zeros(2, dtype=torch.long), program.length, DOUBLE), regs, mem, config.stack)
    kept = [t.clone() for t in carry.flat()]
    eager.advance_steps(carry, 0, 5, program.fields(), config)
    assert all(torch.equal(a, b) for a, b in zip(carry.flat(), kept))


def test_soft_write_equals_the_reference_and_has_second_derivatives():
    g = torch.Generator().manual_seed(5)
    bank, weights = torch.randn(3, 5, 4, generator=g, dtype=DOUBLE), _dist(g, 3, 5)
    values, gate = torch.randn(3, 4, generator=g, dtype=DOUBLE), torch.rand(3, generator=g, dtype=DOUBLE)
    inputs = [t.requires_grad_() for t in (bank, weights, values, gate)]
    got, want = memory_eager.soft_write(*inputs), memory_reference.soft_write(*inputs)
    assert_close(got, want, DOUBLE, "forward")
    upstream = torch.randn(got.shape, generator=g, dtype=DOUBLE)
    for a, b in zip(torch.autograd.grad(got, inputs, upstream), torch.autograd.grad(want, inputs, upstream)):
        assert_close(a, b, DOUBLE, "grad")
    assert torch.autograd.gradgradcheck(memory_eager.soft_write, inputs, fast_mode=True)
    with torch.no_grad():  # the graph-free path
        assert_close(memory_eager.soft_write(*inputs), want, DOUBLE, "no_grad")


def _run_args(config=CONFIGS[0], batch=2):
    program = ncl.assemble(SOURCE, config)
    fields = program.fields()
    ip = one_hot(torch.zeros(batch, dtype=torch.long), program.length)
    regs = one_hot(torch.zeros(batch, config.registers, dtype=torch.long), config.n)
    mem = one_hot(torch.zeros(batch, config.cells, dtype=torch.long), config.n)
    return fields, ip, regs, mem


@pytest.mark.parametrize("change, message", [
    (lambda f, ip, r, m: (f, ip, r[:, :, :-1], m), "machine run: mem must have shape (B, C, n) with n=15"),
    (lambda f, ip, r, m: (f, ip[:1], r, m), "machine run: reg must have shape (B, K, n) with B=1"),
    (lambda f, ip, r, m: (f, ip, r.double(), m), "machine run: reg has dtype torch.float64 but ip has torch.float32"),
    (lambda f, ip, r, m: (f._replace(imm=f.imm[:, :-1]), ip, r, m),
     "machine run: fields.imm must have shape (L, n) with n=16"),
    (lambda f, ip, r, m: (f._replace(op=f.op[:, :-1]), ip, r, m), "machine run: fields.op has shape"),
    (lambda f, ip, r, m: (f, ip, r, m[:, :-1]), "machine run: mem has shape (2, 3, 16), which does not fit"),
])
def test_run_rejects_bad_inputs_naming_them(change, message):
    fields, ip, regs, mem = change(*_run_args())
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eager.run(fields, CONFIGS[0], ip, regs, mem, 4)


@pytest.mark.parametrize("steps", [-1, 2.0, True])
def test_run_rejects_a_bad_step_budget(steps):
    fields, ip, regs, mem = _run_args()
    with pytest.raises(ValueError, match="max_steps must be an int >= 0"):
        eager.run(fields, CONFIGS[0], ip, regs, mem, steps)
