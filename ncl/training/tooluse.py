"""The tool-use baseline: the LLaMA writes the library call as text, ``long_add(4071, 98)``; the discrete VM
runs it (:meth:`ncl.machine.Program.execute` with ``engine="vm"``) on a digit tape holding the call's numbers,
and a fixed printer turns the tape into the answer (:func:`ncl.library.symbols.text`).

It is trained on the same labels as the augmented model's auxiliary supervision (which program, on which
numbers), as the call's text; nothing about the call's result reaches its training.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace

import ncl.library
from ncl.computer import DEFAULT_MACHINE
from ncl.library.symbols import number_cells, text
from ncl.compiler import ExecutionError

TOOL_N = 256  #: the VM's value range: every program's exact range (the largest a task needs)
_CALL = re.compile(r"^\s*([a-z_]+)\((\s*\d+\s*(?:,\s*\d+\s*)*)?\)\s*$")
_REF = re.compile(r"#(\d+)")


def parse_call(call: str) -> tuple[str, tuple[int, ...]] | None:
    """``"long_add(4071, 98)"`` → ``("long_add", (4071, 98))``; None when the text is not a call of a library
    function over the digit tape (:func:`ncl.library.bounded_names`)."""
    m = _CALL.match(call)
    if m is None or m.group(1) not in ncl.library.bounded_names():
        return None
    numbers = tuple(int(x) for x in m.group(2).split(",")) if m.group(2) else ()
    return m.group(1), numbers


@functools.lru_cache(maxsize=None)
def _program(name: str, cells: int):
    return ncl.library.get(name, replace(DEFAULT_MACHINE, n=TOOL_N, cells=cells))


def run_calls(calls: str) -> str | None:
    """The answer of a chain of calls, ``"long_add(4, 9); long_mul(#1, 12)"``: each runs as :func:`run_call`,
    ``#k`` standing for the numbers call k printed (from 1); None when a call fails or a reference points at no
    earlier call."""
    results: list[str] = []
    out = None
    for call in calls.split(";"):
        def expand(m):
            k = int(m.group(1))
            if not 1 <= k <= len(results) or not results[k - 1].split():
                raise LookupError(k)
            return ", ".join(results[k - 1].split())

        try:
            call = _REF.sub(expand, call)
        except LookupError:
            return None
        out = run_call(call)
        if out is None or not all(x.isdigit() for x in out.split()):  # a sign or symbol feeds no later call
            return out if out is not None and len(results) == calls.count(";") else None
        results.append(out)
    return out


def run_call(call: str) -> str | None:
    """The answer the tool prints for a written call, or None when the call is malformed, does not fit the
    machine, or does not halt within its function's step bound."""
    parsed = parse_call(call)
    if parsed is None:
        return None
    name, numbers = parsed
    tape = number_cells(numbers)
    cells, steps = ncl.library.resources(name, len(tape))
    cells = -(-cells // 8) * 8
    if cells > TOOL_N:
        return None
    try:
        result = _program(name, cells).execute(0, len(tape), mem=tape, engine="vm", max_steps=steps)
    except ExecutionError:
        return None
    return text(result.mem) if result.halted else None


__all__ = ["TOOL_N", "parse_call", "run_call", "run_calls"]
