"""The fused machine path (``Program.run`` on the dispatched fused kernels) against the reference, and the
backward choices of :func:`ncl.machine.run.machine_run`.

- fused (``cpp``) == ``reference``: values, and gradients to the program logits, registers and memory, on
  random soft programs and states (float64 and fp32) and on sharp programs with one-hot inputs;
- ``grad_mode="checkpoint"`` gives the gradients of ``"full"``; ``"truncated"`` equals ``"full"`` when the run
  fits in the window and otherwise keeps only the last ``k`` steps' gradient;
- early exit when samples halt at different steps.
"""

from __future__ import annotations

import pytest
import torch

import ncl
from ncl.machine.run import machine_run
from ncl_kernels.isa import one_hot
from ncl_kernels import dispatch
from ncl_kernels.testing import assert_close

needs_cpp = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                               reason=f"cpp backend: {dispatch.unavailable_reason('cpp')}")

#: One pass of a loop that touches the ALU, memory, both stacks and the return stack (CALL/RET).
LOOP = """
        CONST r0, 0
loop:   JZ r1, done
        CALL body
        DEC r1, r1
        JMP loop
done:   HALT
body:   PUSH r1
        LOAD r3, [r1]
        ADD r0, r0, r3
        MUL r2, r3, r1
        STORE [r1], r2
        POP r2
        RET
"""


def _soft_program(config: ncl.MachineConfig, lines: int, dtype, seed: int) -> ncl.Program:
    """A program with random (soft) logits: every op, register and target has mass on every line."""
    g = torch.Generator().manual_seed(seed)
    program = ncl.Program(config, lines).to(dtype)
    with torch.no_grad():
        for p in program.parameters():
            p.copy_(2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return program


def _soft_inputs(config: ncl.MachineConfig, batch: int, dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    regs = torch.softmax(torch.randn(batch, config.registers, config.n, generator=g, dtype=dtype), -1)
    mem = torch.softmax(torch.randn(batch, config.cells, config.n, generator=g, dtype=dtype), -1)
    return regs.requires_grad_(), mem.requires_grad_()


def _run_and_grads(program, regs, mem, steps, read_mem=True, **kwargs):
    """Values of the run and gradients of a loss that uses every output (without ``read_mem``: all but the
    memory), to logits, regs and mem."""
    program.zero_grad(set_to_none=True)
    regs.grad = mem.grad = None
    out = program.run(regs, mem, max_steps=steps, **kwargs)
    weights = torch.linspace(0.5, 1.5, program.config.n, dtype=out.r0.dtype)
    loss = ((out.regs * weights).sum() + out.expected_steps.sum() + out.unhalted.sum() + out.overflow.sum()
            + ((out.mem * weights).sum() if read_mem else 0))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in program.named_parameters()}
    # None when no gradient reaches the inputs (a truncated run longer than its window).
    grads["regs"] = torch.zeros_like(regs) if regs.grad is None else regs.grad.clone()
    grads["mem"] = torch.zeros_like(mem) if mem.grad is None else mem.grad.clone()
    return out, grads


def _assert_runs_match(a, b, dtype, what):
    assert a.steps == b.steps, f"{what}: steps {a.steps} vs {b.steps}"
    for name in ("r0", "regs", "mem", "unhalted", "expected_steps", "overflow"):
        assert_close(getattr(a, name), getattr(b, name), dtype, f"{what}: {name}")


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,alu", [(8, "table"), (16, "table"), (8, "circuit")])
def test_fused_equals_reference_on_soft_programs(dtype, n, alu):
    config = ncl.MachineConfig(n=n, cells=4, registers=3, stack=4, alu=alu)
    for seed in range(2):
        program = _soft_program(config, lines=5, dtype=dtype, seed=seed)
        regs, mem = _soft_inputs(config, batch=3, dtype=dtype, seed=seed)
        ref, ref_grads = _run_and_grads(program, regs, mem, 12, backend="reference", grad_mode="full")
        fused, fused_grads = _run_and_grads(program, regs, mem, 12, backend="cpp")
        what = f"{alu} n={n} {dtype} seed {seed}"
        _assert_runs_match(fused, ref, dtype, what)
        for name, g in ref_grads.items():
            assert_close(fused_grads[name], g, dtype, f"{what}: grad {name}")


@needs_cpp
@pytest.mark.parametrize("read_mem", [True, False])
@pytest.mark.parametrize("dtype,steps", [(torch.float32, 60), (torch.float64, 28)])
def test_fused_equals_reference_on_a_sharp_program(dtype, steps, read_mem):
    """A β-sharp program on one-hot inputs. fp32 runs until every sample has halted (at different steps).

    fp64 stops at step 28, before any sample halts: once a sample has halted its ρ is ~1e-10 and the fields
    are renormalised by 1/ρ (docs/design.md §3 step 1), so its gradients are ill-conditioned by ~1e10 and any two
    fp64 evaluations (here: BLAS vs. hand-ordered sums) differ by rounding × 1e10, beyond the fp64 tolerance.
    fp32 rounds the ~1e-13 leaks away and stays within its tolerance after halting (measured).

    Without ``read_mem`` the loss leaves the memory's halting readout alone, and the fp32 backward then leaves
    the memory rows, the stack slots and the POP read alone on the lines that do not use them (negligible
    weights, csrc/cpu/machine_bwd.cpp); the program has all of LOAD, STORE, PUSH, POP, CALL and RET.
    """
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config).to(dtype)
    values = torch.tensor([[0, 5, 0, 0], [0, 3, 1, 2], [0, 4, 7, 1]])  # r1 = 5, 3, 4 iterations
    mem_values = torch.arange(3 * 16).reshape(3, 16) % 16
    regs = one_hot(values, config.n, dtype).requires_grad_()
    mem = one_hot(mem_values, config.n, dtype).requires_grad_()
    ref, ref_grads = _run_and_grads(program, regs, mem, steps, read_mem, backend="reference", grad_mode="full")
    fused, fused_grads = _run_and_grads(program, regs, mem, steps, read_mem, backend="cpp")
    _assert_runs_match(fused, ref, dtype, "sharp")
    for name, g in ref_grads.items():
        assert_close(fused_grads[name], g, dtype, f"sharp: grad {name}")
    if dtype == torch.float32:
        # Hard limit: the fused run ends with the VM's registers and memory.
        assert float(fused.unhalted.detach().max()) < 1e-6
        for b in range(3):
            expect = program.execute(regs=values[b].tolist(), mem=mem_values[b].tolist(), engine="vm")
            assert fused.regs[b].argmax(-1).tolist() == expect.regs
            assert fused.mem[b].argmax(-1).tolist() == expect.mem


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_checkpoint_gives_the_gradients_of_full_bptt(chunk):
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float64, seed=3)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float64, seed=3)
    full, full_grads = _run_and_grads(program, regs, mem, 15, grad_mode="full")
    ckpt, ckpt_grads = _run_and_grads(program, regs, mem, 15, grad_mode="checkpoint", chunk=chunk)
    _assert_runs_match(ckpt, full, torch.float64, f"checkpoint k={chunk}")
    for name, g in full_grads.items():
        assert_close(ckpt_grads[name], g, torch.float64, f"checkpoint k={chunk}: grad {name}")


