"""The whole-run kernel ``ncl::machine_run_fwd`` (``ncl_kernels.machine``) against the step loop.

- its opcode numbers are those of ``ncl.machine.opcodes``;
- without a graph it computes what the loop of fused step ops and the reference compute: random soft
  programs (fp64, fp32), a sharp CALL/RET loop on one-hot inputs (also equal to the discrete VM), early exit
  inside a chunk, any chunk length;
- with a graph, ``grad_mode="checkpoint"`` runs its forward on the kernel (the gradients against full BPTT are
  tested in ``tests/test_machine_fused.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch

import ncl
from ncl_kernels import machine as machine_op
from ncl_kernels.machine import step
from ncl_kernels.isa import OP
from ncl_kernels.machine import Carry, advance, initial_state
from ncl_kernels.isa import one_hot
from ncl_kernels import _ext, dispatch
from ncl_kernels.testing import assert_close
from test_machine_fused import LOOP, _assert_runs_match, _soft_inputs, _soft_program

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                                reason=f"cpp backend: {dispatch.unavailable_reason('cpp')}")


def _carry(program, regs, mem):
    B = regs.shape[0]
    ip = one_hot(torch.zeros(B, dtype=torch.long), program.length, regs.dtype)
    zero = regs.new_zeros(B)
    return Carry(initial_state(ip, regs, mem, program.config.stack), torch.zeros_like(regs), torch.zeros_like(mem),
                 zero, zero.clone())


def _loop_of_steps(program, carry, steps):
    """The same run as a loop of fused step ops (a step_fn makes advance skip the kernel)."""
    return advance(carry, 0, steps, program.fields(), program.config, "cpp",
                   step_fn=lambda s, f, c, backend: step(s, f, c, backend=backend))


def test_opcodes_match_the_opcode_table():
    ext = _ext.load()[0]
    assert dict(ext.MACHINE_OPCODES) == {name: OP[name] for name in ext.MACHINE_OPCODES}
    assert set(ext.MACHINE_OPCODES) == {"CONST", "MOV", "ADD", "LOAD", "STORE", "PUSH", "POP", "CALL", "RET"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [8, 16])
def test_kernel_equals_the_step_loop_on_soft_programs(dtype, n):
    config = ncl.MachineConfig(n=n, cells=4, registers=3, stack=4)
    for seed in range(2):
        program = _soft_program(config, lines=6, dtype=dtype, seed=seed)
        regs, mem = (t.detach() for t in _soft_inputs(config, batch=3, dtype=dtype, seed=seed))
        with torch.no_grad():
            carry = _carry(program, regs, mem)
            assert machine_op.kernel_for(config, carry.state.ip, None, None) == "cpp"
            kernel, k_steps = advance(carry, 0, 13, program.fields(), config, None)
            loop, l_steps = _loop_of_steps(program, carry, 13)
            ref = program.run(regs, mem, max_steps=13, backend="reference")
            fused = program.run(regs, mem, max_steps=13)
        assert k_steps == l_steps == 13
        for name, a, b in zip(range(11), kernel.flat(), loop.flat()):
            assert_close(a, b, dtype, f"n={n} {dtype} seed {seed}: carry[{name}]")
        _assert_runs_match(fused, ref, dtype, f"n={n} {dtype} seed {seed}: against the reference")


@pytest.mark.parametrize("chunk", [1, 3, 16, 500])
def test_sharp_program_early_exit_inside_a_chunk_and_the_vm(chunk):
    """Samples halt at different steps; the batch stops after the last one, wherever chunks end."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    values = torch.tensor([[0, 1, 0, 0], [0, 4, 0, 0], [0, 2, 0, 0], [0, 3, 5, 1]])
    mem_values = torch.arange(4 * 16).reshape(4, 16) % 16
    regs, mem = one_hot(values, config.n, torch.float32), one_hot(mem_values, config.n, torch.float32)
    vm = [program.execute(regs=v.tolist(), mem=m.tolist(), engine="vm") for v, m in zip(values, mem_values)]
    with torch.no_grad():
        out = program.run(regs, mem, max_steps=500, chunk=chunk)
        ref = program.run(regs, mem, max_steps=500, backend="reference")
    assert out.steps == max(r.steps for r in vm)  # not 500, not a chunk boundary
    _assert_runs_match(out, ref, torch.float32, f"sharp k={chunk}")
    torch.testing.assert_close(out.expected_steps, torch.tensor([float(r.steps) for r in vm]), rtol=0, atol=1e-4)
    for b, r in enumerate(vm):
        assert out.regs[b].argmax(-1).tolist() == r.regs
        assert out.mem[b].argmax(-1).tolist() == r.mem


