"""Assembly for one allocated function: the call and return sequences, parallel moves, and a peephole pass.

The calling convention (docs/compiler.md): arguments in r1..rk, the result in r0 (a pair in r0 and r1), the
return address on the return stack (CALL/RET), and every register is caller-saved: before a CALL the caller
PUSHes the registers whose values it still needs, and POPs them back after.
"""

from __future__ import annotations

from .regalloc import Allocation

#: One line of output: ("label", name) or ("ins", mnemonic, operands).
Item = tuple


def emit_function(alloc: Allocation, label: str, call_labels: dict[str, str]) -> list[Item]:
    """
    Turns an allocated function into assembly items.

    Args:
        alloc: The function's pruned IR and registers.
        label: The function's entry label; its local labels are ``label`` plus a suffix such as ``.while3``.
        call_labels: Callee key -> the label of its entry.

    Returns:
        The items: the entry label, then instructions and local labels.
    """
    c = alloc.colors
    r = lambda v: f"r{c[v]}"  # noqa: E731
    items: list[Item] = [("label", label)]
    for i, ins in enumerate(alloc.code):
        k = ins.kind
        if k == "entry":
            continue
        if k == "label":
            items.append(("label", label + ins.target))
        elif k == "const":
            items.append(("ins", "CONST", [r(ins.defs[0]), str(ins.imm)]))
        elif k == "mov":
            if c[ins.defs[0]] != c[ins.uses[0]]:
                items.append(("ins", "MOV", [r(ins.defs[0]), r(ins.uses[0])]))
        elif k in ("bin", "un"):
            items.append(("ins", ins.op, [r(ins.defs[0])] + [r(u) for u in ins.uses]))
        elif k == "load":
            items.append(("ins", "LOAD", [r(ins.defs[0]), f"[{r(ins.uses[0])}]"]))
        elif k == "store":
            items.append(("ins", "STORE", [f"[{r(ins.uses[0])}]", r(ins.uses[1])]))
        elif k == "jmp":
            items.append(("ins", "JMP", [label + ins.target]))
        elif k in ("jz", "jnz"):
            items.append(("ins", k.upper(), [r(ins.uses[0]), label + ins.target]))
        elif k == "call":
            saved = sorted({c[v] for v in alloc.live_out[i] if v not in ins.defs})
            items += [("ins", "PUSH", [f"r{s}"]) for s in saved]
            items += parallel_move([(c[a], j + 1) for j, a in enumerate(ins.uses)])
            items.append(("ins", "CALL", [call_labels[ins.target]]))
            items += parallel_move([(j, c[d]) for j, d in enumerate(ins.defs)])
            items += [("ins", "POP", [f"r{s}"]) for s in reversed(saved)]
        elif k == "ret":
            items += parallel_move([(c[v], j) for j, v in enumerate(ins.uses)])
            items.append(("ins", "RET", []))
        else:  # pragma: no cover - KINDS is closed
            raise AssertionError(f"unknown IR kind {k}")
    return peephole(items, keep={label})


def parallel_move(moves: list[tuple[int, int]]) -> list[Item]:
    """
    Register moves that happen "at once": every source is read before any destination is written.

    Args:
        moves: ``(source, destination)`` register pairs; destinations are distinct.

    Returns:
        MOV items, with a PUSH/POP pair through the data stack to break each cycle (e.g. a swap).
    """
    pending = [(s, d) for s, d in moves if s != d]
    if len({d for _, d in pending}) != len(pending):
        raise ValueError(f"parallel move writes a register twice: {moves}")
    out: list[Item] = []
    parked: list[int] = []
    while pending:
        sources = {s for s, _ in pending}
        ready = next((m for m in pending if m[1] not in sources), None)
        if ready is not None:
            out.append(("ins", "MOV", [f"r{ready[1]}", f"r{ready[0]}"]))
            pending.remove(ready)
        else:
            # Every destination is still to be read: a cycle. Park one source; its destination is filled last.
            s, d = pending.pop(0)
            out.append(("ins", "PUSH", [f"r{s}"]))
            parked.append(d)
    out += [("ins", "POP", [f"r{d}"]) for d in reversed(parked)]
    return out