@needs_cpp
@pytest.mark.parametrize("chunk", [40, 64, None])
def test_checkpoint_over_several_kernel_calls_gives_the_gradients_of_full_bptt(chunk):
    """Chunks longer than one forward kernel call (RUN_CHUNK steps): the forward keeps one carry a chunk and the
    calls' tape rows joined. The batch halts after 93 steps: chunks of 40 are calls of 32 + 8 twice, then one that
    stops after 13; chunks of 64, calls of 32 + 32, then one that stops after 29. None is this 6-line program's
    default on cpp, 64."""
    from ncl_kernels.machine import RUN_CHUNK

    assert RUN_CHUNK == 32
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=6, dtype=torch.float64, seed=1)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float64, seed=1)
    full, full_grads = _run_and_grads(program, regs, mem, 200, grad_mode="full")
    ckpt, ckpt_grads = _run_and_grads(program, regs, mem, 200, grad_mode="checkpoint", chunk=chunk)
    assert full.steps == ckpt.steps == 93
    _assert_runs_match(ckpt, full, torch.float64, f"checkpoint k={chunk}")
    for name, g in full_grads.items():
        assert_close(ckpt_grads[name], g, torch.float64, f"checkpoint k={chunk}: grad {name}")


def test_the_default_checkpoint_chunk():
    """64 on the cpp kernel for short programs, down to 16 as k·L passes 8192; 16 elsewhere."""
    from ncl.machine.run import DEFAULT_CHUNK, checkpoint_chunk

    lines = (1, 9, 128, 129, 256, 257, 1162)
    assert [checkpoint_chunk("cpp", n) for n in lines] == [64, 64, 64, 32, 32, 16, 16]
    assert checkpoint_chunk("triton", 9) == checkpoint_chunk(None, 9) == DEFAULT_CHUNK == 16


def test_joined_tapes():
    """Two kernel calls' tape rows as one chunk's: rows in step order, a sample invertible only if in both."""
    from ncl_kernels.machine import _joined_tapes

    gen = torch.Generator().manual_seed(0)
    first = (torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen), torch.tensor([1.0, 0.0]))
    second = (torch.randn(2, 5, 4, generator=gen), torch.randn(2, 5, 4, generator=gen), torch.tensor([1.0, 1.0]))
    alu, load, invertible = _joined_tapes([first, second])
    assert torch.equal(alu[:, :3], first[0]) and torch.equal(alu[:, 3:], second[0])
    assert torch.equal(load[:, :3], first[1]) and torch.equal(load[:, 3:], second[1])
    assert invertible.tolist() == [1.0, 0.0]
    assert _joined_tapes([first]) is first