@pytest.mark.parametrize("chunk", [4, 7, 16])
def test_gradients_of_samples_that_halt_long_before_the_batch(chunk):
    """A halted sample's ip holds no mass, and the kernels skip its steps (their forward is the identity) while
    still applying their adjoints: the ip's gradient flows on through the program's transitions. fp64 gradients
    of the checkpointed kernel run against full BPTT through the fused step ops (which skip nothing), the
    samples halting after 3 to 47 steps, the run going on to the last (at chunk 7 the batch stops inside a chunk,
    whose kept ALU rows are then cut to the steps it ran). Through 47 sharp steps the registers'
    gradient reaches ~300 and the two paths' different summation orders alone move it by ~1e-9 of that, so the
    bound is relative to each gradient's scale; a wrong adjoint is off by its own size."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config).double()
    values = torch.tensor([[0, 1, 0, 0], [0, 4, 0, 0], [0, 0, 0, 0], [0, 3, 5, 1]])
    mem_values = (torch.arange(4 * 16).reshape(4, 16) * 7) % 16
    regs, mem = one_hot(values, config.n, torch.float64), one_hot(mem_values, config.n, torch.float64)
    kernel = _grads(program, regs, mem, 60, grad_mode="checkpoint", chunk=chunk)
    truth = _grads(program, regs, mem, 60, grad_mode="full")
    for name, t in truth.items():
        scale = float(t.abs().max())
        assert scale > 0, name
        assert float((kernel[name] - t).abs().max()) <= 1e-8 * scale, (name, chunk)


def test_one_chunks_backward_from_a_halted_state_with_every_gradient_random():
    """``ncl::machine_run_bwd`` over 6 steps of a batch whose first sample holds no ip mass (so every one of its
    steps takes the frozen-step adjoint after the first) and whose second is mid-run, on a soft program, with a
    random gradient for every part of the carry (the stacks' pointers and slots too, which is what gives the
    frozen steps' ip gradient its PUSH, POP, CALL and RET terms); against autograd through the fused step ops
    and through the reference."""
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=6, dtype=torch.float64, seed=31)
    g = torch.Generator().manual_seed(31)

    def dist(*shape):
        return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), -1)

    B, L, S = 2, program.length, config.stack
    ip = dist(B, L)
    ip[0] = 0
    pointer = lambda: dist(B, S)  # noqa: E731
    carry = [ip, dist(B, config.registers, config.n), dist(B, config.cells, config.n), dist(B, S, config.n),
             pointer(), dist(B, S, L), pointer(), torch.rand(B, config.registers, config.n, generator=g,
             dtype=torch.float64), torch.rand(B, config.cells, config.n, generator=g, dtype=torch.float64),
             torch.rand(B, generator=g, dtype=torch.float64), torch.rand(B, generator=g, dtype=torch.float64)]
    grads = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in carry]
    fields = [f.detach() for f in program.fields()]
    kernel = torch.ops.ncl.machine_run_bwd(*fields, carry, grads, 3, 6, 1e-20, True)
    assert kernel[6][0].abs().max() > 0.1  # the frozen sample's ip gradient
    # The accumulators' come back empty: they pass through, which autograd through the steps must agree with.
    assert [t.numel() for t in kernel[13:]] == [0] * 4
    kernel = [*kernel[:6], *machine_op.pass_accumulator_grads(kernel[6:], grads)]
    for backend in ("cpp", "reference"):
        steps = machine_op._recomputed_chunk_grads(fields, carry, grads, 3, 6, config, backend)
        for i, (a, b) in enumerate(zip(kernel, steps)):
            assert_close(a, b, torch.float64, f"{backend}: gradient {i}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_backward_reads_the_forwards_tape(dtype):
    """``keep_tape``: the forward returns each step's ALU mixture row and LOAD read ``(B, count, n)`` (zero for a
    frozen sample) and whether the backward can invert every memory write ``(B,)``, and the backward's tape pass
    reads them instead of computing them again: the ALU rows always, the LOAD reads (with the memory leaving the
    steps) where the writes invert. Its gradients are the same bit for bit as when it computes them, and what it
    is given is really read: changed ALU rows or a changed memory change the gradients. Dense rows at n = 16 take
    the backward's DIV and MOD runs (j >= 8) and gathers (j < 8)."""
    config = ncl.MachineConfig(n=16, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=6, dtype=dtype, seed=5)
    regs, mem = (t.detach() for t in _soft_inputs(config, batch=3, dtype=dtype, seed=5))
    carry = list(_carry(program, regs, mem).flat())
    carry[0][0] = 0  # a frozen sample: no ip mass
    fields = [f.detach() for f in program.fields()]
    out = torch.ops.ncl.machine_run_fwd(*fields, carry, 2, 7, 0.0, 1e-20, True)
    rows, load, invertible = out[12:]
    mem_after = out[2]
    assert rows.shape == load.shape == (3, 7, config.n) and invertible.shape == (3,) and int(out[11]) == 7
    assert rows[0].abs().max() == 0 and rows[1:].abs().min() > 0  # soft rows are dense
    assert load[0].abs().max() == 0 and load[1:].abs().min() > 0
    assert invertible.tolist() == [1, 1, 1]  # soft writes: |a| <= 1/32 (a frozen sample writes nothing)
    plain = torch.ops.ncl.machine_run_fwd(*fields, carry, 2, 7, 0.0, 1e-20)
    assert len(plain) == 12 and all(torch.equal(a, b) for a, b in zip(plain, out[:12]))
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(t.shape, generator=g, dtype=dtype) for t in carry]
    bwd = torch.ops.ncl.machine_run_bwd
    computed = bwd(*fields, carry, grads, 2, 7, 1e-20, True)
    for given in ((rows,), (rows, load, invertible, mem_after)):
        read = bwd(*fields, carry, grads, 2, 7, 1e-20, True, *given)
        for i, (a, b) in enumerate(zip(computed, read)):
            assert torch.equal(a, b), f"gradient {i} given {len(given)} tape tensors"
    changed = bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows * (1 + 1e-3))
    assert not torch.equal(changed[6 + 1], computed[6 + 1])  # the registers' gradient
    moved = bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows, load, invertible, mem_after * (1 + 1e-3))
    assert not torch.equal(moved[6 + 2], computed[6 + 2])  # the memory's gradient
    # A sample marked not invertible computes its memory again: mem_after is not read.
    ignored = bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows, load, torch.zeros_like(invertible), mem_after * 2)
    for i, (a, b) in enumerate(zip(computed, ignored)):
        assert torch.equal(a, b), f"gradient {i}"
    with pytest.raises(RuntimeError, match="alu must be"):
        bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows[:, :6])
    with pytest.raises(RuntimeError, match="go together"):
        bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows, load)
    with pytest.raises(RuntimeError, match="load must be"):
        bwd(*fields, carry, grads, 2, 7, 1e-20, True, rows, load[:, :6], invertible, mem_after)


