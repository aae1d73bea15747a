"""The instruction set: the one list of opcodes, their operand forms and their integer semantics.

Everything that needs to know the instruction set (the ALUs, the interpreter, the discrete VM, the
assembler, and the fused kernels) reads it from here, so the list exists exactly once (DESIGN §3).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

#: Every opcode, in the order of the ``op`` logits' last axis.
OPCODES: tuple[str, ...] = (
    "NOP", "HALT", "CONST", "MOV",
    "ADD", "SUB", "MUL", "DIV", "MOD", "EQ", "NE", "LT", "LE", "MIN", "MAX", "AND", "OR",
    "INC", "DEC", "NOT",
    "LOAD", "STORE", "PUSH", "POP",
    "JMP", "JZ", "JNZ", "CALL", "RET",
)
NUM_OPS = len(OPCODES)
#: Opcode name -> index into :data:`OPCODES`.
OP = {name: i for i, name in enumerate(OPCODES)}

#: Two-operand ALU ops: ``d <- a OP b``.
BINARY_OPS: tuple[str, ...] = ("ADD", "SUB", "MUL", "DIV", "MOD", "EQ", "NE", "LT", "LE",
                               "MIN", "MAX", "AND", "OR")
#: One-operand ALU ops on operand ``a``: ``d <- OP a``.
UNARY_OPS: tuple[str, ...] = ("INC", "DEC", "NOT")
#: Every op that writes register ``d``; its output is mixed into ``out`` with weight ``e_k``.
VALUE_OPS: tuple[str, ...] = ("CONST", "MOV") + BINARY_OPS + UNARY_OPS + ("LOAD", "POP")
#: Ops that change control flow or halt; every other op moves to the next line.
CONTROL_OPS: tuple[str, ...] = ("HALT", "JMP", "JZ", "JNZ", "CALL", "RET")
#: Ops whose ip mass moves to the next line unconditionally (``q_seq`` in DESIGN §3 step 7).
SEQUENTIAL_OPS: tuple[str, ...] = tuple(o for o in OPCODES if o not in CONTROL_OPS)

#: Operand forms, in assembly order (destination first). ``d``/``a``/``b`` are registers, ``[a]`` is a
#: register used as an address, ``imm`` an integer in ``0..n-1``, ``tgt`` a label.
OPERANDS: dict[str, tuple[str, ...]] = {
    "NOP": (), "HALT": (), "RET": (),
    "CONST": ("d", "imm"),
    "MOV": ("d", "a"),
    **{o: ("d", "a", "b") for o in BINARY_OPS},
    **{o: ("d", "a") for o in UNARY_OPS},
    "LOAD": ("d", "[a]"),
    "STORE": ("[a]", "b"),
    "PUSH": ("a",),
    "POP": ("d",),
    "JMP": ("tgt",), "CALL": ("tgt",),
    "JZ": ("a", "tgt"), "JNZ": ("a", "tgt"),
}
assert set(OPERANDS) == set(OPCODES)


class Instruction(NamedTuple):
    """One decoded line: every field as an integer index (unused fields are 0)."""

    op: int
    a: int = 0
    b: int = 0
    d: int = 0
    imm: int = 0
    tgt: int = 0


def _div(a: int, b: int, n: int) -> int:
    return a // b if b else 0  # division by zero gives 0 (DESIGN §3)


def _mod(a: int, b: int, n: int) -> int:
    return a % b if b else 0


#: Integer semantics of the binary ops on ``Z_n`` (operands already in ``0..n-1``).
BINARY_FUNCS: dict[str, Callable[[int, int, int], int]] = {
    "ADD": lambda a, b, n: (a + b) % n,
    "SUB": lambda a, b, n: (a - b) % n,
    "MUL": lambda a, b, n: (a * b) % n,
    "DIV": _div,
    "MOD": _mod,
    "EQ": lambda a, b, n: int(a == b),
    "NE": lambda a, b, n: int(a != b),
    "LT": lambda a, b, n: int(a < b),
    "LE": lambda a, b, n: int(a <= b),
    "MIN": lambda a, b, n: min(a, b),
    "MAX": lambda a, b, n: max(a, b),
    "AND": lambda a, b, n: int(a != 0 and b != 0),  # logical, not bitwise
    "OR": lambda a, b, n: int(a != 0 or b != 0),
}
#: Integer semantics of the unary ops on ``Z_n``.
UNARY_FUNCS: dict[str, Callable[[int, int], int]] = {
    "INC": lambda a, n: (a + 1) % n,
    "DEC": lambda a, n: (a - 1) % n,
    "NOT": lambda a, n: int(a == 0),
}
assert tuple(BINARY_FUNCS) == BINARY_OPS and tuple(UNARY_FUNCS) == UNARY_OPS
