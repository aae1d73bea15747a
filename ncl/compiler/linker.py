"""Putting functions together: which functions a program needs, their labels, entry stubs, and the text.

A program starts with one *entry stub* per entry point, ``<f>.entry: CALL <f>; HALT``: a top-level call returns
into the stub and halts there, so no function relies on RET with an empty return stack. The bodies follow.
"""

from __future__ import annotations

import ast
import builtins
import inspect
from dataclasses import dataclass
from typing import Callable, Mapping

from .emit import Item, emit_function, render
from .errors import CompileError
from .frontend import ParsedFunction, parse_library_function
from .ir import Callee, LoweredFunction
from .lowering import lower
from .regalloc import TooManyLiveValues, allocate


@dataclass
class Unit:
    """
    The functions one compilation can call by name.

    Args:
        user: The user's functions (``fn`` and its helpers), by name; empty for library builds.
        library: Library name -> the Python function (for ``ncl.compile``, ``ncl.library``'s sources); empty for
            none.
    """

    user: dict[str, ParsedFunction]
    library: Mapping[str, Callable]

    def parsed(self, key: str) -> ParsedFunction:
        """The parsed function with a key from ``user_key`` or ``library_key``."""
        kind, name = key.split(":", 1)
        return self.user[name] if kind == "user" else parse_library_function(self.library[name])


def user_key(name: str) -> str:
    """The key of a user function (fn or a helper)."""
    return f"user:{name}"


def library_key(name: str) -> str:
    """The key of a library function."""
    return f"lib:{name}"


def make_resolver(unit: Unit, caller: ParsedFunction):
    """
    The name resolution for calls inside ``caller``.

    Order: the user's functions by name (only for user code); then what the name is bound to in the caller's
    module or closure (a compiled function, or the builtins min/max); then min/max; then the library by name.

    Args:
        unit: The functions in reach.
        caller: The function whose calls are resolved.

    Returns:
        A resolver for ``lowering.lower``.
    """
    by_identity = {id(p.pyfunc): user_key(name) for name, p in unit.user.items()}
    for name, pyfunc in unit.library.items():
        by_identity.setdefault(id(pyfunc), library_key(name))

    def callee(key: str) -> Callee:
        parsed = unit.parsed(key)
        return Callee(key, parsed.name, len(parsed.params), parsed.results)

    def resolve(name: str, node: ast.Call):
        if not caller.library and name in unit.user:
            return callee(user_key(name))
        bound = caller.bindings.get(name)
        if bound is not None:
            if id(bound) in by_identity:
                return callee(by_identity[id(bound)])
            if bound is builtins.min or bound is builtins.max:
                return bound.__name__.upper()
            if inspect.isfunction(bound):
                raise caller.error(f"{name}() is not compiled; pass it to ncl.compile as a helper", node)
            raise caller.error(f"{name!r} is a global {type(bound).__name__}, not a compiled function", node)
        if name in ("min", "max"):
            return name.upper()
        if name in unit.library:
            return callee(library_key(name))
        raise caller.error(f"unknown function {name}(); pass it to ncl.compile as a helper", node)

    return resolve


def collect(roots: list[str], unit: Unit, n: int) -> dict[str, LoweredFunction]:
    """
    Lowers the roots and, transitively, every function they call.

    Args:
        roots: Keys of the entry functions.
        unit: The functions in reach.
        n: The value range.

    Returns:
        Key -> LoweredFunction, in discovery order (roots first).
    """
    lowered: dict[str, LoweredFunction] = {}
    todo = list(roots)
    while todo:
        key = todo.pop(0)
        if key in lowered:
            continue
        parsed = unit.parsed(key)
        fn = lower(parsed, make_resolver(unit, parsed), n)
        lowered[key] = fn
        todo.extend(k for k in fn.callees if k not in lowered)
    return lowered


def assign_labels(keys: list[str]) -> dict[str, str]:
    """
    Entry labels: the function's name; a user function whose name a library function in the same program also
    has becomes ``<name>.user``.
    """
    library_names = {key.split(":", 1)[1] for key in keys if key.startswith("lib:")}
    labels = {}
    for key in keys:
        kind, name = key.split(":", 1)
        labels[key] = f"{name}.user" if kind == "user" and name in library_names else name
    return labels


def function_items(fn: LoweredFunction, label: str, labels: dict[str, str], registers: int) -> list[Item]:
    """Allocates and emits one function's body; if hoisted loop constants do not fit, without hoisting."""
    try:
        alloc = allocate(fn, registers)
    except TooManyLiveValues:
        if fn.without_hoisting is None:
            raise
        alloc = allocate(fn.without_hoisting(), registers)
    return emit_function(alloc, label, labels)


def stub(label: str) -> list[Item]:
    """The entry stub of a function: call it, then halt when it returns."""
    return [("label", f"{label}.entry"), ("ins", "CALL", [label]), ("ins", "HALT", [])]


def link(entries: list[str], bodies: list[list[Item]], labels: dict[str, str]) -> str:
    """
    The program text: entry stubs (in ``entries`` order, the first at line 0), then the bodies.

    Args:
        entries: Keys of the functions that get a stub.
        bodies: Each function's items.
        labels: Key -> entry label.

    Returns:
        Assembly text for ``ncl.assemble``.
    """
    items: list[Item] = []
    for key in entries:
        items += stub(labels[key])
    for body in bodies:
        items += body
    return render(items)


def check_unique(functions: list[Callable]) -> None:
    """Raises CompileError if two of the user's functions share a name (calls are resolved by name)."""
    seen = {}
    for f in functions:
        name = getattr(f, "__name__", None)
        if name in seen and seen[name] is not f:
            raise CompileError(f"two functions are named {name!r}; calls are resolved by name")
        seen[name] = f
