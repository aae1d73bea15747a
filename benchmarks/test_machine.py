"""The reference machine's ``Program.run``: forward and forward+backward, B=32, n=128, C=128, K=8, S=32,
a loop-heavy program run for exactly 64 steps. This is the baseline the fused interpreter must beat.

The memory ops are forced to the pure-PyTorch reference (``NCL_BACKEND=reference``), so this times the spec,
with plain BPTT (``grad_mode="full"``). ``benchmarks/test_machine_fused.py`` times the fused path against it.
"""

from __future__ import annotations

import pytest
import torch

import ncl
from ncl.machine import bench_eager
from ncl.machine.bench import LOOP  # 7 instructions per pass; r1 >= 16 runs all 64 steps

B, N, C, K, S, STEPS = 32, 128, 128, 8, 32, 64


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    regs = torch.randint(0, N, (B, K), generator=g)
    regs[:, 1] = torch.randint(16, N, (B,), generator=g)
    mem = torch.randint(0, N, (B, C), generator=g)
    one_hot = torch.nn.functional.one_hot
    return one_hot(regs, N).to(dtype), one_hot(mem, N).to(dtype)


@pytest.mark.parametrize("alu", ["table", "circuit"])
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_machine_run(benchmark, monkeypatch, mode, alu):
    monkeypatch.setenv("NCL_BACKEND", "reference")
    program = ncl.assemble(LOOP, ncl.MachineConfig(n=N, cells=C, registers=K, stack=S, alu=alu))
    regs, mem = _inputs()

    def run():
        if mode == "fwd":
            with torch.no_grad():
                out = program.run(regs, mem, max_steps=STEPS)
        else:
            program.zero_grad(set_to_none=True)
            out = program.run(regs, mem, max_steps=STEPS, grad_mode="full")  # plain BPTT, as before
            bench_eager.loss(out).backward()
        assert out.steps == STEPS
        return out

    run()  # warm-up: builds the ALU tables
    benchmark.group = f"machine run B={B} n={N} C={C} K={K} steps={STEPS} {mode}"
    benchmark.extra_info.update(op="machine_run", mode=mode, impl=f"eager:{alu}", device="cpu",
                                size=[B, N, C, K, S, STEPS])
    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
