"""Assembly text -> instructions (:func:`parse`), and :func:`assemble` (text -> :class:`~ncl.machine.Program`).

Syntax: one instruction a line, destination first; ``;`` starts a comment; ``name:`` defines a label
(alone or before an instruction on the same line); registers are ``r0..r{K-1}``; immediates are integers in
``0..n-1`` (Python's literals: ``12``, ``0x0c``, ``0o14``, ``0b1100``); jump targets are labels. Mnemonics and
register names are case-insensitive, labels are not. Mnemonics, registers and immediates are ASCII.

Lines end at ``\n``, ``\r\n`` or ``\r`` (as in Python's universal newlines); an error's line number counts
those. Any text gives a :class:`~ncl.machine.Program` or an :class:`AssemblyError` naming a line of the text
(tests/test_fuzz_assembler.py).
"""

from __future__ import annotations

import re

from ncl.machine.instructions import OPERANDS, Instruction
from ncl.machine.program import Program
from ncl_kernels.isa import OP, OPCODES
from ncl_kernels.machine import MachineConfig

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*)\s*:")
_LABEL_NAME = re.compile(r"^[A-Za-z_.$][\w.$]*$")
_REGISTER = re.compile(r"^[rR]([0-9]+)$")
_NEWLINE = re.compile(r"\r\n|\r|\n")
_ADDRESS = re.compile(r"^\[\s*(\S+?)\s*\]$")


class AssemblyError(ValueError):
    """Malformed assembly; ``line`` is the 1-based line number in the source text."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse(text: str, config: MachineConfig | None = None) -> tuple[list[Instruction], dict[str, int]]:
    """Parse assembly text.

    Args:
        text: the source.
        config: machine sizes (register count ``K`` and value range ``n`` bound the operands).

    Returns:
        ``(instructions, labels)``: one :class:`Instruction` per code line, and each label's line index.

    Raises:
        AssemblyError: on any malformed line, naming its line number.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    config = config or MachineConfig()
    pending = []  # (source line, mnemonic, operand strings), resolved once every label is known
    labels: dict[str, int] = {}
    defined_at: dict[str, int] = {}
    lines = _lines(text)
    for lineno, raw in enumerate(lines, start=1):
        line = raw.split(";", 1)[0]
        while (m := _LABEL.match(line)) is not None:
            name = m.group(1)
            if name in labels:
                raise AssemblyError(lineno, f"label {name!r} is defined twice")
            labels[name] = len(pending)
            defined_at[name] = lineno
            line = line[m.end():]
        line = line.strip()
        if not line:
            continue
        word, *rest = line.split(None, 1)
        mnemonic, rest = word.upper(), (rest[0] if rest else "")
        if not word.isascii() or mnemonic not in OP:
            raise AssemblyError(lineno, f"unknown instruction {word!r}; expected one of {', '.join(OPCODES)}")
        operands = [tok.strip() for tok in rest.split(",")] if rest.strip() else []
        forms = OPERANDS[mnemonic]
        if len(operands) != len(forms):
            shape = ", ".join(forms) if forms else "no operands"
            raise AssemblyError(lineno, f"{mnemonic} takes {len(forms)} operand(s) ({shape}), got {len(operands)}")
        pending.append((lineno, mnemonic, operands))
    if not pending:
        raise AssemblyError(len(lines), "the program has no instructions")
    for name, index in labels.items():
        if index >= len(pending):
            raise AssemblyError(defined_at[name],
                                f"label {name!r} is after the last instruction; put HALT or RET there")
    code = [_encode(lineno, mnemonic, operands, labels, config) for lineno, mnemonic, operands in pending]
    return code, labels


def _lines(text: str) -> list[str]:
    """The lines of ``text`` (at least one): split at \\n, \\r\\n and \\r only, not at the other characters
    ``str.splitlines`` takes for line breaks (\\v, \\f, \\x1c-\\x1e, \\x85, \\u2028, \\u2029), which no
    editor counts; a final line break ends the last line rather than starting one."""
    lines = _NEWLINE.split(text)
    return lines[:-1] if len(lines) > 1 and not lines[-1] else lines


def _encode(lineno, mnemonic, operands, labels, config) -> Instruction:
    fields = {"op": OP[mnemonic]}
    for form, tok in zip(OPERANDS[mnemonic], operands):
        if form in ("d", "a", "b"):
            fields[form] = _register(lineno, tok, config)
        elif form == "[a]":
            m = _ADDRESS.match(tok)
            if m is None:
                raise AssemblyError(lineno, f"{mnemonic} expects an address like [r1], got {tok!r}")
            fields["a"] = _register(lineno, m.group(1), config)
        elif form == "imm":
            fields["imm"] = _immediate(lineno, tok, config)
        elif form == "tgt":
            if not _LABEL_NAME.match(tok):
                raise AssemblyError(lineno, f"{mnemonic} expects a label, got {tok!r}")
            if tok not in labels:
                raise AssemblyError(lineno, f"undefined label {tok!r}")
            fields["tgt"] = labels[tok]
    return Instruction(**fields)


def _register(lineno: int, tok: str, config: MachineConfig) -> int:
    m = _REGISTER.match(tok)
    if m is None:
        raise AssemblyError(lineno, f"expected a register r0..r{config.registers - 1}, got {tok!r}")
    digits = m.group(1).lstrip("0") or "0"
    if len(digits) > len(str(config.registers)) or int(digits) >= config.registers:  # no int() of 5000 digits
        raise AssemblyError(lineno, f"register {_short(tok)} does not exist; the machine has "
                                    f"r0..r{config.registers - 1}")
    return int(digits)


def _immediate(lineno: int, tok: str, config: MachineConfig) -> int:
    if re.fullmatch(r"[+-]?[0-9]+", tok):  # decimal, leading zeros allowed, any length
        digits = tok.lstrip("+-").lstrip("0") or "0"
        value = int(digits) if len(digits) <= len(str(config.n)) else config.n  # no int() of 5000 digits
        value = -value if tok.startswith("-") else value
    else:
        try:
            if not tok.isascii():
                raise ValueError(tok)
            value = int(tok, 0)
        except ValueError:
            raise AssemblyError(lineno, f"expected an integer immediate, got {_short(tok)!r}") from None
    if not 0 <= value < config.n:
        raise AssemblyError(lineno, f"immediate {_short(tok)} is outside 0..{config.n - 1}")
    return value


def _short(tok: str) -> str:
    return tok if len(tok) <= 40 else tok[:37] + "..."


def assemble(text: str, config: MachineConfig | None = None) -> Program:
    """Assemble text into a :class:`~ncl.machine.Program` whose logits are ``β·one_hot`` of each field.

    Args:
        text: assembly source (syntax in this module's docstring).
        config: machine sizes; the default :class:`MachineConfig` if ``None``.

    Returns:
        a :class:`~ncl.machine.Program` with ``L`` = the number of instructions.

    Raises:
        AssemblyError: a malformed line, with its line number.
    """
    config = config or MachineConfig()
    code, labels = parse(text, config)
    return Program.from_instructions(code, config, labels)
