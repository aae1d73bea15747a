"""Long runs: 1,000 soft steps of random β = 30 programs on dense soft inputs, forward and backward.

Program families (all random, seeded):

- ``looping``: 30·one_hot(random instruction) + 0.1·noise per field, no HALT or RET and no branch on data (JMP and
  CALL only), the last line ``JMP`` to line 0: it never halts, so every run is ``max_steps`` long;
- ``counted``: a counted loop (``CONST r3, 31``; ``JZ r3, done``; random body; ``DEC r3``; ``JMP``) that halts after
  about 1,000 steps whatever the data;
- ``staggered``: the counted loop's body with the counter r3 taken from the input (one-hot 5, 17 or 31, the other
  registers dense), so the samples halt at different steps and the halted ones run on (ρ ≈ 1e-13, the fields
  renormalised by 1/ρ) until the last halts;
- ``soft``: random logits (N(0, 2²)): every op, register and target has mass on every line; it halts within about
  100 steps. A soft program that runs on for 1,000 steps: :func:`test_soft_program_stays_normalised_over_a_long_run`.

The sharp bodies keep the registers' mass stable: their bilinear ops (the binary ALU ops and LOAD, whose output
mass is the product of their operands' masses) read only r2 and r3, which nothing but the counter's CONST and DEC write,
and write only r0 and r1; and they branch only on the sharp counter, so the ip stays on one line and no two lines'
fields mix. A loop that feeds a bilinear op's result back into its own operands would multiply the registers'
rounding error in mass by up to 2 per iteration; the register write normalises the value it writes (docs/design.md
§3 step 4), which :func:`test_feedback_loop_stays_normalised` checks over 1,000 steps (docs/machine.md, "Long runs
and determinism").
A branch on soft data mixes the fields of the lines it splits to, which can close such a loop too (measured before the
write was normalised: 2 of 16 random looping programs with JZ on soft data left 1 ± 1e-3 after 1,500-3,000 steps).

The inputs are dense random softmax rows. With fp16 or bf16 inputs the state is fp32 (``Program.run`` upcasts
and renormalises them). Checked: no NaN or Inf in the readouts or the gradients (to every logit block and to
the inputs), readout rows summing to 1 within :data:`ROW_TOL`, and for the programs that halt the halted mass
``1 - unhalted`` within 1e-5 of 1. Sizes: n = 16 or 32, C = 8, K = 4, S = 8, B = 3.

Backends: ``cpp`` (the whole-run kernel, and its step ops for ``grad_mode="full"``) for every case; ``reference``
for 1,000 steps without a graph and 100 steps with one; ``triton`` only under ``TRITON_INTERPRET=1`` at tiny
sizes and 24 steps (the interpreter is slow); ``cuda`` and ``triton`` at the full size on a GPU
(``@pytest.mark.cuda``). ``NCL_THOROUGH=1`` runs more seeds, n = 32 for every family, and 4,000 steps.
"""

from __future__ import annotations

import os

import pytest
import torch

import ncl
from ncl.machine.instructions import Instruction
from ncl_kernels import dispatch
from ncl_kernels.isa import BINARY_OPS, OP, OPCODES, one_hot

THOROUGH = os.environ.get("NCL_THOROUGH", "") not in ("", "0")
SEEDS = range(6) if THOROUGH else range(2)
STEPS = 4000 if THOROUGH else 1000
#: Steps of the runs that keep a graph of every step (``grad_mode="full"``).
FULL_STEPS = 400 if THOROUGH else 60
#: How far a readout row's sum may be from 1 (state dtype). Measured over 6 seeds of every family: at most 8.3e-7
#: (fp32 state, fp32/fp16/bf16 inputs) and 2.6e-10 (fp64) in 1,000 steps, 8.3e-7 and 1.05e-9 in 4,000.
ROW_TOL = {torch.float32: 1e-4, torch.float64: 1e-8}
FAMILIES = ("looping", "counted", "staggered", "soft")
#: The families that halt before ``STEPS``.
HALTING = ("counted", "staggered", "soft")