def test_sharp_writes_are_not_invertible():
    """A compiled program's STORE writes a cell with weight ~1: the forward marks its samples not invertible, so
    the backward computes their memory again (and copies the rows it overwrites)."""
    from ncl.machine import bench

    config = ncl.MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    program = ncl.assemble(bench.LOOP, config)
    carry = list(_carry(program, *bench.machine_inputs(2, 14)).flat())
    out = torch.ops.ncl.machine_run_fwd(*[f.detach() for f in program.fields()], carry, 0, 14, 0.0, 1e-20, True)
    assert out[14].tolist() == [0, 0]
    out = torch.ops.ncl.machine_run_fwd(*[f.detach() for f in program.fields()], carry, 0, 2, 0.0, 1e-20, True)
    assert out[14].tolist() == [1, 1]  # CONST and JZ: no STORE yet, nothing written


def test_only_the_cpp_kernel_keeps_tapes():
    run_steps = machine_op.run_steps
    config = ncl.MachineConfig(n=16, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=6, dtype=torch.float32, seed=5)
    regs, mem = (t.detach() for t in _soft_inputs(config, batch=2, dtype=torch.float32, seed=5))
    carry = tuple(_carry(program, regs, mem).flat())
    tapes = []
    _, done = run_steps(carry, 0, 3, program.fields(), config, "cpp", tapes)
    assert done == 3 and len(tapes) == 1 and len(tapes[0]) == len(machine_op.TAPE)
    alu, load, invertible = tapes[0]
    assert alu.shape == load.shape == (2, 3, config.n) and invertible.shape == (2,)
    with pytest.raises(ValueError, match="tapes"):
        run_steps(carry, 0, 3, program.fields(), config, "triton", [])


