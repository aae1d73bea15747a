"""Determinism: under ``torch.use_deterministic_algorithms(True)`` every CPU run works, and two identical runs are
bit-identical (``torch.equal``), forward and backward, on every CPU backend and with 1, 2 or 4 threads.

- ``reference`` and ``cpp`` (the whole-run kernel for the forward and for ``grad_mode="checkpoint"``, its step ops
  for ``"full"``, ``"truncated"``, ``NCL_WHOLE_RUN=0`` and the circuit ALU);
- the C++ kernels split the batch with ``at::parallel_for``; the whole-run backward sums its threads' partial
  field gradients, whose order would show with three or more threads: it adds them in sample order after the
  parallel loop (``csrc/cpu/machine_bwd.cpp``), tested here with 4 threads;
- on a GPU the kernels listed in :data:`ncl_kernels.dispatch.NONDETERMINISTIC` add with atomics, and deterministic
  mode refuses them there (tested with the device check monkeypatched, since no GPU is needed to see the refusal);
  the list is checked against the sources.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import ncl
import ncl_kernels
from ncl_kernels import dispatch

ROOT = Path(__file__).resolve().parents[1]
CFG = ncl.MachineConfig(n=16, cells=8, registers=4, stack=8)

needs_cpp = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                               reason=f"cpp backend: {dispatch.unavailable_reason('cpp')}")


@pytest.fixture
def deterministic():
    """Deterministic algorithms on (and the thread count restored) for the test."""
    mode = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    torch.set_num_threads(threads)


def _program(alu: str = "table", seed: int = 0) -> ncl.Program:
    """A soft program: every op (MUL, DIV and MOD included), register and target has mass on every line."""
    config = ncl.MachineConfig(n=16, cells=8, registers=4, stack=8, alu=alu)
    g = torch.Generator().manual_seed(seed)
    program = ncl.Program(config, 6)
    with torch.no_grad():
        for p in program.parameters():
            p.copy_(2 * torch.randn(p.shape, generator=g))
    return program


def _inputs(batch: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    regs = torch.softmax(torch.randn(batch, CFG.registers, CFG.n, generator=g), -1)
    mem = torch.softmax(torch.randn(batch, CFG.cells, CFG.n, generator=g), -1)
    return regs, mem


def _run(program: ncl.Program, backend: str, mode: str, steps: int = 40) -> list[torch.Tensor]:
    """Every output of one run and, unless ``mode == "nograd"``, every gradient (logits, registers, memory)."""
    regs, mem = _inputs()
    if mode == "nograd":
        with torch.no_grad():
            out = program.run(regs, mem, max_steps=steps, backend=backend, chunk=8)
        return [out.regs, out.mem, out.unhalted, out.expected_steps, out.overflow, torch.tensor(out.steps)]
    program.zero_grad(set_to_none=True)
    regs.requires_grad_()
    mem.requires_grad_()
    out = program.run(regs, mem, max_steps=steps, backend=backend, grad_mode=mode, chunk=8)
    weights = torch.linspace(0.5, 1.5, CFG.n)
    loss = ((out.regs * weights).sum() + (out.mem * weights).sum() + out.expected_steps.sum() + out.unhalted.sum()
            + out.overflow.sum())
    loss.backward()
    # "truncated" gives the inputs no gradient when the run is longer than its window.
    grads = [p.grad.clone() for p in program.parameters()] + [
        torch.zeros_like(t) if t.grad is None else t.grad for t in (regs, mem)]
    return [out.regs.detach(), out.mem.detach(), out.unhalted.detach(), out.expected_steps.detach()] + grads


def _assert_bit_identical(a: list[torch.Tensor], b: list[torch.Tensor], what: str) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert torch.equal(x, y), f"{what}: tensor {i} differs between two identical runs " \
                                  f"(max |Δ| {float((x.double() - y.double()).abs().max()):.3g})"


BACKENDS = ["reference", pytest.param("cpp", marks=needs_cpp)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["nograd", "checkpoint", "full", "truncated"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_runs_are_bit_identical(deterministic, backend, mode, threads):
    torch.set_num_threads(threads)
    program = _program()
    first = _run(program, backend, mode)
    _assert_bit_identical(first, _run(program, backend, mode), f"{backend} {mode} {threads} threads")


@needs_cpp
@pytest.mark.parametrize("case", ["step ops (NCL_WHOLE_RUN=0)", "circuit ALU"])
def test_cpp_step_ops_are_bit_identical(deterministic, monkeypatch, case):
    torch.set_num_threads(2)
    if case.startswith("step ops"):
        monkeypatch.setenv("NCL_WHOLE_RUN", "0")
    program = _program(alu="circuit" if case == "circuit ALU" else "table")
    for mode in ("nograd", "checkpoint"):
        _assert_bit_identical(_run(program, "cpp", mode), _run(program, "cpp", mode), f"{case} {mode}")


@needs_cpp
def test_whole_run_backward_with_more_threads(deterministic):
    """4 threads (more than the two cores here: OpenMP still runs 4): the whole-run backward's field gradients are
    summed in sample order, and agree with the one-thread run to rounding."""
    program = _program(seed=1)
    torch.set_num_threads(4)
    runs = [_run(program, "cpp", "checkpoint") for _ in range(3)]
    for other in runs[1:]:
        _assert_bit_identical(runs[0], other, "cpp checkpoint, 4 threads")
    torch.set_num_threads(1)
    single = _run(program, "cpp", "checkpoint")
    for x, y in zip(runs[0], single):  # fp32 sums in another order: equal to rounding
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * max(1.0, float(y.abs().max())))


# ---------------------------------------------------------------------------------------------------------------
# GPU: the kernels that add with atomics.


_ATOMIC_CALL = re.compile(r"\batomicAdd\s*\(|\btl\.atomic_\w+\s*\(")


def _sources_with_atomics() -> set[str]:
    files = [*ROOT.glob("csrc/cuda/*.cu"), *ROOT.glob("csrc/cuda/*.cuh"), *ROOT.glob("ncl_kernels/**/*.py")]
    found = set()
    for path in files:
        code = "\n".join(line.split("//")[0].split("#")[0] for line in path.read_text().splitlines())
        if _ATOMIC_CALL.search(code):
            found.add(str(path.relative_to(ROOT)))
    return found


def test_nondeterministic_list_names_every_atomic():
    """Every source file that calls ``atomicAdd`` or ``tl.atomic_*`` is named in ``dispatch.NONDETERMINISTIC``."""
    named = " ".join(dispatch.NONDETERMINISTIC.values())
    found = _sources_with_atomics()
    assert found, "no atomics found: the scan is broken"
    missing = sorted(f for f in found if f not in named)
    assert not missing, f"files with atomics missing from ncl_kernels.dispatch.NONDETERMINISTIC: {missing}"
    # The whole-run Triton kernel has no atomic of its own: it calls the ALU's atomic tile.
    assert "alu_general_tile" in (ROOT / "ncl_kernels/machine/triton.py").read_text()


def test_check_deterministic(deterministic):
    cuda = torch.device("cuda")
    for (op, backend, part) in dispatch.NONDETERMINISTIC:
        with pytest.raises(RuntimeError, match=rf"{op} \({part}\) on the {backend} backend .*deterministic"):
            dispatch.check_deterministic(op, backend, cuda, part)
        dispatch.check_deterministic(op, backend, torch.device("cpu"), part)  # Triton's interpreter runs in order
    dispatch.check_deterministic("control", "cuda", cuda, "bwd")  # no atomics
    dispatch.check_deterministic("alu_mix", "cuda", cuda, "bwd")
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="alu_mix"):
        dispatch.check_deterministic("alu_mix", "triton", cuda)
    torch.use_deterministic_algorithms(False)
    dispatch.check_deterministic("alu_mix", "triton", cuda)


@pytest.mark.skipif(dispatch.unavailable_reason("triton") is not None or torch.cuda.is_available(),
                    reason="needs Triton under TRITON_INTERPRET=1 (the device check is monkeypatched)")
@pytest.mark.parametrize("whole_run", ["1", "0"])
def test_gpu_runs_refused_under_deterministic_mode(deterministic, monkeypatch, whole_run):
    """With the device check pretending the CPU is a GPU, a Triton run stops before its first kernel: at the
    whole-run kernel, or (``NCL_WHOLE_RUN=0``) at the step's ALU."""
    monkeypatch.setattr(dispatch, "_alerts_on", lambda device: True)
    monkeypatch.setenv("NCL_WHOLE_RUN", whole_run)
    regs, mem = _inputs(batch=2)
    with pytest.raises(RuntimeError, match="machine_run" if whole_run == "1" else "alu_mix"):
        _program().run(regs, mem, max_steps=4, backend="triton")
    torch.use_deterministic_algorithms(False)
    monkeypatch.setenv("NCL_WHOLE_RUN", "1")
    with torch.no_grad():  # without deterministic mode it runs
        _program().run(regs[:1], mem[:1], max_steps=1, backend="triton")


def test_ops_called_directly_are_checked(deterministic, monkeypatch):
    """Every fused op checks its own kernels, not only the machine's step: with soft_read's cpp kernels listed as
    atomic and the device check pretending the CPU is a GPU, the forward refuses, and a backward listed alone
    refuses when it runs."""
    monkeypatch.setattr(dispatch, "_alerts_on", lambda device: True)
    bank = torch.randn(2, 3, 4, requires_grad=True)
    weights = torch.softmax(torch.randn(2, 1, 3), -1)
    monkeypatch.setitem(dispatch.NONDETERMINISTIC, ("soft_read", "cpp", "fwd"), "a test entry")
    with pytest.raises(RuntimeError, match=r"soft_read \(fwd\) on the cpp backend"):
        ncl_kernels.soft_read(bank, weights, backend="cpp")
    monkeypatch.delitem(dispatch.NONDETERMINISTIC, ("soft_read", "cpp", "fwd"))
    monkeypatch.setitem(dispatch.NONDETERMINISTIC, ("soft_read", "cpp", "bwd"), "a test entry")
    out = ncl_kernels.soft_read(bank, weights, backend="cpp")
    with pytest.raises(RuntimeError, match=r"soft_read \(bwd\) on the cpp backend"):
        out.sum().backward()
