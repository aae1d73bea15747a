"""The instruction set and the value encoding: the one table every layer reads.

The opcode list, the ALU's op groups and their integer semantics on ``Z_n`` live here and nowhere else: the
ALUs, the step ops, the whole-run kernels, the assembler, the VM and the compiler import them, and the C++
constants in ``csrc/include/ncl/opcodes.h`` are generated from this module (``python -m ncl_kernels.isa``;
``tests/test_isa.py`` checks the header is current). Values are distributions over ``Z_n``; a hard value is
one-hot (:func:`one_hot`) and an address is a value folded onto the memory cells (:func:`fold`).
"""

from __future__ import annotations

from typing import Callable

import torch

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
#: The ALU's ops in coefficient order (``alu_mix``/``alu_circuit_mix``). They are contiguous in
#: :data:`OPCODES`, so their weights are one slice of the op weights (:data:`ALU_SLICE`).
ALU_OPS: tuple[str, ...] = BINARY_OPS + UNARY_OPS
ALU_SLICE = slice(OP[ALU_OPS[0]], OP[ALU_OPS[-1]] + 1)
assert OPCODES[ALU_SLICE] == ALU_OPS
#: Every op that writes register ``d``; its output is mixed into ``out`` with weight ``e_k``.
VALUE_OPS: tuple[str, ...] = ("CONST", "MOV") + ALU_OPS + ("LOAD", "POP")
#: Ops that change control flow or halt; every other op moves to the next line.
CONTROL_OPS: tuple[str, ...] = ("HALT", "JMP", "JZ", "JNZ", "CALL", "RET")
#: Ops whose ip mass moves to the next line unconditionally (``q_seq`` of the control step).
SEQUENTIAL_OPS: tuple[str, ...] = tuple(o for o in OPCODES if o not in CONTROL_OPS)


def _div(a: int, b: int, n: int) -> int:
    return a // b if b else 0  # division by zero gives 0: the machine has no exceptions


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


def one_hot(values, n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    r"""Hard values :math:`e_k` as distributions.

    Args:
        values: integers in ``0..n-1``, any shape ``(...)`` (a tensor or nested lists).
        n: value range.

    Returns:
        ``(..., n)`` one-hot rows of ``dtype``.
    """
    idx = torch.as_tensor(values, dtype=torch.long, device=device)
    if idx.numel() and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"values must lie in 0..{n - 1}, got min {int(idx.min())}, max {int(idx.max())}")
    return torch.nn.functional.one_hot(idx, n).to(dtype)


def fold(v: torch.Tensor, cells: int) -> torch.Tensor:
    r"""An address: a value folded onto the memory cells.

    .. math:: \chi_c = \sum_{k \equiv c \ (\mathrm{mod}\ C)} v_k

    Args:
        v: ``(B, n)`` a value.
        cells: ``C``.

    Returns:
        ``(B, C)``; a distribution when ``v`` is one.
    """
    n = v.shape[-1]
    pad = (-n) % cells
    if pad:
        v = torch.nn.functional.pad(v, (0, pad))
    return v.reshape(*v.shape[:-1], -1, cells).sum(-2)


def c_header() -> str:
    """The text of ``csrc/include/ncl/opcodes.h``: this table as C++ constants, for the kernels."""
    names = [f"k{o.capitalize()}" for o in OPCODES]
    enum = ",\n".join(f"  {name} = {i}" for i, name in enumerate(names))
    alu = ", ".join(ALU_OPS)
    return f"""\
// Generated from ncl_kernels/isa.py by `python -m ncl_kernels.isa > csrc/include/ncl/opcodes.h`: do not edit.
// tests/test_isa.py fails when this file and the Python table differ.
#pragma once

namespace ncl {{
namespace isa {{

// Every opcode, numbered as the columns of a program's op field.
enum Opcode : int {{
{enum}
}};
constexpr int kNumOpcodes = {NUM_OPS};

// The ALU's ops, BINARY_OPS then UNARY_OPS: ALU op k is opcode kAluFirst + k.
constexpr int kAluFirst = {names[OP[ALU_OPS[0]]]};
constexpr int kNumBinary = {len(BINARY_OPS)};
constexpr int kNumUnary = {len(UNARY_OPS)};
constexpr int kNumAluOps = kNumBinary + kNumUnary;

}}  // namespace isa

namespace alu {{

// ALU op indices in coefficient order (the weights of alu_mix and alu_circuit_mix).
enum Op : int {{ {alu} }};

}}  // namespace alu
}}  // namespace ncl
"""


if __name__ == "__main__":
    print(c_header(), end="")
