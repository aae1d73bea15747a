"""The digit tape's alphabet: what a cell holds when numbers of any length are written one digit per cell.

The computer writes a prompt's numbers onto the tape digit by digit, most significant first, and ends each
number with :data:`SEP`; ``"add 4071 98 ="`` becomes the cells ``4 0 7 1 SEP 9 8 SEP``. A library function over
the digit tape takes that segment as ``(start, length)`` and leaves its answer at cells ``0, 1, ...``, ended by
:data:`END`; the answer's text is the cells read in order (:func:`text`): a digit is itself, ``SEP`` a space,
``MINUS`` a minus sign, ``LT``/``EQ``/``GT`` a comparison.

This module is the one source of these values: the library's sources read them as named constants (the compiler
folds a module-level int), and the tasks, the tool-use printer and the tests read them from here.
"""

from __future__ import annotations

SEP = 10  #: ends a number (the prompt's space after a number; a space between an answer's list elements)
END = 11  #: ends the answer
MINUS = 12  #: a negative answer's sign, before its digits
LT = 13  #: "<": the first number is smaller
EQ = 14  #: "=": equal
GT = 15  #: ">": the first number is larger

#: The symbols in cell order (the cells after the digits): what a writer that prints symbols spells, in order.
TAPE_SYMBOLS = (SEP, END, MINUS, LT, EQ, GT)
assert TAPE_SYMBOLS == tuple(range(10, 10 + len(TAPE_SYMBOLS)))  # readouts slice cells 10.. as the symbols

#: Each symbol's text in an answer (digits are their own text).
SYMBOL_TEXT = {SEP: " ", MINUS: "-", LT: "<", EQ: "=", GT: ">"}
_TEXT_SYMBOL = {t: s for s, t in SYMBOL_TEXT.items()}


def cells(text: str) -> list[int]:
    """The answer cells that spell ``text``, with the closing :data:`END`: ``"-42"`` → ``[MINUS, 4, 2, END]``.

    Raises:
        ValueError: a character no cell spells.
    """
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(int(ch))
        elif ch in _TEXT_SYMBOL:
            out.append(_TEXT_SYMBOL[ch])
        else:
            raise ValueError(f"no tape symbol spells {ch!r} (answers hold digits, spaces, '-', '<', '=', '>')")
    return out + [END]


def text(tape: list[int]) -> str:
    """The answer a tape holds: its cells from 0 up to the first :data:`END`, as text (the inverse of
    :func:`cells`). A cell no symbol spells reads as ``"?"``; a tape without ``END`` reads to its last cell."""
    out = []
    for v in tape:
        if v == END:
            break
        out.append(str(v) if 0 <= v <= 9 else SYMBOL_TEXT.get(v, "?"))
    return "".join(out)


def number_cells(values) -> list[int]:
    """The input cells of a prompt's numbers (non-negative ints): each one's digits, then :data:`SEP`."""
    out = []
    for v in values:
        if v < 0:
            raise ValueError(f"prompt numbers are non-negative, got {v}")
        out += [int(c) for c in str(v)] + [SEP]
    return out


__all__ = ["END", "EQ", "GT", "LT", "MINUS", "SEP", "SYMBOL_TEXT", "TAPE_SYMBOLS", "cells", "number_cells", "text"]
