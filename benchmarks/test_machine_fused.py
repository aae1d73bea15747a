"""The fused machine run against the eager reference and ``torch.compile`` of the reference step.

Sizes of the issue: n=128, C=128, K=8, S=32, the loop program of :mod:`ncl.machine.bench`, B=32, 64 steps,
forward and forward+backward, plus a sweep over B in (1, 8, 32) and steps in (16, 64) for fused and eager,
which shows where fusion starts to pay. ``impl`` in ``extra_info`` is ``fused:<backend>``, ``eager`` or
``compiled`` (``torch.compile`` of one reference step, the Python loop around it; see ``ncl/machine/bench.py``).
Each case runs ``benchmark.pedantic(rounds=3)`` after one warm-up call (which also compiles). On a GPU everything
runs there (fused: the Triton whole-run kernel). ``conftest.py`` writes the sweep's fused/eager ratios with the
other groups' and plots them (``machine_sweep_<device>.png`` beside the JSON).
"""

from __future__ import annotations

import functools

import pytest
import torch

from ncl.machine import bench, bench_eager
from ncl.machine.assembler import assemble
from ncl_kernels.machine import MachineConfig, step
from ncl.machine.run import machine_run
from ncl_kernels.isa import one_hot
from ncl_kernels import dispatch

from conftest import DEVICE

FUSED = dispatch.select(torch.device(DEVICE), torch.float32)
CONFIG = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
PROGRAM = assemble(bench.LOOP, CONFIG).to(DEVICE)


@functools.lru_cache(maxsize=None)
def _compiled_step():
    return torch.compile(functools.partial(step, backend="reference"), dynamic=False)


def _runner(impl: str, batch: int, steps: int, mode: str):
    regs, mem = bench.machine_inputs(batch, steps, device=DEVICE)
    ip = one_hot(torch.zeros(batch, dtype=torch.long), PROGRAM.length, device=DEVICE)

    def once():
        if impl == "compiled":
            compiled = _compiled_step()
            with bench._tables_outside_the_graph():
                return machine_run(PROGRAM.fields(), CONFIG, ip, regs, mem, steps, grad_mode="full",
                                   backend="reference", step_fn=lambda s, f, c, backend: compiled(s, f, c))
        if impl == "eager":
            return PROGRAM.run(regs, mem, max_steps=steps, backend="reference", grad_mode="full")
        return PROGRAM.run(regs, mem, max_steps=steps, backend=FUSED)

    def run():
        if mode == "fwd":
            with torch.no_grad():
                out = once()
        else:
            PROGRAM.zero_grad(set_to_none=True)
            out = once()
            bench_eager.loss(out).backward()
        assert out.steps == steps
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def _bench(benchmark, impl: str, batch: int, steps: int, mode: str, group: str):
    run = _runner(impl, batch, steps, mode)
    run()  # warm-up (and compilation)
    benchmark.group = group
    benchmark.extra_info.update(op="machine_run", mode=mode, impl=impl if impl != "fused" else f"fused:{FUSED}",
                                device=DEVICE, size=[batch, bench.N, bench.CELLS, bench.REGISTERS, bench.STACK, steps])
    benchmark.pedantic(run, rounds=3, warmup_rounds=0)


@pytest.mark.parametrize("impl", ["fused", "eager", "compiled"])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_machine_fused(benchmark, impl, mode):
    _bench(benchmark, impl, 32, 64, mode, f"machine fused vs eager vs compiled B=32 steps=64 {mode}")


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("steps", [16, 64])
@pytest.mark.parametrize("batch", [1, 8, 32])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_machine_sweep(benchmark, impl, batch, steps, mode):
    _bench(benchmark, impl, batch, steps, mode, f"machine sweep B={batch} steps={steps} {mode}")