def test_larger_machine_matches_the_step_loop():
    """The issue's sizes (n = C = 128, K = 8, S = 32) on the benchmark's loop program, 40 steps."""
    from ncl.machine import bench

    config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=32)
    program = ncl.assemble(bench.LOOP, config)
    regs, mem = bench.machine_inputs(4, 40)
    with torch.no_grad():
        carry = _carry(program, regs, mem)
        kernel, _ = advance(carry, 0, 40, program.fields(), config, None)
        loop, _ = _loop_of_steps(program, carry, 40)
    for i, (a, b) in enumerate(zip(kernel.flat(), loop.flat())):
        assert_close(a, b, torch.float32, f"carry[{i}]")


def test_opcheck():
    """Schema, fake kernel and dispatch of the registered op (no autograd: the op is forward-only)."""
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float32, seed=9)
    regs, mem = (t.detach() for t in _soft_inputs(config, batch=2, dtype=torch.float32, seed=9))
    carry = list(_carry(program, regs, mem).flat())
    fields = [f.detach() for f in program.fields()]
    for keep_tape in (False, True):
        torch.library.opcheck(torch.ops.ncl.machine_run_fwd.default,
                              (*fields, carry, 0, 4, config.halt_eps, 1e-20, keep_tape),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def _grads(program, regs, mem, steps, **kwargs):
    program.zero_grad(set_to_none=True)
    regs, mem = regs.detach().requires_grad_(), mem.detach().requires_grad_()
    out = program.run(regs, mem, max_steps=steps, **kwargs)
    weights = torch.linspace(0.5, 1.5, program.config.n, dtype=out.r0.dtype, device=out.r0.device)
    ((out.regs * weights).sum() + (out.mem * weights).sum() + out.expected_steps.sum() + out.unhalted.sum()
     + out.overflow.sum()).backward()
    # Copies: Module.to moves a parameter's .grad in place, so a later run on another device would move these.
    return {**{name: None if p.grad is None else p.grad.clone() for name, p in program.named_parameters()},
            "regs": regs.grad.clone(), "mem": mem.grad.clone()}


def test_kernel_backward_at_the_issue_sizes_is_as_accurate_as_autograd():
    """fp32, n = C = 128, K = 8, S = 32, the benchmark's loop (MUL, LOAD, STORE, jumps), 30 steps.

    The checkpointed run (kernel forward and hand-written backward) and plain BPTT through the fused step
    ops are both compared with the fp64 reference. Through 30 sharp steps the input gradients reach ~20 and
    fp32 rounding alone moves single entries by ~5e-5 (measured on both paths), beyond an elementwise fp32
    tolerance; so the kernel must be within twice the step ops' own error, plus 1e-6 of the gradient's scale.
    """
    from ncl.machine import bench

    config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=32)
    program = ncl.assemble(bench.LOOP, config)
    regs, mem = bench.machine_inputs(3, 30)
    kernel = _grads(program, regs, mem, 30, grad_mode="checkpoint", chunk=8)
    steps = _grads(program, regs, mem, 30, grad_mode="full")
    truth = _grads(ncl.assemble(bench.LOOP, config).double(), regs.double(), mem.double(), 30, grad_mode="full",
                   backend="reference")
    for name, t in truth.items():
        assert torch.isfinite(kernel[name]).all()
        err_kernel = float((kernel[name].double() - t).abs().max())
        err_steps = float((steps[name].double() - t).abs().max())
        assert err_kernel <= 2 * err_steps + 1e-6 * float(t.abs().max()), (name, err_kernel, err_steps)


