"""The CPU kernels flush subnormal numbers to zero while they run (csrc/cpu/isa.h, ``FlushSubnormals``), and
give torch its floating-point mode back afterwards. ``NCL_CPU_SUBNORMALS=keep`` turns the flush off."""

import platform

import pytest
import torch

import ncl
from ncl.machine import bench
from ncl_kernels import _ext
from ncl_kernels.memory import soft_write
from ncl_kernels.testing import assert_close

pytestmark = [pytest.mark.skipif(_ext.load()[0] is None, reason="the C++ extension is not built"),
              pytest.mark.skipif(platform.machine() != "x86_64", reason="the flush sets x86's MXCSR only")]

SUBNORMAL = 1e-39  # under float32's smallest normal number, 1.18e-38


def _subnormal_write(batch: int) -> torch.Tensor:
    """cpp soft_writes of the value 1 with a subnormal weight into empty banks: 0 + 1e-39 x (1 - 0), ``(batch,)``.
    The kernel splits the batch over torch's threads, so with several threads the worker threads run it too."""
    bank = torch.zeros(batch, 1, 1)
    weights = torch.full((batch, 1), SUBNORMAL)
    return soft_write(bank, weights, torch.ones(batch, 1), torch.ones(batch), backend="cpp").flatten()


@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_flush_subnormals_and_give_torch_its_mode_back(threads, monkeypatch):
    """The calling thread runs a share of every kernel (all of it with one thread), so its mode must come back;
    with two threads a worker runs the other half, and must flush too."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert _subnormal_write(2 * threads).tolist() == [0.0] * (2 * threads)
        assert float(torch.tensor([SUBNORMAL]) * 1.0) > 0.0  # torch's own arithmetic still keeps subnormals
        monkeypatch.setenv("NCL_CPU_SUBNORMALS", "keep")
        assert _subnormal_write(2 * threads).tolist() == pytest.approx([SUBNORMAL] * (2 * threads), rel=1e-3)
    finally:
        torch.set_num_threads(before)


def test_a_sharp_run_is_the_same_with_and_without_the_flush(monkeypatch):
    """The benchmark's sharp loop (beta = 30, whose leaks reach the subnormal range), checkpointed: values and
    gradients with the flush match those with subnormals kept."""
    config = ncl.MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    program = ncl.assemble(bench.LOOP, config)
    regs, mem = bench.machine_inputs(3, 24, seed=5)
    runs = {}
    for mode in ("flush", "keep"):
        if mode == "keep":
            monkeypatch.setenv("NCL_CPU_SUBNORMALS", "keep")
        program.zero_grad(set_to_none=True)
        r, m = regs.clone().requires_grad_(), mem.clone().requires_grad_()
        out = program.run(r, m, max_steps=24, backend="cpp", grad_mode="checkpoint", chunk=8)
        w = torch.linspace(0.5, 1.5, config.n)
        ((out.regs * w).sum() + (out.mem * w).sum() + out.expected_steps.sum()).backward()
        runs[mode] = [out.regs.detach(), out.mem.detach(), r.grad.clone(), m.grad.clone()] + [
            p.grad.clone() for p in program.parameters()]
    assert float(runs["keep"][2].abs().max()) > 0
    for i, (a, b) in enumerate(zip(runs["flush"], runs["keep"])):
        assert_close(a, b, torch.float32, f"flush against keep: tensor {i}")
