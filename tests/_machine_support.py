"""Shared helpers for the machine tests: random programs, and soft-vs-VM lockstep comparison."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ncl.machine import vm
from ncl_kernels.machine import MachineConfig, step
from ncl_kernels.isa import OP, OPCODES
from ncl.machine.instructions import Instruction
from ncl_kernels.machine import initial_state
from ncl_kernels.isa import one_hot

#: Small sizes that still reach every edge: values wrap, addresses fold (n > C), stacks fill up.
SMALL = MachineConfig(n=8, cells=4, registers=4, stack=4)
SMALL_CIRCUIT = MachineConfig(n=8, cells=4, registers=4, stack=4, alu="circuit")

#: How close to one-hot a soft value must be to count as the VM's integer.
SHARP = 1 - 1e-4


@st.composite
def instructions(draw, config: MachineConfig, length: int, ops=OPCODES):
    """One random instruction (every field random, so unused fields are exercised too)."""
    k = config.registers
    return Instruction(OP[draw(st.sampled_from(ops))], draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1)),
                       draw(st.integers(0, k - 1)), draw(st.integers(0, config.n - 1)),
                       draw(st.integers(0, length - 1)))


@st.composite
def programs(draw, config: MachineConfig, min_lines=1, max_lines=10):
    """Random code of one of three kinds: straight-line, with jumps (forward and backward), or anything
    (calls, returns and stack use included)."""
    length = draw(st.integers(min_lines, max_lines))
    kind = draw(st.sampled_from(["straight", "jumps", "any"]))
    if kind == "straight":
        ops = tuple(o for o in OPCODES if o not in ("JMP", "JZ", "JNZ", "CALL", "RET"))
    elif kind == "jumps":
        ops = tuple(o for o in OPCODES if o not in ("CALL", "RET"))
    else:
        ops = OPCODES
    return draw(st.lists(instructions(config, length, ops), min_size=length, max_size=length))


def int_lists(config: MachineConfig, size: int):
    return st.lists(st.integers(0, config.n - 1), min_size=size, max_size=size)


def assert_state_matches(soft, machines: list[vm.VMState], code, config: MachineConfig, where: str) -> None:
    """Every sample of the soft state equals its VM state: ip, registers, memory, both stacks."""
    lines = len(code)
    for b, m in enumerate(machines):
        tag = f"{where}, sample {b}"
        if m.halted:
            rho = float(soft.ip[b].sum())
            assert rho < 1e-6, f"{tag}: the VM halted but the soft ip keeps mass {rho}"
            continue
        # The probability the soft state gives to the VM's integer, for every component at once.
        rstk_lines = torch.tensor([line if 0 <= line < lines else 0 for line in m.rstk])
        picked = torch.cat([
            soft.ip[b, m.ip].reshape(1),
            _pick(soft.reg[b], m.regs), _pick(soft.mem[b], m.mem), _pick(soft.dstk[b], m.dstk),
            soft.dsp[b, m.dsp].reshape(1), soft.rsp[b, m.rsp].reshape(1),
        ])
        if not bool((picked > SHARP).all()):
            raise AssertionError(f"{tag}: soft state differs from the VM's\n"
                                 f"ip {soft.ip[b].argmax().item()} vs {m.ip}\n"
                                 f"regs {soft.reg[b].argmax(-1).tolist()} vs {m.regs}\n"
                                 f"mem {soft.mem[b].argmax(-1).tolist()} vs {m.mem}\n"
                                 f"dstk {soft.dstk[b].argmax(-1).tolist()} vs {m.dstk}\n"
                                 f"dsp {soft.dsp[b].argmax().item()} vs {m.dsp}, "
                                 f"rsp {soft.rsp[b].argmax().item()} vs {m.rsp}\n"
                                 f"probabilities of the VM's values: {picked.tolist()}")
        # Return slots hold a line (one-hot) or nothing (the sentinel, or the address past the last line).
        valid = torch.tensor([0 <= line < lines for line in m.rstk])
        held = soft.rstk[b][torch.arange(len(m.rstk)), rstk_lines]
        mass = soft.rstk[b].sum(-1)
        assert bool((held[valid] > SHARP).all()), f"{tag}: return slots {soft.rstk[b].argmax(-1).tolist()} vs {m.rstk}"
        assert bool((mass[~valid] < 1e-6).all()), f"{tag}: empty return slots have mass {mass.tolist()} ({m.rstk})"


def _pick(rows: torch.Tensor, ints: list[int]) -> torch.Tensor:
    return rows[torch.arange(len(ints)), torch.tensor(ints)]


def lockstep(program, regs: list[list[int]], mems: list[list[int]], steps: int,
             dtype=torch.float32) -> list[vm.VMState]:
    """Run the soft machine (batched) and one VM per sample side by side for ``steps`` steps, comparing
    the whole state after every step and the halting mass at each VM's halting step.

    Returns:
        the final VM states.
    """
    config = program.config
    code = program.instructions()
    machines = [vm.initial_state(config, r, m) for r, m in zip(regs, mems)]
    batch = len(machines)
    ip = one_hot([0] * batch, len(code), dtype)
    soft = initial_state(ip, one_hot(regs, config.n, dtype), one_hot(mems, config.n, dtype), config.stack)
    fields = program.fields().to(dtype)
    faults = torch.zeros(batch, dtype=dtype)
    assert_state_matches(soft, machines, code, config, "start")
    with torch.no_grad():
        for t in range(1, steps + 1):
            running = [not m.halted for m in machines]
            soft, outcome = step(soft, fields, config)
            for m in machines:
                vm.step(code, m, config)
            faults += outcome.faults
            for b, m in enumerate(machines):
                h = float(outcome.halted[b])
                if running[b] and m.halted:
                    assert h > SHARP, f"step {t}, sample {b}: VM halted here, soft halting mass is {h}"
                else:
                    assert h < 1e-6, f"step {t}, sample {b}: soft halting mass {h} but the VM did not halt"
                assert abs(float(faults[b]) - m.faults) < 1e-3, \
                    f"step {t}, sample {b}: soft faults {float(faults[b])} vs VM {m.faults}"
            assert_state_matches(soft, machines, code, config, f"after step {t}")
            if all(m.halted for m in machines):
                break
    return machines