def test_a_fixed_library_gets_no_field_gradients_and_the_same_input_gradients():
    """With the program's fields frozen (training's default), the backward skips the fields' gradients: the op
    returns them empty, and the registers' and memory's gradients are bitwise those of the run that also
    computes the fields' (nothing the skipped sums produce feeds the state's adjoint)."""
    config = ncl.MachineConfig(n=16, cells=8, registers=4, stack=6)
    program = _soft_program(config, lines=7, dtype=torch.float32, seed=21)
    regs, mem = _soft_inputs(config, batch=3, dtype=torch.float32, seed=21)
    learned = _grads(program, regs, mem, 20, grad_mode="checkpoint", chunk=6)
    assert all(learned[name] is not None for name, _ in program.named_parameters())
    program.requires_grad_(False)
    fixed = _grads(program, regs, mem, 20, grad_mode="checkpoint", chunk=6)
    assert all(fixed[name] is None for name, _ in program.named_parameters())
    for name in ("regs", "mem"):
        assert fixed[name].abs().sum() > 0
        assert torch.equal(fixed[name], learned[name]), name
    carry = [t.detach() for t in _carry(program, regs.detach(), mem.detach()).flat()]
    out = torch.ops.ncl.machine_run_bwd(*[f.detach() for f in program.fields()], carry,
                                        [torch.randn_like(t) for t in carry], 0, 3, 1e-20, False)
    assert [t.numel() for t in out[:6]] == [0] * 6
    assert [t.shape for t in out[6:13]] == [t.shape for t in carry[:7]]
    assert [t.numel() for t in out[13:]] == [0] * 4  # the accumulators' pass through (pass_accumulator_grads)


def test_both_isa_copies_compute_the_same_run(monkeypatch):
    """csrc/cpu/isa.h runs the CPU kernels through an AVX2+FMA copy where the CPU has it. The baseline copy
    (NCL_CPU_ISA=baseline) must give the same values and gradients: a soft fp32 program, checkpointed."""
    ext = _ext.load()[0]
    if ext.cpu_isa() == "baseline":
        pytest.skip("only the baseline copy runs here (no AVX2+FMA, or NCL_CPU_ISA=baseline)")
    config = ncl.MachineConfig(n=32, cells=8, registers=4, stack=6)
    program = _soft_program(config, lines=7, dtype=torch.float32, seed=21)
    regs, mem = _soft_inputs(config, batch=4, dtype=torch.float32, seed=21)
    runs = {}
    for isa in ("best", "baseline"):
        if isa == "baseline":
            monkeypatch.setenv("NCL_CPU_ISA", "baseline")
        with torch.no_grad():
            out = program.run(regs.detach(), mem.detach(), max_steps=9)
        runs[isa] = (out, _grads(program, regs, mem, 9, grad_mode="checkpoint", chunk=4))
    assert ext.cpu_isa() == "baseline"
    (out_a, grads_a), (out_b, grads_b) = runs["best"], runs["baseline"]
    _assert_runs_match(out_a, out_b, torch.float32, "avx2+fma against baseline")
    for name in grads_a:
        assert_close(grads_a[name], grads_b[name], torch.float32, f"avx2+fma against baseline: grad {name}")


