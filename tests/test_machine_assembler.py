"""Assembler and disassembler: syntax, round trips, and errors with line numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.machine.assembler import parse
from ncl.machine.instructions import OPERANDS, Instruction, format_assembly
from ncl_kernels.isa import OP, OPCODES
from _machine_support import SMALL, programs

CFG = ncl.MachineConfig(n=16, cells=8, registers=4, stack=4)


def test_every_form_parses_to_the_right_fields():
    text = """
    start:  CONST r1, 5        ; comment
            mov r0, R1
            ADD r0, r1, r2
            INC r1, r1
            LOAD r3, [r1]
            STORE [ r1 ], r2
            PUSH r1
            POP r2
    a: b:   JMP start
            JZ r1, a
            JNZ r2, b
            CALL end
            RET
            NOP
    end:    HALT
    """
    code, labels = parse(text, CFG)
    assert labels == {"start": 0, "a": 8, "b": 8, "end": 14}
    assert code == [
        Instruction(OP["CONST"], d=1, imm=5), Instruction(OP["MOV"], d=0, a=1),
        Instruction(OP["ADD"], d=0, a=1, b=2), Instruction(OP["INC"], d=1, a=1),
        Instruction(OP["LOAD"], d=3, a=1), Instruction(OP["STORE"], a=1, b=2),
        Instruction(OP["PUSH"], a=1), Instruction(OP["POP"], d=2),
        Instruction(OP["JMP"], tgt=0), Instruction(OP["JZ"], a=1, tgt=8), Instruction(OP["JNZ"], a=2, tgt=8),
        Instruction(OP["CALL"], tgt=14), Instruction(OP["RET"]), Instruction(OP["NOP"]), Instruction(OP["HALT"]),
    ]


def test_assemble_sets_sharp_logits():
    program = ncl.assemble("CONST r2, 7\nJMP x\nx: HALT", CFG)
    assert program.length == 3
    beta = CFG.sharpness
    assert program.imm_logits[0, 7] == beta and program.imm_logits[0].sum() == beta
    assert program.tgt_logits[1, 2] == beta
    fields = program.fields()
    assert float(fields.op[0, OP["CONST"]].detach()) > 1 - 1e-11
    assert isinstance(program, torch.nn.Module) and len(list(program.parameters())) == 6


@settings(max_examples=60, deadline=None)
@given(code=programs(SMALL, max_lines=12), names=st.booleans())
def test_round_trip(code, names):
    # Text carries only the fields an op uses; the others are 0 after assembly.
    used = lambda ins: {f.strip("[]") for f in OPERANDS[OPCODES[ins.op]]}  # noqa: E731
    code = [Instruction(ins.op, **{f: getattr(ins, f) for f in used(ins)}) for ins in code]
    labels = {"entry": 0, "L0": len(code) - 1} if names else {}
    text = format_assembly(code, labels)
    again, again_labels = parse(text, SMALL)
    assert again == code
    assert all(again_labels[k] == v for k, v in labels.items())
    program = ncl.Program.from_instructions(code, SMALL, labels)
    rebuilt = ncl.assemble(program.disassemble(), SMALL)
    assert rebuilt.disassemble() == program.disassemble()
    for (name, p), (_, q) in zip(program.named_parameters(), rebuilt.named_parameters()):
        assert torch.equal(p, q), name


def test_disassembly_keeps_names_and_reads_well():
    text = "loop: DEC r1, r1\n      JNZ r1, loop\n      HALT\n"
    assert ncl.assemble(text, CFG).disassemble() == "loop:\n    DEC r1, r1\n    JNZ r1, loop\n    HALT\n"


@pytest.mark.parametrize("text, line, fragment", [
    ("NOP\nFOO r1, r2", 2, "unknown instruction"),
    ("ADD r0, r1", 1, "takes 3 operand"),
    ("HALT r0", 1, "takes 0 operand"),
    ("NOP\n\nMOV r0, r9", 3, "does not exist"),
    ("MOV r0, x1", 1, "expected a register"),
    ("CONST r0, 16", 1, "outside 0..15"),
    ("CONST r0, -1", 1, "outside 0..15"),
    ("CONST r0, five", 1, "integer immediate"),
    ("JMP nowhere", 1, "undefined label"),
    ("x: NOP\nx: HALT", 2, "defined twice"),
    ("NOP\nend:", 2, "after the last instruction"),
    ("LOAD r0, r1", 1, "address like [r1]"),
    ("STORE r1, r2", 1, "address like [r1]"),
    ("JZ r1, 3", 1, "expects a label"),
    ("ADD r0, r1,", 1, "expected a register"),
    ("; only a comment\n", 1, "no instructions"),
])
def test_malformed_lines_raise_with_their_line_number(text, line, fragment):
    with pytest.raises(ncl.AssemblyError) as info:
        ncl.assemble(text, CFG)
    assert info.value.line == line
    assert fragment in str(info.value) and str(info.value).startswith(f"line {line}:")
    assert isinstance(info.value, ValueError)