def test_truncated_equals_full_within_the_window_and_drops_the_rest_outside():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float64, seed=4)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float64, seed=4)
    full, full_grads = _run_and_grads(program, regs, mem, 10, grad_mode="full")
    # The whole run (10 steps) fits in a window of 10: truncation changes nothing.
    trunc, trunc_grads = _run_and_grads(program, regs, mem, 10, grad_mode="truncated", chunk=10)
    _assert_runs_match(trunc, full, torch.float64, "truncated k=T")
    for name, g in full_grads.items():
        assert_close(trunc_grads[name], g, torch.float64, f"truncated k=T: grad {name}")
    # A window of 3: same values; the inputs get no gradient (steps 1..7 are constants), the program a
    # different, non-zero one.
    trunc, trunc_grads = _run_and_grads(program, regs, mem, 10, grad_mode="truncated", chunk=3)
    _assert_runs_match(trunc, full, torch.float64, "truncated k=3")
    assert float(trunc_grads["regs"].abs().max()) == 0 and float(trunc_grads["mem"].abs().max()) == 0
    assert float(trunc_grads["op_logits"].abs().max()) > 0
    assert not torch.allclose(trunc_grads["op_logits"], full_grads["op_logits"])


def test_truncated_gradient_is_that_of_the_last_k_steps():
    """The truncated run's gradient equals full BPTT started from the (detached) state T-k steps in."""
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float64, seed=5)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float64, seed=5)
    steps, k = 11, 4  # the window starts at step 7, inside the second chunk
    trunc, trunc_grads = _run_and_grads(program, regs, mem, steps, grad_mode="truncated", chunk=k)

    from ncl_kernels.machine import Carry, advance
    from ncl.machine.run import finish
    from ncl_kernels.machine import initial_state

    program.zero_grad(set_to_none=True)
    fields = program.fields()
    zero = regs.new_zeros(2)
    carry = Carry(initial_state(one_hot([0, 0], 5, torch.float64), regs.detach(),
                                mem.detach(), config.stack), torch.zeros_like(regs), torch.zeros_like(mem), zero,
                  zero.clone())
    with torch.no_grad():
        carry, _ = advance(carry, 0, steps - k, fields, config, None)
    carry, _ = advance(carry, steps - k, k, fields, config, None)
    out = finish(carry, steps)
    weights = torch.linspace(0.5, 1.5, config.n, dtype=torch.float64)
    ((out.regs * weights).sum() + (out.mem * weights).sum() + out.expected_steps.sum() + out.unhalted.sum()
     + out.overflow.sum()).backward()
    for name, p in program.named_parameters():
        assert_close(trunc_grads[name], p.grad, torch.float64, f"truncated: grad {name}")


@pytest.mark.parametrize("grad_mode", ["full", "checkpoint", "truncated"])
def test_early_exit_with_samples_halting_at_different_steps(grad_mode):
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config).to(torch.float64)
    values = torch.tensor([[0, 1, 0, 0], [0, 4, 0, 0], [0, 2, 0, 0]])
    regs = one_hot(values, config.n, torch.float64).requires_grad_()
    mem = one_hot(torch.ones(3, 16, dtype=torch.long), config.n, torch.float64).requires_grad_()
    vm_steps = [program.execute(regs=v.tolist(), mem=[1] * 16, engine="vm").steps for v in values]
    assert len(set(vm_steps)) == 3
    out, grads = _run_and_grads(program, regs, mem, 500, grad_mode=grad_mode, chunk=5)
    assert out.steps == max(vm_steps)  # stopped as soon as the last sample halted, not at 500
    expected = torch.tensor(vm_steps, dtype=torch.float64)
    torch.testing.assert_close(out.expected_steps, expected, rtol=0, atol=1e-6)
    assert all(torch.isfinite(g).all() for g in grads.values())
    full, _ = _run_and_grads(program, regs, mem, 500, grad_mode="full")
    _assert_runs_match(out, full, torch.float64, f"early exit {grad_mode}")


def test_no_grad_run_and_zero_steps():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=4, dtype=torch.float32, seed=6)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float32, seed=6)
    with torch.no_grad():
        a = program.run(regs, mem, max_steps=9, grad_mode="checkpoint", chunk=2)
        b = program.run(regs, mem, max_steps=9, grad_mode="full")
    _assert_runs_match(a, b, torch.float32, "no grad")
    assert not a.regs.requires_grad
    out = program.run(regs, mem, max_steps=0)
    assert out.steps == 0
    torch.testing.assert_close(out.regs, regs)


def test_bad_run_options():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=4, dtype=torch.float32, seed=7)
    regs, mem = _soft_inputs(config, batch=1, dtype=torch.float32, seed=7)
    with pytest.raises(ValueError, match="grad_mode"):
        program.run(regs, mem, max_steps=3, grad_mode="bptt")
    with pytest.raises(ValueError, match="chunk"):
        program.run(regs, mem, max_steps=3, chunk=0)
    with pytest.raises(ValueError, match="max_steps"):
        machine_run(program.fields(), config, one_hot([0], 4), regs, mem, -1)