@pytest.mark.parametrize("field_grads", [True, False])
def test_backward_opcheck(field_grads):
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float32, seed=10)
    regs, mem = (t.detach() for t in _soft_inputs(config, batch=2, dtype=torch.float32, seed=10))
    carry = list(_carry(program, regs, mem).flat())
    grads = [torch.randn_like(t) for t in carry]
    fields = [f.detach() for f in program.fields()]
    out = torch.ops.ncl.machine_run_fwd(*fields, carry, 0, 3, config.halt_eps, 1e-20, True)
    for tape in ((), out[12:13], (*out[12:], out[2])):  # none, the ALU rows, all of it with the memory after
        torch.library.opcheck(torch.ops.ncl.machine_run_bwd.default,
                              (*fields, carry, grads, 0, 3, 1e-20, field_grads, *tape),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.parametrize("isa", ["best", "baseline"])
def test_gradcheck_float64_through_the_kernel(isa, monkeypatch):
    """torch.autograd.gradcheck of a checkpointed run (kernel forward and backward) on a small soft program,
    with respect to every logit block, the registers and the memory; on the AVX2+FMA copy of the kernels
    (where the CPU has it) and on the baseline copy (csrc/cpu/isa.h)."""
    if isa == "baseline":
        monkeypatch.setenv("NCL_CPU_ISA", "baseline")
        assert _ext.load()[0].cpu_isa() == "baseline"
    config = ncl.MachineConfig(n=4, cells=2, registers=2, stack=3)
    program = _soft_program(config, lines=3, dtype=torch.float64, seed=12)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float64, seed=12)
    names = [name for name, _ in program.named_parameters()]
    ip = one_hot(torch.zeros(2, dtype=torch.long), 3, torch.float64)

    def run(*tensors):
        from ncl.machine.run import machine_run
        from ncl_kernels.machine import ProgramFields

        logits = dict(zip(names, tensors[:len(names)]))
        fields = ProgramFields(*(torch.softmax(logits[f"{name}_logits"], -1) for name in ProgramFields._fields))
        assert machine_op.kernel_for(config, ip, None, None) == "cpp"
        out = machine_run(fields, config, ip, tensors[-2], tensors[-1], 5, grad_mode="checkpoint", chunk=2)
        return out.regs, out.mem, out.expected_steps, out.unhalted, out.overflow

    leaves = [p.detach().clone().requires_grad_() for _, p in program.named_parameters()]
    assert torch.autograd.gradcheck(run, (*leaves, regs.detach().requires_grad_(), mem.detach().requires_grad_()))


