"""The compiler's intermediate form: machine instructions on unlimited virtual registers.

Each function lowers to a flat list of ``Ins``. Operands are virtual registers (ints), turned into the machine's
r0..r{K-1} by ``regalloc``. Two pseudo-instructions stand for sequences the emitter expands once registers are
known: ``call`` (save live registers, place arguments, CALL, collect results, restore) and ``ret`` (place results,
RET). ``entry`` defines the parameters. A ``LoweredFunction`` is one function in this form; each ``call`` names a
``Callee``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable, Union

from ncl_kernels.isa import BINARY_OPS, UNARY_OPS

from .frontend import ParsedFunction

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


@dataclass(frozen=True)
class Callee:
    """
    A function a call resolves to.

    Args:
        key: Its unique key in the program being built (the linker turns it into a label).
        name: Its Python name.
        params: How many arguments it takes.
        results: How many values it returns (1, or 2 for a pair in r0 and r1).
    """

    key: str
    name: str
    params: int
    results: int


#: A resolver maps a called name (and the call node, for errors) to a Callee, or to "MIN"/"MAX" for the builtins.
Resolver = Callable[[str, ast.Call], Union[Callee, str]]


@dataclass
class LoweredFunction:
    """
    One function in IR.

    Args:
        parsed: The source it came from.
        code: The IR, starting with the ``entry`` pseudo-instruction.
        params: The parameters' virtual registers, in order (they arrive in r1, r2, ...).
        names: Virtual register -> Python variable name (temporaries are absent).
        callees: Every function it calls, by key.
        registers: How many virtual registers it uses.
        hoisted: Whether loop constants were hoisted into registers before their loops.
        without_hoisting: Lowers the function again with no hoisting (fewer live values, more steps).
    """

    parsed: ParsedFunction
    code: list[Ins]
    params: list[int]
    names: dict[int, str]
    callees: dict[str, Callee] = field(default_factory=dict)
    registers: int = 0
    hoisted: bool = False
    without_hoisting: Callable[[], "LoweredFunction"] | None = None