needs_cpp = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                               reason=f"cpp backend: {dispatch.unavailable_reason('cpp')}")

_SOURCES, _WORK = (2, 3), (0, 1)  # registers bilinear ops read; registers the body writes
_BILINEAR = set(BINARY_OPS) | {"LOAD"}
_STRAIGHT = tuple(o for o in OPCODES if o not in ("HALT", "RET", "JMP", "JZ", "JNZ", "CALL"))
_LOOPING = _STRAIGHT + ("JMP", "CALL")


def config(family: str) -> ncl.MachineConfig:
    # The counted loop needs a counter up to 31 for about 1,000 steps.
    n = 32 if family in ("counted", "staggered") or THOROUGH else 16
    return ncl.MachineConfig(n=n, cells=8, registers=4, stack=8)


def _instruction(g: torch.Generator, cfg: ncl.MachineConfig, lines: int, ops: tuple[str, ...]) -> Instruction:
    def pick(choices):
        return choices[int(torch.randint(len(choices), (1,), generator=g))]

    op = pick(ops)
    every = tuple(range(cfg.registers))
    sources = _SOURCES if op in _BILINEAR else every
    return Instruction(OP[op], a=pick(sources), b=pick(sources), d=pick(_WORK), imm=pick(range(cfg.n)),
                       tgt=pick(range(lines)))


def _sharp(code: list[Instruction], cfg: ncl.MachineConfig, g: torch.Generator) -> ncl.Program:
    program = ncl.Program.from_instructions(code, cfg)
    with torch.no_grad():
        for p in program.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return program


def make_program(family: str, seed: int) -> ncl.Program:
    """A random program of ``family`` (module docstring), fp32 logits."""
    cfg = config(family)
    g = torch.Generator().manual_seed(1000 * FAMILIES.index(family) + seed)
    if family == "looping":
        lines = 8
        code = [_instruction(g, cfg, lines, _LOOPING) for _ in range(lines - 1)]
        return _sharp(code + [Instruction(OP["JMP"], tgt=0)], cfg, g)
    if family in ("counted", "staggered"):
        body = 28  # 31 passes of 31 lines, plus the set-up and the exit: 964 steps
        start = [Instruction(OP["CONST"], d=3, imm=31)] if family == "counted" else []
        done = len(start) + body + 3
        code = start + [Instruction(OP["JZ"], a=3, tgt=done)]
        code += [_instruction(g, cfg, done + 1, _STRAIGHT) for _ in range(body)]
        code += [Instruction(OP["DEC"], a=3, d=3), Instruction(OP["JMP"], tgt=len(start)), Instruction(OP["HALT"])]
        return _sharp(code, cfg, g)
    program = ncl.Program(cfg, 8)
    with torch.no_grad():
        for p in program.parameters():
            p.copy_(2 * torch.randn(p.shape, generator=g))
    return program


def soft_inputs(cfg: ncl.MachineConfig, batch: int, dtype: torch.dtype, seed: int, family: str = ""):
    """Dense random distributions ``regs (B, K, n)`` and ``mem (B, C, n)`` in ``dtype`` (for ``staggered``, r3 is a
    one-hot loop count)."""
    g = torch.Generator().manual_seed(seed)
    regs = torch.softmax(torch.randn(batch, cfg.registers, cfg.n, generator=g, dtype=torch.float64), -1)
    mem = torch.softmax(torch.randn(batch, cfg.cells, cfg.n, generator=g, dtype=torch.float64), -1)
    if family == "staggered":
        regs[:, 3] = one_hot(torch.tensor([5, 17, 31, 11])[torch.arange(batch) % 4], cfg.n, torch.float64)
    return regs.to(dtype), mem.to(dtype)


def loss_of(out) -> torch.Tensor:
    """A loss that uses every output of the run."""
    weights = torch.linspace(0.5, 1.5, out.regs.shape[-1], dtype=out.regs.dtype, device=out.regs.device)
    return ((out.regs * weights).sum() + (out.mem * weights).sum() + out.expected_steps.sum() + out.unhalted.sum()
            + out.overflow.sum())


