"""Hard-limit equivalence: a sharp program on one-hot inputs runs exactly like the discrete VM, step by step
(ip, registers, memory, both stacks, faults and the halting step)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncl
from ncl.machine import vm
from ncl_kernels.isa import BINARY_FUNCS, BINARY_OPS, UNARY_FUNCS, UNARY_OPS
from ncl.machine.examples import FACTORIAL_RECURSIVE, FIB_RECURSIVE, LOOP_SUM
from _machine_support import SMALL, SMALL_CIRCUIT, int_lists, lockstep, programs

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@pytest.mark.parametrize("config", [SMALL, SMALL_CIRCUIT], ids=["table", "circuit"])
@_SETTINGS
@given(data=st.data())
def test_random_programs_match_vm(config, data):
    code = data.draw(programs(config))
    regs = data.draw(st.lists(int_lists(config, config.registers), min_size=2, max_size=2))
    mems = data.draw(st.lists(int_lists(config, config.cells), min_size=2, max_size=2))
    program = ncl.Program.from_instructions(code, config)
    lockstep(program, regs, mems, steps=30)


# Hand-written programs: (source, args per sample, memory per sample).
REVERSE_TAPE = """
; reverse mem[0 .. r1-1] in place; r2 = left index, r3 = right index
        CONST r2, 0
        DEC r3, r1
loop:   LT r0, r2, r3
        JZ r0, done
        LOAD r0, [r2]
        PUSH r0
        LOAD r0, [r3]
        STORE [r2], r0
        POP r0
        STORE [r3], r0
        INC r2, r2
        DEC r3, r3
        JMP loop
done:   HALT
"""
INSERTION_SORT = """
; sort mem[0 .. r1-1] ascending: r2 = i, r3 = j, r6 = j-1, r4 = mem[j-1], r5 = mem[j], r7 = a flag
        CONST r2, 1
outer:  LT r7, r2, r1
        JZ r7, done
        MOV r3, r2
inner:  JZ r3, next
        DEC r6, r3
        LOAD r4, [r6]
        LOAD r5, [r3]
        LE r7, r4, r5
        JNZ r7, next
        STORE [r6], r5
        STORE [r3], r4
        MOV r3, r6
        JMP inner
next:   INC r2, r2
        JMP outer
done:   HALT
"""


CASES = {
    "loop_sum": (LOOP_SUM, {"n": 32}, [[0, 5], [0, 0], [0, 31]], None, lambda r, m: sum(range(r[1] + 1)) % 32),
    "factorial": (FACTORIAL_RECURSIVE, {"n": 64, "stack": 16}, [[0, 5], [0, 0], [0, 1]], None,
                  lambda r, m: [1, 1, 2, 6, 24, 120][r[1]] % 64),
    # fib(4) is 91 steps; deeper recursion leaves the exact horizon (docs/machine.md, "Hard-limit horizon").
    "fib": (FIB_RECURSIVE, {"n": 64, "stack": 16}, [[0, 4], [0, 1], [0, 0]], None,
            lambda r, m: [0, 1, 1, 2, 3, 5, 8, 13][r[1]]),
    "reverse": (REVERSE_TAPE, {"n": 16, "cells": 8}, [[0, 6], [0, 1]],
                [[3, 1, 4, 1, 5, 9, 2, 6], [7, 0, 0, 0, 0, 0, 0, 0]], None),
    "insertion_sort": (INSERTION_SORT, {"n": 16, "cells": 8, "registers": 8}, [[0, 6], [0, 5]],
                       [[5, 3, 9, 1, 7, 2, 0, 0], [4, 4, 1, 15, 0, 8, 8, 8]], None),
}


@pytest.mark.parametrize("alu", ["table", "circuit"])
@pytest.mark.parametrize("name", list(CASES))
def test_hand_written_programs_match_vm(name, alu):
    source, sizes, regs, mems, expect = CASES[name]
    config = ncl.MachineConfig(**{"n": 16, "cells": 8, "registers": 4, "stack": 8, **sizes, "alu": alu})
    program = ncl.assemble(source, config)
    mems = mems or [[0] * config.cells for _ in regs]
    regs = [r + [0] * (config.registers - len(r)) for r in regs]
    final = lockstep(program, regs, mems, steps=600)
    assert all(m.halted for m in final)
    for r, m, state in zip(regs, mems, final):
        if expect is not None:
            assert state.regs[0] == expect(r, m)
        elif name == "reverse":
            k = r[1]
            assert state.mem[:k] == m[:k][::-1] and state.mem[k:] == m[k:]
        else:
            k = r[1]
            assert state.mem[:k] == sorted(m[:k]) and state.mem[k:] == m[k:]


EDGE = (0, 1, 2, 14, 15)  # 0, 1, n-2, n-1 at n=16, and a small non-edge value


@pytest.mark.parametrize("alu", ["table", "circuit"])
def test_every_alu_op_on_edge_values(alu):
    """Every binary and unary op, on every pair of edge values (division by zero included), batched as one
    soft run per op, against the integer semantics and the VM."""
    config = ncl.MachineConfig(n=16, cells=4, registers=3, stack=2, alu=alu)
    pairs = [(a, b) for a in EDGE for b in EDGE]
    for op in BINARY_OPS + UNARY_OPS:
        text = f"{op} r0, r1, r2\nHALT" if op in BINARY_OPS else f"{op} r0, r1\nHALT"
        program = ncl.assemble(text, config)
        regs = torch.nn.functional.one_hot(torch.tensor([[0, a, b] for a, b in pairs]), 16).float()
        mem = torch.nn.functional.one_hot(torch.zeros(len(pairs), 4, dtype=torch.long), 16).float()
        out = program.run(regs, mem)
        assert out.steps == 2
        for (a, b), row in zip(pairs, out.r0):
            want = BINARY_FUNCS[op](a, b, 16) if op in BINARY_OPS else UNARY_FUNCS[op](a, 16)
            assert float(row[want].detach()) > 1 - 1e-4, f"{op}({a}, {b}) = {want}, soft gave {row.argmax().item()}"
            assert program.execute(a, b, engine="vm").value == want


def test_memory_and_stack_ops_on_edge_values():
    config = ncl.MachineConfig(n=16, cells=4, registers=4, stack=3)
    source = """
        CONST r3, 15
        STORE [r1], r3      ; address 15 folds to cell 3 when r1 = 15
        LOAD r2, [r1]
        PUSH r2
        PUSH r1
        PUSH r3             ; a third push overflows a stack with 2 item slots
        POP r0
        POP r0              ; the stack is empty now
        POP r0
        POP r3              ; an underflow reads the value 0
        HALT
    """
    program = ncl.assemble(source, config)
    regs = [[0, a, 0, 0] for a in (0, 3, 15)]
    final = lockstep(program, regs, [[0] * 4] * 3, steps=20)
    for (_, a, _, _), state in zip(regs, final):
        assert state.mem[a % 4] == 15 and state.regs[2] == 15 and state.regs[3] == 0
        # two item slots: the third push overwrote the top, so both pops give 15, the third pop and
        # the fourth read the empty stack's 0: one overflow and two underflows
        assert state.regs[0] == 0 and state.faults == 3


def test_return_stack_limits():
    """CALL onto a full return stack overwrites the top address; RET with nothing to return to halts."""
    config = ncl.MachineConfig(n=16, cells=2, registers=2, stack=3)
    deep = """
        CALL a
        CONST r1, 9
        HALT
