"""Gradients: float64 gradcheck of one step, and finite, non-zero gradients through 100+ steps."""

from __future__ import annotations

import pytest
import torch

import ncl
from ncl_kernels.machine import MachineState, ProgramFields, step


@pytest.mark.slow
@pytest.mark.parametrize("alu", ["table", "circuit"])
def test_gradcheck_one_step(alu):
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=3, alu=alu)
    batch, lines = 2, 4
    g = torch.Generator().manual_seed(0)

    def dist(*shape):
        return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), -1).requires_grad_()

    state = [dist(batch, lines), dist(batch, config.registers, config.n), dist(batch, config.cells, config.n),
             dist(batch, config.stack, config.n), dist(batch, config.stack),
             (0.5 * dist(batch, config.stack, lines)).detach().requires_grad_(), dist(batch, config.stack)]
    sizes = (29, config.registers, config.registers, config.registers, config.n, lines)
    logits = [torch.randn(lines, k, generator=g, dtype=torch.float64, requires_grad=True) for k in sizes]

    def one_step(*tensors):
        s = MachineState(*tensors[:7])
        fields = ProgramFields(*(torch.softmax(t, -1) for t in tensors[7:]))
        new, outcome = step(s, fields, config)
        return (*new, outcome.halted, outcome.faults)

    assert torch.autograd.gradcheck(one_step, (*state, *logits), eps=1e-6, atol=1e-5, rtol=1e-4,
                                    fast_mode=True)


def test_gradients_through_a_long_run_are_finite_and_reach_everything():
    config = ncl.MachineConfig(n=16, cells=4, registers=4, stack=4)
    source = """
    ; r0 = sum over a countdown of r1, with a round trip through the stack and memory each pass
            CONST r0, 0
    loop:   JZ r1, done
            PUSH r1
            STORE [r2], r1
            LOAD r3, [r2]
            POP r1
            ADD r0, r0, r3
            DEC r1, r1
            JMP loop
    done:   HALT
    """
    program = ncl.assemble(source, config).double()
    regs = torch.nn.functional.one_hot(torch.tensor([[0, 13, 1, 0], [0, 12, 2, 0]]), 16).double()
    mem = torch.nn.functional.one_hot(torch.zeros(2, 4, dtype=torch.long), 16).double()
    # Slightly soft inputs, so that the gradient to them is not a degenerate one-hot derivative.
    regs = (0.999 * regs + 0.001 / 16).requires_grad_()
    mem = mem.requires_grad_()
    out = program.run(regs, mem, max_steps=400)
    assert out.steps > 100
    assert out.r0[0].argmax().item() == sum(range(14)) % 16 and out.r0[1].argmax().item() == sum(range(13)) % 16
    loss = -(out.r0[0, sum(range(14)) % 16].log() + out.r0[1, sum(range(13)) % 16].log()) + out.expected_steps.sum()
    loss.backward()
    grads = {name: p.grad for name, p in program.named_parameters()}
    grads.update(regs=regs.grad, mem=mem.grad)
    for name, grad in grads.items():
        assert grad is not None and bool(torch.isfinite(grad).all()), name
    for name in ("op_logits", "a_logits", "d_logits", "tgt_logits", "regs"):
        assert float(grads[name].abs().max()) > 0, name


def test_gradients_reach_the_start_distribution():
    program = ncl.assemble("CONST r0, 3\nHALT\nCONST r0, 5\nHALT", ncl.MachineConfig(n=8, cells=2, registers=2,
                                                                                   stack=2))
    ip = torch.tensor([[0.3, 0.0, 0.7, 0.0]], requires_grad=True)
    regs = torch.nn.functional.one_hot(torch.zeros(1, 2, dtype=torch.long), 8).float()
    mem = torch.nn.functional.one_hot(torch.zeros(1, 2, dtype=torch.long), 8).float()
    out = program.run(regs, mem, ip=ip)
    assert abs(float(out.r0[0, 3]) - 0.3) < 1e-5 and abs(float(out.r0[0, 5]) - 0.7) < 1e-5
    out.r0[0, 5].backward()
    assert float(ip.grad[0, 2]) > float(ip.grad[0, 0])