def check_run(out, family: str, state_dtype: torch.dtype, steps: int) -> dict[str, float]:
    """The long-run properties of one result; returns the measured row error and halted mass."""
    for name in ("r0", "regs", "mem", "unhalted", "expected_steps", "overflow"):
        value = getattr(out, name)
        assert value.dtype == state_dtype, name
        assert bool(torch.isfinite(value).all()), f"{family}: {name} is not finite"
    rows = max(float((out.regs.detach().sum(-1) - 1).abs().max()), float((out.mem.detach().sum(-1) - 1).abs().max()))
    assert rows <= ROW_TOL[state_dtype], f"{family}: a readout row sums to 1 ± {rows:.2e}"
    assert bool((out.regs >= -ROW_TOL[state_dtype]).all()) and bool((out.mem >= -ROW_TOL[state_dtype]).all())
    unhalted = out.unhalted.detach()
    assert bool((unhalted >= -1e-6).all()) and bool((unhalted <= 1 + 1e-6).all())
    if family not in HALTING:  # all the steps run, and the mass stays running
        assert out.steps == steps and float((1 - unhalted).abs().max()) < 1e-5
    else:  # halts before the limit: the halted mass is 1
        assert out.steps < steps, f"{family}: ran all {steps} steps"
        assert float((1 - (1 - unhalted)).abs().max()) < 1e-5
    assert bool((out.expected_steps >= 1).all()) and bool((out.expected_steps <= out.steps + 1e-3).all())
    return {"rows": rows, "halted": float(1 - unhalted.max())}


def grads_of(program: ncl.Program, regs: torch.Tensor, mem: torch.Tensor) -> dict[str, torch.Tensor]:
    grads = {name: p.grad for name, p in program.named_parameters()}
    grads.update(regs=regs.grad, mem=mem.grad)
    return grads


def check_grads(grads: dict[str, torch.Tensor], what: str) -> float:
    """Every gradient present and finite; returns the largest |entry|."""
    for name, g in grads.items():
        assert g is not None, f"{what}: no gradient to {name}"
        assert bool(torch.isfinite(g).all()), f"{what}: the gradient to {name} is not finite"
    return max(float(g.abs().max()) for g in grads.values())


# ---------------------------------------------------------------------------------------------------------------
# Forward: 1,000 steps without a graph.


