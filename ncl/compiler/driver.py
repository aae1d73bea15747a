"""The compiler's entry points: a Python function -> assembly -> ``Program``, and builds of library functions.

The compiler does not know any particular library: a *library* is a mapping name -> Python function, passed in by
the caller. ``ncl.compile`` (``ncl.library.compile``) passes ``ncl.library``'s functions.
"""

from __future__ import annotations

from typing import Callable, Mapping

from ncl.machine import AssemblyError, MachineConfig, Program, assemble, vm

from .compiled import CompiledFunction
from .errors import CompileError
from .frontend import parse_function, parse_library_function
from .linker import (Unit, assign_labels, check_unique, collect, function_items, library_key, link,
                     user_key)


def compile(fn: Callable, *helpers: Callable, config: MachineConfig | None = None,  # noqa: A001
            library: Mapping[str, Callable] | None = None, overflow: str = "wrap") -> CompiledFunction:
    """
    Compiles a Python function (docs/design.md §4's subset) for the machine.

    Calls inside ``fn`` resolve to ``fn`` itself (recursion), to the ``helpers`` (by name), or to functions of
    ``library`` (bound in ``fn``'s module, or by name). ``mem[i]`` is the global tape. Arithmetic is modulo n,
    like the machine's. ``ncl.compile`` is this function with ``ncl.library``'s functions as the library.

    Args:
        fn: The function to compile.
        helpers: Further functions ``fn`` (or each other) may call.
        config: The machine; the default ``MachineConfig()`` if None.
        library: Name -> Python function: further functions calls may reach, compiled with their own module's
            names; none if None.
        overflow: ``"wrap"`` (integers wrap around Z_n, like the machine's) or ``"error"``: the function's integer
            runs raise ``OverflowError`` when a value leaves ``0..n-1`` (``CompiledFunction``).

    Returns:
        The CompiledFunction; its program starts with ``fn``'s entry stub at line 0.

    Raises:
        CompileError: Anything outside the subset, with the source line number.
        ValueError: ``overflow`` is neither ``"wrap"`` nor ``"error"``.
    """
    vm.check_overflow(overflow)
    config = _config(config)
    check_unique([fn, *helpers])
    user = {}
    for f in (fn, *helpers):
        parsed = parse_function(f)
        user[parsed.name] = parsed
    root = user[fn.__name__]
    text, names = _build([user_key(root.name)], Unit(user, library or {}), config)
    return CompiledFunction(root.name, root.params, root.results, _assemble(text, config), text, names, overflow)


def compile_library(names: list[str], library: Mapping[str, Callable],
                    config: MachineConfig | None = None) -> tuple[str, list[str]]:
    """
    The assembly of library functions, with one entry stub each (in ``names`` order, from line 0, two lines
    a stub) and every function they call.

    Args:
        names: Names in ``library``.
        library: Name -> Python function.
        config: The machine; the default ``MachineConfig()`` if None.

    Returns:
        ``(text, functions)``: the assembly and the names of every function in it.

    Raises:
        KeyError: A name that is not in ``library``.
    """
    config = _config(config)
    for name in names:
        if name not in library:
            raise KeyError(f"no library function {name!r}; the library has: {', '.join(library)}")
    return _build([library_key(name) for name in names], Unit({}, library), config)


def compile_library_function(name: str, library: Mapping[str, Callable],
                             config: MachineConfig | None = None) -> CompiledFunction:
    """
    One library function, compiled: its program holds its entry stub at line 0 and every function it calls.

    Args:
        name: A name in ``library``.
        library: Name -> Python function.
        config: The machine; the default ``MachineConfig()`` if None.

    Returns:
        The CompiledFunction.

    Raises:
        KeyError: A name that is not in ``library``.
    """
    config = _config(config)
    text, included = compile_library([name], library, config)
    parsed = parse_library_function(library[name])
    return CompiledFunction(name, parsed.params, parsed.results, _assemble(text, config), text, included)


def _build(entries: list[str], unit: Unit, config: MachineConfig) -> tuple[str, list[str]]:
    lowered = collect(entries, unit, config.n)
    labels = assign_labels(list(lowered))
    bodies = [function_items(fn, labels[key], labels, config.registers) for key, fn in lowered.items()]
    return link(entries, bodies, labels), [fn.parsed.name for fn in lowered.values()]


def _assemble(text: str, config: MachineConfig) -> Program:
    # The compiler's output must always assemble; a failure here is a compiler bug, reported as such.
    try:
        return assemble(text, config)
    except AssemblyError as exc:  # pragma: no cover - would be a bug in the emitter
        raise CompileError(f"internal error: the generated assembly does not assemble ({exc})") from exc


def _config(config: MachineConfig | None) -> MachineConfig:
    if config is None:
        return MachineConfig()
    if not isinstance(config, MachineConfig):
        raise TypeError(f"config must be an ncl.MachineConfig, got {type(config).__name__}")
    return config
