"""Invariants of the soft machine on soft programs and soft inputs: rows stay distributions, and the ip mass
plus the halted mass is 1 at every step."""

from __future__ import annotations

import torch

import ncl
from ncl_kernels.machine import initial_state, step

CFG = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)


def _soft_program(config, lines, seed, scale=2.0):
    torch.manual_seed(seed)
    program = ncl.Program(config, lines).double()
    with torch.no_grad():
        for p in program.parameters():
            p.normal_(0, scale)
    return program


def _soft_inputs(config, batch, lines, seed):
    g = torch.Generator().manual_seed(seed)
    def dist(*shape):
        return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), -1)
    return dist(batch, lines), dist(batch, config.registers, config.n), dist(batch, config.cells, config.n)


def test_rows_stay_distributions_and_mass_is_conserved():
    for alu, seed in (("table", 0), ("circuit", 1)):
        config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4, alu=alu)
        program = _soft_program(config, 6, seed)
        ip, reg, mem = _soft_inputs(config, 3, 6, seed)
        state = initial_state(ip, reg, mem, config.stack)
        fields = program.fields()
        halted = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            for t in range(40):
                state, outcome = step(state, fields, config)
                halted += outcome.halted
                assert bool((outcome.halted >= -1e-15).all()) and bool((outcome.faults >= -1e-15).all())
                torch.testing.assert_close(state.ip.sum(-1) + halted, torch.ones(3, dtype=torch.float64),
                                           rtol=0, atol=1e-12)
                for name in ("reg", "mem", "dstk", "dsp", "rsp"):
                    rows = getattr(state, name)
                    assert bool((rows >= -1e-15).all()), name
                    torch.testing.assert_close(rows.sum(-1), torch.ones_like(rows.sum(-1)), rtol=0, atol=1e-12)
                # Return slots hold sub-distributions over lines (a slot may have no line at all).
                assert bool((state.rstk >= -1e-15).all()) and bool((state.rstk.sum(-1) <= 1 + 1e-12).all())
        assert float(halted.min()) > 0  # the random programs do halt some mass


def test_run_result_is_a_halting_mixture():
    program = _soft_program(CFG, 5, 3)
    ip, reg, mem = _soft_inputs(CFG, 4, 5, 3)
    out = program.run(reg, mem, ip=ip, max_steps=30)
    one = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(out.regs.sum(-1), torch.ones(4, CFG.registers, dtype=torch.float64))
    torch.testing.assert_close(out.mem.sum(-1), torch.ones(4, CFG.cells, dtype=torch.float64))
    torch.testing.assert_close(out.r0, out.regs[:, 0])
    assert bool((out.unhalted >= 0).all()) and bool((out.unhalted <= one).all())
    assert bool((out.expected_steps >= 1).all()) and bool((out.expected_steps <= out.steps).all())
    assert out.steps == 30 or float(out.unhalted.detach().max()) < CFG.halt_eps


def test_fp32_run_matches_fp64():
    program = _soft_program(CFG, 5, 4)
    ip, reg, mem = _soft_inputs(CFG, 2, 5, 4)
    ref = program.run(reg, mem, ip=ip, max_steps=12)
    got = program.float().run(reg.float(), mem.float(), ip=ip.float(), max_steps=12)
    assert got.regs.dtype == torch.float32 and got.steps == ref.steps
    for name in ("regs", "mem", "unhalted", "expected_steps", "overflow"):
        torch.testing.assert_close(getattr(got, name).double(), getattr(ref, name), rtol=1e-4, atol=1e-5)
