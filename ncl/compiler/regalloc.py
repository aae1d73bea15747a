"""Liveness and register allocation: virtual registers -> the machine's r0..r{K-1}.

Liveness is the usual backward dataflow over the IR's control-flow graph. Two virtual registers interfere when
one is written while the other is live; the interference graph is coloured with K colours (Chaitin-Briggs
simplify and select, with moves, arguments and results biasing the choice so that most moves vanish). There is
no spilling: values live across a call are saved on the data stack by the call sequence, and anything else that
does not fit is a CompileError naming the line and the live variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CompileError
from .ir import Ins, LoweredFunction

#: IR kinds that only write their destination: removable when nothing reads it.
_PURE = ("const", "mov", "bin", "un", "load")


class TooManyLiveValues(CompileError):
    """More values are live at some point than the machine has registers (a CompileError)."""


def successors(code: list[Ins]) -> list[list[int]]:
    """For each instruction, the indices of the instructions control may reach next."""
    where = {ins.target: i for i, ins in enumerate(code) if ins.kind == "label"}
    out = []
    for i, ins in enumerate(code):
        nxt = []
        if ins.falls_through and i + 1 < len(code):
            nxt.append(i + 1)
        if ins.jumps:
            nxt.append(where[ins.target])
        out.append(nxt)
    return out


def prune(code: list[Ins]) -> list[Ins]:
    """Drops the instructions control can never reach (code after a return, tests of constant loops)."""
    succ = successors(code)
    seen, todo = {0}, [0]
    while todo:
        for j in succ[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return [ins for i, ins in enumerate(code) if i in seen]


def liveness(code: list[Ins]) -> tuple[list[set[int]], list[set[int]]]:
    """
    Computes which virtual registers are live before and after each instruction.

    Args:
        code: The IR of one function (pruned, so that every instruction is reachable).

    Returns:
        ``(live_in, live_out)``, one set per instruction.
    """
    succ = successors(code)
    live_in = [set() for _ in code]
    live_out = [set() for _ in code]
    changed = True
    while changed:
        changed = False
        for i in range(len(code) - 1, -1, -1):
            out = set().union(*(live_in[j] for j in succ[i])) if succ[i] else set()
            new_in = set(code[i].uses) | (out - set(code[i].defs))
            if out != live_out[i] or new_in != live_in[i]:
                live_out[i], live_in[i] = out, new_in
                changed = True
    return live_in, live_out


@dataclass
class Allocation:
    """
    A function's registers.

    Args:
        code: The pruned IR.
        colors: Virtual register -> machine register index.
        live_out: The live virtual registers after each instruction (the call sequence saves these).
    """

    code: list[Ins]
    colors: dict[int, int]
    live_out: list[set[int]]


def allocate(fn: LoweredFunction, registers: int) -> Allocation:
    """
    Assigns machine registers to a lowered function's virtual registers.

    Args:
        fn: The lowered function; its parameters are pinned to r1, r2, ...
        registers: K, the machine's register count.

    Returns:
        The Allocation.

    Raises:
        CompileError: A local that may be read before it is assigned, or more live values than registers.
    """
    parsed = fn.parsed
    if len(fn.params) > registers - 1:
        raise parsed.error(f"{len(fn.params)} parameters do not fit in r1..r{registers - 1}", parsed.node)
    code = prune(fn.code)
    live_in, live_out = liveness(code)
    _check_defined(fn, code, live_in[0])
    code, live_in, live_out = _drop_dead_definitions(code, live_in, live_out)

    adjacent: dict[int, set[int]] = {}
    hints: dict[int, list[tuple[str, int]]] = {}
    for i, ins in enumerate(code):
        for v in ins.defs + ins.uses:
            adjacent.setdefault(v, set())
        for d in ins.defs:
            for v in live_out[i] | set(ins.defs):
                # A move's source may share the destination's register: that is what makes the move vanish.
                if v != d and not (ins.kind == "mov" and v == ins.uses[0]):
                    adjacent[d].add(v)
                    adjacent[v].add(d)
        _collect_hints(ins, hints)

    colors = {v: k + 1 for k, v in enumerate(fn.params)}  # the calling convention: arguments in r1..rk
    order = _simplify(adjacent, colors, registers)
    for v in reversed(order):
        taken = {colors[u] for u in adjacent[v] if u in colors}
        free = [c for c in range(registers) if c not in taken]
        if not free:
            raise _pressure_error(fn, code, live_out, v, registers)
        colors[v] = _preferred(free, hints.get(v, []), colors)
    return Allocation(code, colors, live_out)


def _drop_dead_definitions(code, live_in, live_out):
    """Removes pure instructions whose result nobody reads (e.g. a hoisted constant a loop never used)."""
    while True:
        keep = [ins for i, ins in enumerate(code)
                if not (ins.kind in _PURE and not any(d in live_out[i] for d in ins.defs))]
        if len(keep) == len(code):
            return code, live_in, live_out
        code = keep
        live_in, live_out = liveness(code)


def _collect_hints(ins: Ins, hints: dict[int, list[tuple[str, int]]]) -> None:
    """Register preferences: ("c", k) asks for rk, ("v", u) for the register of u."""
    def want(v, kind, x):
        hints.setdefault(v, []).append((kind, x))

    if ins.kind == "mov":
        want(ins.defs[0], "v", ins.uses[0])
        want(ins.uses[0], "v", ins.defs[0])
    elif ins.kind in ("bin", "un"):
        want(ins.defs[0], "v", ins.uses[0])
    elif ins.kind == "ret":
        for k, v in enumerate(ins.uses):
            want(v, "c", k)
    elif ins.kind == "call":
        for k, v in enumerate(ins.uses):
            want(v, "c", k + 1)
        for k, v in enumerate(ins.defs):
            want(v, "c", k)


def _simplify(adjacent: dict[int, set[int]], colors: dict[int, int], registers: int) -> list[int]:
    """Chaitin-Briggs simplification order: nodes of low degree first, the rest optimistically."""
    remaining = {v for v in adjacent if v not in colors}
    degree = {v: len(adjacent[v]) for v in remaining}
    order = []
    while remaining:
        easy = [v for v in remaining if degree[v] < registers]
        v = min(easy) if easy else max(remaining, key=lambda u: (degree[u], -u))
        remaining.discard(v)
        order.append(v)
        for u in adjacent[v]:
            if u in remaining:
                degree[u] -= 1
    return order


def _preferred(free: list[int], wants: list[tuple[str, int]], colors: dict[int, int]) -> int:
    """The free register most often asked for, else the lowest free one."""
    score: dict[int, int] = {}
    for kind, x in wants:
        c = x if kind == "c" else colors.get(x)
        if c in free:
            score[c] = score.get(c, 0) + 1
    if score:
        return max(score, key=lambda c: (score[c], -c))
    return free[0]


def _check_defined(fn: LoweredFunction, code: list[Ins], live_at_entry: set[int]) -> None:
    """A variable live on entry (other than a parameter) may be read before any assignment."""
    for i, ins in enumerate(code):
        for v in ins.uses:
            if v in live_at_entry:
                name = fn.names.get(v, "a temporary")
                raise fn.parsed.error(f"local variable {name!r} may be used before it is assigned "
                                      "(on some path, e.g. a loop that runs zero times)",
                                      _Line(ins.line))


def _pressure_error(fn: LoweredFunction, code: list[Ins], live_out: list[set[int]], v: int, registers: int):
    """The CompileError for a value that finds no free register: where the pressure is highest."""
    worst = max((i for i in range(len(code)) if v in live_out[i] or v in code[i].defs),
                key=lambda i: len(live_out[i] | set(code[i].defs)))
    live = live_out[worst] | set(code[worst].defs)
    named = sorted({fn.names[u] for u in live if u in fn.names})
    temps = sum(1 for u in live if u not in fn.names)
    parts = ", ".join(named) + (f" and {temps} temporary value(s)" if temps else "")
    base = fn.parsed.error(f"too many live locals for the {registers} registers: {parts} are live here; "
                           "use fewer variables or split the function", _Line(code[worst].line))
    return TooManyLiveValues(base.message, base.lineno, base.filename, base.function)


class _Line:
    """Stands in for an AST node when only a line number is known."""

    def __init__(self, lineno: int | None) -> None:
        self.lineno = lineno
