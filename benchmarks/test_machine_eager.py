"""The fused machine run against the best eager PyTorch (``ncl_kernels.machine.eager``) and ``torch.compile`` of
its step, on sharp and on soft inputs.

Sizes of the issue: n=128, C=128, K=8, S=32, the loop program of :mod:`ncl.machine.bench`, B=32, 64 steps,
forward and forward+backward. Sharp: the assembled program on one-hot registers and memory; soft: the program's
logits at β = :data:`ncl.machine.bench_eager.SOFT_SHARPNESS` on dense registers and memory (what each means for
the kernels: :mod:`ncl.machine.bench_eager`). In each group ``impl`` is ``fused:<backend>`` (``Program.run``,
checkpointed backward), ``eager`` (the best eager run, full BPTT; *not* the reference, which
``benchmarks/test_machine_fused.py`` times) or ``compiled`` (``torch.compile`` of the best-eager step in its
loop), so ``conftest.py``'s ratio table reads as fused against best eager. Each case runs
``benchmark.pedantic(rounds=3)`` after one warm-up call (which also compiles).
"""

from __future__ import annotations

import functools

import pytest
import torch

from ncl.machine import bench, bench_eager
from ncl.machine.run import finish
from ncl_kernels import dispatch
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import MachineConfig, eager

from conftest import DEVICE

FUSED = dispatch.select(torch.device(DEVICE), torch.float32)
CONFIG = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
B, STEPS = 32, 64


@functools.lru_cache(maxsize=None)
def _compiled_step():
    return torch.compile(eager.step_packed, dynamic=False)


def _case(inputs: str):
    sharp = bench.machine_inputs(B, STEPS, device=DEVICE)
    return bench_eager.case_for(inputs, bench.LOOP, CONFIG, sharp, B, device=DEVICE)[:3]


def _runner(impl: str, inputs: str, mode: str):
    program, regs, mem = _case(inputs)
    ip = one_hot(torch.zeros(B, dtype=torch.long), program.length, device=DEVICE)

    def once():
        if impl == "fused":
            return program.run(regs, mem, max_steps=STEPS, backend=FUSED)
        step_fn = _compiled_step() if impl == "compiled" else None
        carry, done = eager.run(program.fields(), program.config, ip, regs, mem, STEPS, step_fn=step_fn)
        return finish(carry, done)

    def run():
        program.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(mode == "fwdbwd"):
            out = once()
            if mode == "fwdbwd":
                bench_eager.loss(out).backward()
        assert out.steps == STEPS
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("impl", ["fused", "eager", "compiled"])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("inputs", bench_eager.INPUTS)
def test_machine_best_eager(benchmark, inputs, mode, impl):
    run = _runner(impl, inputs, mode)
    run()  # warm-up (and compilation)
    benchmark.group = f"machine fused vs best eager, {inputs} inputs, B={B} steps={STEPS} {mode}"
    benchmark.extra_info.update(op="machine_run", mode=mode, impl=impl if impl != "fused" else f"fused:{FUSED}",
                                inputs=inputs, device=DEVICE,
                                size=[B, bench.N, bench.CELLS, bench.REGISTERS, bench.STACK, STEPS])
    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