@needs_cpp
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("family", FAMILIES)
def test_long_run_forward_cpp(family, input_dtype):
    state_dtype = torch.float64 if input_dtype == torch.float64 else torch.float32
    for seed in SEEDS:
        program = make_program(family, seed)
        regs, mem = soft_inputs(program.config, 3, input_dtype, seed, family)
        with torch.no_grad():
            out = program.run(regs, mem, max_steps=STEPS, backend="cpp")
        check_run(out, family, state_dtype, STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_long_run_forward_reference(family):
    program = make_program(family, 0)
    regs, mem = soft_inputs(program.config, 3, torch.float32, 0, family)
    with torch.no_grad():
        out = program.run(regs, mem, max_steps=STEPS, backend="reference")
    check_run(out, family, torch.float32, STEPS)


@needs_cpp
def test_half_precision_program():
    """A bf16 or fp16 program: its fields are the softmax of the logits in the state's fp32, so rows sum to 1."""
    for dtype in (torch.bfloat16, torch.float16):
        program = make_program("counted", 0).to(dtype)
        regs, mem = soft_inputs(program.config, 3, dtype, 0)
        with torch.no_grad():
            out = program.run(regs, mem, max_steps=STEPS, backend="cpp")
        check_run(out, "counted", torch.float32, STEPS)


# ---------------------------------------------------------------------------------------------------------------
# Backward.


@needs_cpp
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", FAMILIES)
def test_long_run_gradients_checkpoint(family, input_dtype):
    """``grad_mode="checkpoint"`` (the default) over the whole run: the whole-run kernel's forward and backward."""
    program = make_program(family, 0)
    regs, mem = (t.requires_grad_() for t in soft_inputs(program.config, 3, input_dtype, 0, family))
    out = program.run(regs, mem, max_steps=STEPS, backend="cpp")
    check_run(out, family, torch.float32, STEPS)
    loss_of(out).backward()
    check_grads(grads_of(program, regs, mem), f"{family} checkpoint")
    assert regs.grad.dtype == input_dtype


@needs_cpp
@pytest.mark.parametrize("family", FAMILIES)
def test_long_run_gradients_full(family):
    """``grad_mode="full"`` (autograd through every step op) on a shorter run, equal to ``"checkpoint"``."""
    program = make_program(family, 1)
    regs0, mem0 = soft_inputs(program.config, 3, torch.float32, 1, family)
    grads = {}
    for mode in ("full", "checkpoint"):
        program.zero_grad(set_to_none=True)
        regs, mem = regs0.clone().requires_grad_(), mem0.clone().requires_grad_()
        out = program.run(regs, mem, max_steps=FULL_STEPS, backend="cpp", grad_mode=mode)
        assert torch.isfinite(out.regs).all() and torch.isfinite(out.mem).all()
        loss_of(out).backward()
        grads[mode] = grads_of(program, regs, mem)
        check_grads(grads[mode], f"{family} {mode}")
    for name, g in grads["full"].items():
        torch.testing.assert_close(grads["checkpoint"][name], g, rtol=1e-3, atol=1e-5 * max(1.0, float(g.abs().max())))


@pytest.mark.slow
def test_long_run_gradients_reference():
    """The reference backend, autograd through 100 steps of every family."""
    for family in FAMILIES:
        program = make_program(family, 0)
        regs, mem = (t.requires_grad_() for t in soft_inputs(program.config, 2, torch.float32, 0, family))
        out = program.run(regs, mem, max_steps=100, backend="reference", grad_mode="full")
        assert torch.isfinite(out.regs).all() and torch.isfinite(out.mem).all()
        loss_of(out).backward()
        check_grads(grads_of(program, regs, mem), f"{family} reference")


# ---------------------------------------------------------------------------------------------------------------
# Triton: under the interpreter only at tiny sizes; at full size on a GPU.


@pytest.mark.slow
@pytest.mark.skipif(dispatch.unavailable_reason("triton") is not None or torch.cuda.is_available(),
                    reason="runs Triton under TRITON_INTERPRET=1 on CPU tensors (the GPU case is the cuda test)")
def test_triton_interpreter_tiny_run():
    """24 steps of a looping program at n = 8 on the Triton whole-run kernel (interpreter), forward and backward."""
    cfg = ncl.MachineConfig(n=8, cells=4, registers=4, stack=4)
    g = torch.Generator().manual_seed(5)
    code = [_instruction(g, cfg, 4, _LOOPING) for _ in range(3)] + [Instruction(OP["JMP"], tgt=0)]
    program = _sharp(code, cfg, g)
    regs, mem = (t.requires_grad_() for t in soft_inputs(cfg, 2, torch.bfloat16, 5))
    out = program.run(regs, mem, max_steps=24, backend="triton", chunk=8)
    check_run(out, "looping", torch.float32, 24)
    loss_of(out).backward()
    check_grads(grads_of(program, regs, mem), "triton interpreter")


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", FAMILIES)
def test_long_run_gpu(family, input_dtype, backend):
    if dispatch.unavailable_reason(backend) is not None:
        pytest.skip(f"{backend}: {dispatch.unavailable_reason(backend)}")
    program = make_program(family, 0).cuda()
    regs, mem = (t.cuda().requires_grad_() for t in soft_inputs(program.config, 3, input_dtype, 0, family))
    out = program.run(regs, mem, max_steps=STEPS, backend=backend)
    check_run(out, family, torch.float32, STEPS)
    loss_of(out).backward()
    check_grads(grads_of(program, regs, mem), f"{family} {backend}")


# ---------------------------------------------------------------------------------------------------------------
# Feedback: the bilinear ops multiply masses; the register write normalises the value it writes (docs/design.md §3
# step 4), so a loop that feeds a result back into its operands keeps its registers' mass.


def soft_looping(seed: int) -> ncl.Program:
    """A soft program (logits N(0, 2²)) that seldom halts: HALT and RET logits −10, the last line +10 on JMP."""
    cfg = ncl.MachineConfig(n=16, cells=8, registers=4, stack=8)
    g = torch.Generator().manual_seed(seed)
    program = ncl.Program(cfg, 8)
    with torch.no_grad():
        for p in program.parameters():
            p.copy_(2 * torch.randn(p.shape, generator=g))
        program.op_logits[:, OP["HALT"]] -= 10
        program.op_logits[:, OP["RET"]] -= 10
        program.op_logits[-1, OP["JMP"]] += 10
    return program


#: How far a readout row's sum may be from 1 after 1,000 steps of the feedback loops below (state dtype), with the
#: written value normalised. Measured (cpp and reference, seeds 0 and 2): at most 1.0e-5 (fp32) and 5.0e-13 (fp64;
#: the soft programs 6.6e-14), nearly all of it the drift of ρ + Σ h (the ip and halted mass), which the readouts'
#: halting mixture carries; the registers themselves stay within 1.1e-6 (fp32) and 6.7e-16 (fp64, 2.4e-14 for the
#: squaring loop). Without the normalisation the squaring loop's readout collapsed (|Σ − 1| = 1 after 1,000 steps)
#: and the soft programs reached NaN (fp32) or drifted by 0.22 and 0.61 (fp64).
FEEDBACK_TOL = {torch.float32: 1e-4, torch.float64: 1e-11}


def _rows_stay_normalised(program: ncl.Program, dtype: torch.dtype, seed: int, backend: str = "cpp") -> float:
    regs, mem = soft_inputs(program.config, 3, dtype, seed)
    with torch.no_grad():
        out = program.to(dtype).run(regs, mem, max_steps=1000, backend=backend)
    assert out.steps == 1000
    for name in ("regs", "mem", "unhalted"):
        assert bool(torch.isfinite(getattr(out, name)).all()), f"{name} is not finite"
    rows = max(float((out.regs.detach().sum(-1) - 1).abs().max()), float((out.mem.detach().sum(-1) - 1).abs().max()))
    assert rows <= FEEDBACK_TOL[dtype], f"a readout row sums to 1 ± {rows:.2e}"
    assert bool((out.regs >= -FEEDBACK_TOL[dtype]).all()) and bool((out.mem >= -FEEDBACK_TOL[dtype]).all())
    return rows


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feedback_loop_stays_normalised(dtype):
    """``loop: ADD r0, r0, r0; JMP loop`` on soft inputs, 1,000 steps. r0's mass m becomes m² every pass, which
    doubles its rounding error; the normalised write puts it back to 1 every pass."""
    cfg = ncl.MachineConfig(n=16, cells=8, registers=4, stack=8)
    _rows_stay_normalised(ncl.assemble("loop: ADD r0, r0, r0\n      JMP loop\n", cfg), dtype, 0)


@needs_cpp
@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_program_stays_normalised_over_a_long_run(dtype, seed):
    """A soft program running 1,000 steps (without the normalised write: NaN after 130-330 steps in fp32)."""
    _rows_stay_normalised(soft_looping(seed), dtype, seed)


def test_soft_program_stays_normalised_reference():
    """The same on the reference step (``ncl_kernels.machine.step``), fp32 and fp64."""
    for dtype in (torch.float32, torch.float64):
        _rows_stay_normalised(soft_looping(0), dtype, 0, backend="reference")


@needs_cpp
def test_soft_program_long_run_gradients():
    """The whole-run kernel's backward (``grad_mode="checkpoint"``) through 1,000 steps of the soft program: finite."""
    program = soft_looping(0)
    regs, mem = (t.requires_grad_() for t in soft_inputs(program.config, 3, torch.float32, 0))
    out = program.run(regs, mem, max_steps=1000, backend="cpp")
    assert out.steps == 1000
    loss_of(out).backward()
    check_grads(grads_of(program, regs, mem), "soft program, 1,000 steps")