@pytest.mark.parametrize("grad", [False, True])
def test_a_long_step_budget_stops_soon_after_the_last_sample_halts(monkeypatch, grad):
    """max_steps far beyond the halting step: the kernel is called in chunks, not for max_steps steps; with a
    graph too, whose checkpoint interval (64 for this program) is longer than one call."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    regs = one_hot(torch.tensor([[0, 2, 0, 0], [0, 3, 0, 0]]), config.n, torch.float32).requires_grad_(grad)
    mem = one_hot(torch.ones(2, 16, dtype=torch.long), config.n, torch.float32)
    steps_run = []
    original = machine_op.run_steps

    def counting(flat, first, count, *rest):
        steps_run.append(count)
        return original(flat, first, count, *rest)

    monkeypatch.setattr(machine_op, "run_steps", counting)
    with torch.set_grad_enabled(grad):
        out = program.run(regs, mem, max_steps=100_000)
    assert out.regs.requires_grad == grad
    assert out.steps < 60 and float(out.unhalted.max()) < 1e-6
    assert sum(steps_run) <= 2 * machine_op.RUN_CHUNK + out.steps
    # No call is longer than RUN_CHUNK, whatever the chunk: one 64-step call halting near 47 fits the sum above.
    assert max(steps_run) <= machine_op.RUN_CHUNK


# The Triton whole-run kernel's path through Program.run, on a GPU or on CPU tensors under TRITON_INTERPRET=1
# (the kernel itself is compared with the C++ one in tests/test_machine_run_triton.py).
_triton = pytest.mark.skipif(dispatch.unavailable_reason("triton") is not None,
                             reason=f"triton backend: {dispatch.unavailable_reason('triton')}")
TRITON_DEVICE = "cuda" if torch.cuda.is_available() and not dispatch._interpret() else "cpu"


def _on_triton(program, *tensors):
    return program.to(TRITON_DEVICE), *(t.to(TRITON_DEVICE) for t in tensors)


def test_which_whole_run_kernel_runs(monkeypatch):
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    ip32 = torch.ones(2, 5) / 5
    monkeypatch.setenv("NCL_WHOLE_RUN", "0")
    assert machine_op.kernel_for(config, ip32, "cpp", None) is None
    monkeypatch.delenv("NCL_WHOLE_RUN")
    assert machine_op.kernel_for(config, ip32, "cpp", None) == "cpp"
    assert machine_op.kernel_for(config, ip32.double(), "cpp", None) == "cpp"
    assert machine_op.kernel_for(config, ip32, "reference", None) is None
    assert machine_op.kernel_for(config, ip32, "cpp", lambda *a, **k: None) is None  # a step_fn replaces the step
    circuit = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4, alu="circuit")
    assert machine_op.kernel_for(circuit, ip32, "cpp", None) is None
    # The default backend on CPU: the same rules.
    assert machine_op.kernel_for(config, ip32, None, None) == "cpp"
    assert machine_op.kernel_for(circuit, ip32, None, None) is None
    assert machine_op.kernel_for(config, ip32.half(), None, None) is None
    assert machine_op.kernel_for(config, ip32, None, step) is None
    if dispatch.unavailable_reason("triton") is None:
        assert machine_op.kernel_for(config, ip32, "triton", None) == "triton"
        assert machine_op.kernel_for(config, ip32.half(), "triton", None) is None  # the Triton kernel is fp32


@_triton
def test_triton_kernel_runs_equal_the_cpp_kernel_runs():
    """No graph: Program.run on the Triton whole-run kernel against the C++ one, on a sharp program whose
    samples halt at different steps and on a soft program."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    values = torch.tensor([[0, 1, 0, 0], [0, 4, 0, 0], [0, 2, 0, 0]])
    regs = one_hot(values, config.n, torch.float32)
    mem = one_hot(torch.arange(3 * 16).reshape(3, 16) % 16, config.n, torch.float32)
    with torch.no_grad():
        cpp = program.run(regs, mem, max_steps=200, backend="cpp")
        gpu_program, gpu_regs, gpu_mem = _on_triton(copy.deepcopy(program), regs, mem)
        tri = _cpu_result(gpu_program.run(gpu_regs, gpu_mem, max_steps=200, backend="triton"))
    assert tri.steps == cpp.steps < 200
    _assert_runs_match(tri, cpp, torch.float32, "sharp: triton kernel against cpp kernel")

    soft = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(soft, lines=6, dtype=torch.float32, seed=3)
    regs, mem = (t.detach() for t in _soft_inputs(soft, batch=3, dtype=torch.float32, seed=3))
    with torch.no_grad():
        cpp = program.run(regs, mem, max_steps=7, backend="cpp")
        gpu_program, gpu_regs, gpu_mem = _on_triton(copy.deepcopy(program), regs, mem)
        tri = _cpu_result(gpu_program.run(gpu_regs, gpu_mem, max_steps=7, backend="triton"))
    _assert_runs_match(tri, cpp, torch.float32, "soft: triton kernel against cpp kernel")


def _cpu_result(out):
    return type(out)(*(t.cpu() if isinstance(t, torch.Tensor) else t for t in out))


@_triton
def test_triton_checkpointed_gradients_equal_full_bptt():
    """grad_mode="checkpoint" on the Triton kernel (its forward; the backward recomputes each chunk with the
    triton step ops under autograd) against full BPTT through the same step ops and against the cpp kernel."""
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float32, seed=8)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float32, seed=8)
    cpp = _grads(program, regs, mem, 6, backend="cpp", grad_mode="checkpoint", chunk=4)
    program, regs, mem = _on_triton(program, regs, mem)
    ckpt = _grads(program, regs, mem, 6, backend="triton", grad_mode="checkpoint", chunk=4)
    full = _grads(program, regs, mem, 6, backend="triton", grad_mode="full")
    ckpt, full = ({k: v.cpu() for k, v in g.items()} for g in (ckpt, full))
    for name in full:
        assert float(full[name].abs().max()) > 0, name
        assert_close(ckpt[name], full[name], torch.float32, f"triton checkpoint against full: grad {name}")
        assert_close(ckpt[name], cpp[name], torch.float32, f"triton checkpoint against cpp: grad {name}")