def peephole(items: list[Item], keep: set[str]) -> list[Item]:
    """
    Removes jumps that go nowhere, threads jumps through jumps, and drops dead code and unused labels.

    Args:
        items: Assembly items of one function.
        keep: Labels to keep even if nothing jumps to them (the function's entry).

    Returns:
        The improved items; they compute the same thing in no more steps.
    """
    changed = True
    while changed:
        changed = False
        first = _first_instruction(items)
        # A jump to a jump goes straight to the final target; a JMP to a RET is a RET.
        for idx, item in enumerate(items):
            if item[0] == "ins" and item[1] in ("JMP", "JZ", "JNZ"):
                target = item[2][-1]
                seen = {target}
                while first.get(target) is not None and items[first[target]][1] == "JMP":
                    nxt = items[first[target]][2][0]
                    if nxt in seen:
                        break
                    seen.add(nxt)
                    target = nxt
                if item[1] == "JMP" and first.get(target) is not None and items[first[target]][1] == "RET":
                    items[idx] = ("ins", "RET", [])
                    changed = True
                elif target != item[2][-1]:
                    items[idx] = ("ins", item[1], item[2][:-1] + [target])
                    changed = True
        out: list[Item] = []
        idx = 0
        while idx < len(items):
            item = items[idx]
            following = _labels_after(items, idx + 1)
            if item[0] == "ins" and item[1] in ("JMP", "JZ", "JNZ") and item[2][-1] in following:
                changed = True  # a jump to the very next line
            elif (item[0] == "ins" and item[1] in ("JZ", "JNZ") and idx + 1 < len(items)
                  and items[idx + 1][0] == "ins" and items[idx + 1][1] == "JMP"
                  and item[2][-1] in _labels_after(items, idx + 2)):
                # "JZ x, a; JMP b; a:" is "JNZ x, b; a:".
                flipped = "JNZ" if item[1] == "JZ" else "JZ"
                out.append(("ins", flipped, [item[2][0], items[idx + 1][2][0]]))
                idx += 1
                changed = True
            else:
                out.append(item)
            idx += 1
        items = out
        used = {item[2][-1] for item in items if item[0] == "ins" and item[1] in ("JMP", "JZ", "JNZ", "CALL")}
        out, live = [], True
        for item in items:
            if item[0] == "label":
                if item[1] in used or item[1] in keep:
                    out.append(item)
                    live = True
                else:
                    changed = True
            elif live:
                out.append(item)
                if item[1] in ("JMP", "RET", "HALT"):
                    live = False
            else:
                changed = True  # unreachable: after a JMP or RET and before any label
        items = out
    return items


def _first_instruction(items: list[Item]) -> dict[str, int | None]:
    """Label -> index of the first instruction at or after it."""
    first: dict[str, int | None] = {}
    waiting: list[str] = []
    for idx, item in enumerate(items):
        if item[0] == "label":
            waiting.append(item[1])
        else:
            for name in waiting:
                first[name] = idx
            waiting = []
    for name in waiting:
        first[name] = None
    return first


def _labels_after(items: list[Item], idx: int) -> set[str]:
    """The labels directly at position ``idx`` (before the next instruction)."""
    names = set()
    while idx < len(items) and items[idx][0] == "label":
        names.add(items[idx][1])
        idx += 1
    return names


def render(items: list[Item]) -> str:
    """Assembly text: labels on their own lines, instructions indented."""
    lines = []
    for item in items:
        if item[0] == "label":
            lines.append(f"{item[1]}:")
        else:
            lines.append(f"    {item[1]}" + (" " + ", ".join(item[2]) if item[2] else ""))
    return "\n".join(lines) + "\n"
