"""Instructions as the assembly language sees them: each opcode's operand forms, one decoded line, and the
canonical text of a program (:func:`format_assembly`, which :func:`~ncl.machine.assembler.parse` reads back).

The opcode table itself and the ops' integer semantics are :mod:`ncl_kernels.isa`.
"""

from __future__ import annotations

from typing import NamedTuple

from ncl_kernels.isa import BINARY_OPS, OPCODES, UNARY_OPS

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


def format_assembly(code: list[Instruction], labels: dict[str, int] | None = None) -> str:
    """Instructions back to assembly text, in the canonical form :func:`parse` reads.

    Every line that some jump targets gets a label: its name from ``labels`` if it has one, else ``L<line>``.
    Labels in ``labels`` that nothing jumps to are kept too.

    Args:
        code: the instructions.
        labels: known label names -> line index.

    Returns:
        the text; ``parse(format_assembly(code, labels))`` gives ``code`` back.
    """
    names: dict[int, list[str]] = {}
    for name, index in sorted((labels or {}).items(), key=lambda kv: (kv[1], kv[0])):
        names.setdefault(index, []).append(name)
    taken = {name for group in names.values() for name in group}
    for ins in code:
        if "tgt" in OPERANDS[OPCODES[ins.op]] and ins.tgt not in names:
            name, k = f"L{ins.tgt}", 0
            while name in taken:  # never collide with a user label that happens to look like this
                k += 1
                name = f"L{ins.tgt}_{k}"
            names[ins.tgt] = [name]
            taken.add(name)
    out = []
    for index, ins in enumerate(code):
        out.extend(f"{name}:" for name in names.get(index, []))
        out.append("    " + _format_instruction(ins, names))
    return "\n".join(out) + "\n"


def _format_instruction(ins: Instruction, names: dict[int, list[str]]) -> str:
    mnemonic = OPCODES[ins.op]
    parts = []
    for form in OPERANDS[mnemonic]:
        if form in ("d", "a", "b"):
            parts.append(f"r{getattr(ins, form)}")
        elif form == "[a]":
            parts.append(f"[r{ins.a}]")
        elif form == "imm":
            parts.append(str(ins.imm))
        else:
            parts.append(names[ins.tgt][0])
    return mnemonic + (" " + ", ".join(parts) if parts else "")