a:      CALL b
        INC r0, r0
        RET
b:      CALL c           ; third nested call: the return stack (2 slots) is full
        INC r0, r0
        RET
c:      RET
    """
    final = lockstep(ncl.assemble(deep, config), [[0, 0]], [[0, 0]], steps=30)
    assert final[0].halted and final[0].faults == 1
    top_level_ret = "INC r0, r0\nRET\nCONST r0, 7"
    final = lockstep(ncl.assemble(top_level_ret, config), [[3, 0]], [[0, 0]], steps=5)
    assert final[0].halted and final[0].halt_step == 2 and final[0].regs[0] == 4
    call_on_last_line = "JMP go\nf: RET\ngo: CALL f"
    final = lockstep(ncl.assemble(call_on_last_line, config), [[0, 0]], [[0, 0]], steps=5)
    assert final[0].halt_step == 3


def test_run_readouts_equal_vm_final_state():
    """Program.run's halting mixtures and step counts agree with the VM for samples halting at different
    steps (adaptive depth: steps is the last halting step, not max_steps)."""
    config = ncl.MachineConfig(n=32, cells=8, registers=4, stack=8)
    program = ncl.assemble(LOOP_SUM + "", config)
    args = [0, 3, 7, 12]
    regs = torch.nn.functional.one_hot(torch.tensor([[0, a, 0, 0] for a in args]), 32).float()
    mem = torch.nn.functional.one_hot(torch.zeros(4, 8, dtype=torch.long), 32).float()
    out = program.run(regs, mem, max_steps=500)
    finals = [vm.run(program, regs=[0, a]) for a in args]
    assert out.steps == max(f.steps for f in finals) < 500
    for b, f in enumerate(finals):
        assert out.r0[b].argmax().item() == f.regs[0]
        assert out.regs[b].argmax(-1).tolist() == f.regs
        assert abs(float(out.expected_steps[b].detach()) - f.steps) < 1e-3
        assert float(out.unhalted[b]) < 1e-6
        soft = program.execute(args[b], engine="soft", max_steps=500)
        assert soft.value == f.regs[0] and soft.steps == f.steps and soft.halted > 1 - 1e-6


def test_non_halting_program_runs_max_steps():
    program = ncl.assemble("top: INC r0, r0\nJMP top", ncl.MachineConfig(n=16, cells=2, registers=2, stack=2))
    soft = program.execute(engine="soft", max_steps=25)
    hard = program.execute(engine="vm", max_steps=25)
    assert soft.steps == hard.steps == 25
    assert hard.halted == 0.0 and soft.halted < 1e-6
    assert soft.value == hard.value == 13  # 13 INCs in 25 steps
