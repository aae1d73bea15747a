"""The public API of the machine: config, run/execute, adaptive depth, and bad input."""

from __future__ import annotations

import pytest
import torch

import ncl
from ncl.machine import vm

CFG = ncl.MachineConfig(n=16, cells=4, registers=3, stack=4)
COUNTDOWN = "top: JZ r1, end\nDEC r1, r1\nINC r0, r0\nJMP top\nend: HALT"


def _hard(batch, rows, n=16):
    return torch.nn.functional.one_hot(torch.zeros(batch, rows, dtype=torch.long), n).float()


def test_public_names():
    assert ncl.MachineConfig().n == 128 and ncl.MachineConfig().alu == "table"
    assert ncl.MachineConfig() == ncl.MachineConfig(n=128, cells=128, registers=8, stack=32, alu="table",
                                                    sharpness=30.0, halt_eps=1e-6)
    assert isinstance(ncl.assemble("HALT"), ncl.Program)
    assert issubclass(ncl.AssemblyError, ValueError)
    assert ncl.machine.vm is vm


@pytest.mark.parametrize("kwargs", [dict(n=1), dict(cells=0), dict(registers=0), dict(stack=1),
                                    dict(alu="lut"), dict(alu="circuit", n=12), dict(sharpness=0.0),
                                    dict(halt_eps=0.0), dict(n=8.0)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match="MachineConfig"):
        ncl.MachineConfig(**kwargs)


def test_adaptive_depth_steps_is_the_halting_step():
    program = ncl.assemble(COUNTDOWN, CFG)
    regs = torch.nn.functional.one_hot(torch.tensor([[0, 2, 0], [0, 5, 0]]), 16).float()
    out = program.run(regs, _hard(2, 4), max_steps=200)
    assert out.steps == vm.run(program, regs=[0, 5]).steps == 4 * 5 + 2
    assert out.r0.argmax(-1).tolist() == [2, 5]
    assert out.expected_steps.tolist() == pytest.approx([4 * 2 + 2, 4 * 5 + 2], abs=1e-4)
    assert float(out.unhalted.detach().max()) < CFG.halt_eps and float(out.overflow.detach().max()) < 1e-6
    cut = program.run(regs, _hard(2, 4), max_steps=7)
    assert cut.steps == 7 and float(cut.unhalted[1].detach()) > 1 - 1e-6
    none = program.run(regs, _hard(2, 4), max_steps=0)
    assert none.steps == 0 and torch.equal(none.regs, regs)


def test_execute_on_both_engines():
    program = ncl.assemble("ADD r0, r1, r2\nSTORE [r2], r0\nHALT", CFG)
    for engine in ("soft", "vm"):
        res = program.execute(9, 10, engine=engine)
        assert isinstance(res, ncl.ExecResult)
        assert res.value == 3 and res.regs == [3, 9, 10] and res.mem == [0, 0, 3, 0]
        assert res.steps == 3 and res.halted == pytest.approx(1.0, abs=1e-6)
    res = program.execute(1, regs=[5, 7, 2], mem=[1, 1, 1, 1], engine="vm")
    assert res.regs == [3, 1, 2] and res.mem == [1, 1, 3, 1]


def test_execute_overflow_is_reported():
    program = ncl.assemble("PUSH r1\nPUSH r1\nPUSH r1\nPUSH r1\nHALT", CFG)
    regs = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0]]), 16).float()
    out = program.run(regs, _hard(1, 4))
    assert float(out.overflow[0]) == pytest.approx(1.0, abs=1e-5)  # 3 item slots, 4 pushes
    assert vm.run(program, regs=[0, 1]).faults == 1


def test_bad_run_inputs():
    program = ncl.assemble(COUNTDOWN, CFG)
    regs, mem = _hard(2, 3), _hard(2, 4)
    with pytest.raises(ValueError, match="regs"):
        program.run(regs[:, :2], mem)
    with pytest.raises(ValueError, match="regs"):
        program.run(regs[0], mem)
    with pytest.raises(ValueError, match="mem"):
        program.run(regs, mem[:1])
    with pytest.raises(ValueError, match="mem"):
        program.run(regs, _hard(2, 4, n=8))
    with pytest.raises(ValueError, match="regs.*distributions"):
        program.run(2 * regs, mem)
    negative = regs.clone()
    negative[0, 0, 0], negative[0, 0, 1] = 1.5, -0.5  # sums to 1, but is no distribution
    with pytest.raises(ValueError, match="regs.*negative"):
        program.run(negative, mem)
    bad = mem.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="mem"):
        program.run(regs, bad)
    with pytest.raises(ValueError, match="ip"):
        program.run(regs, mem, ip=torch.full((2, program.length), 0.5))
    with pytest.raises(ValueError, match="ip"):
        program.run(regs, mem, ip=torch.ones(2, program.length + 1) / (program.length + 1))
    with pytest.raises(ValueError, match="regs"):
        program.run(regs.long(), mem)
    with pytest.raises(ValueError, match="max_steps"):
        program.run(regs, mem, max_steps=-1)


def test_bad_execute_inputs():
    program = ncl.assemble(COUNTDOWN, CFG)
    with pytest.raises(ValueError, match="args"):
        program.execute(16)
    with pytest.raises(ValueError, match="args"):
        program.execute(1, 2, 3)
    with pytest.raises(ValueError, match="regs"):
        program.execute(regs=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="mem"):
        program.execute(mem=[-1])
    with pytest.raises(ValueError, match="engine"):
        program.execute(1, engine="gpu")
    with pytest.raises(ValueError, match="length"):
        ncl.Program(CFG, 0)
    with pytest.raises(ValueError, match="config"):
        ncl.Program("table", 3)
