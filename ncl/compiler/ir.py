"""The compiler's intermediate form: machine instructions on unlimited virtual registers.

Each function lowers to a flat list of ``Ins``. Operands are virtual registers (ints), turned into the machine's
r0..r{K-1} by ``regalloc``. Two pseudo-instructions stand for sequences the emitter expands once registers are
known: ``call`` (save live registers, place arguments, CALL, collect results, restore) and ``ret`` (place results,
RET). ``entry`` defines the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncl.machine.opcodes import BINARY_OPS, UNARY_OPS

# IR kinds. ALU mnemonics (``op``) are names from the machine's opcode table, never copied here.
KINDS = ("entry", "const", "mov", "bin", "un", "load", "store", "jmp", "jz", "jnz", "label", "call", "ret")


@dataclass
class Ins:
    """
    One IR instruction.

    Args:
        kind: One of ``KINDS``.
        defs: Virtual registers written (at the end of the instruction, like the machine).
        uses: Virtual registers read.
        op: The ALU mnemonic for ``bin`` and ``un``.
        imm: The constant for ``const``.
        target: The label for jumps and ``label``; the callee's key for ``call``.
        line: The source line it came from (for error messages).
    """

    kind: str
    defs: tuple[int, ...] = ()
    uses: tuple[int, ...] = ()
    op: str | None = None
    imm: int | None = None
    target: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown IR kind {self.kind!r}")
        if self.kind == "bin" and self.op not in BINARY_OPS or self.kind == "un" and self.op not in UNARY_OPS:
            raise ValueError(f"{self.op!r} is not a machine {self.kind}ary op")

    @property
    def falls_through(self) -> bool:
        """Whether control can reach the next instruction."""
        return self.kind not in ("jmp", "ret")

    @property
    def jumps(self) -> bool:
        """Whether the instruction may transfer control to ``target``."""
        return self.kind in ("jmp", "jz", "jnz")
