"""``ncl.compile``: Python function -> assembly -> ``Program``; and the library image build."""

from __future__ import annotations

from typing import Callable

from ncl.machine import MachineConfig, Program, assemble

from .compiled import CompiledFunction
from .errors import CompileError
from .frontend import ParsedFunction, parse_function
from .linker import (Unit, assign_labels, check_unique, collect, function_items, library_key, link,
                     user_key)


def compile(fn: Callable, *helpers: Callable, config: MachineConfig | None = None) -> CompiledFunction:  # noqa: A001
    """
    Compiles a Python function (DESIGN §4's subset) for the machine.

    Calls inside ``fn`` resolve to ``fn`` itself (recursion), to the ``helpers`` (by name), or to functions of
    ``ncl.library``. ``mem[i]`` is the global tape. Arithmetic is modulo n, like the machine's.

    Args:
        fn: The function to compile.
        helpers: Further functions ``fn`` (or each other) may call.
        config: The machine; the default ``MachineConfig()`` if None.

    Returns:
        The CompiledFunction; its program starts with ``fn``'s entry stub at line 0.

    Raises:
        CompileError: Anything outside the subset, with the source line number.
    """
    config = _config(config)
    check_unique([fn, *helpers])
    user = {}
    for f in (fn, *helpers):
        parsed = parse_function(f)
        user[parsed.name] = parsed
    root = user[fn.__name__]
    text, names = _build([user_key(root.name)], Unit(user, _library().functions()), config)
    return CompiledFunction(root.name, root.params, root.results, _assemble(text, config), text, names)


def compile_library(names: list[str], config: MachineConfig | None = None) -> tuple[str, list[str]]:
    """
    The assembly of library functions, with one entry stub each (in ``names`` order, from line 0, two lines
    a stub) and every function they call.

    Args:
        names: Library function names.
        config: The machine.

    Returns:
        ``(text, functions)``: the assembly and the names of every function in it.
    """
    config = _config(config)
    library = _library()
    for name in names:
        library.source(name)  # raises a clear KeyError for unknown names
    return _build([library_key(name) for name in names], Unit({}, library.functions()), config)


def _build(entries: list[str], unit: Unit, config: MachineConfig) -> tuple[str, list[str]]:
    lowered = collect(entries, unit, _library().parsed, config.n)
    labels = assign_labels(list(lowered))
    bodies = [function_items(fn, labels[key], labels, config.registers) for key, fn in lowered.items()]
    return link(entries, bodies, labels), [fn.parsed.name for fn in lowered.values()]


def _assemble(text: str, config: MachineConfig) -> Program:
    # The compiler's output must always assemble; a failure here is a compiler bug, reported as such.
    from ncl.machine import AssemblyError

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


def _library():
    # Imported late: ncl.library compiles its sources with this module.
    import ncl.library

    return ncl.library


def parse_library_function(pyfunc: Callable) -> ParsedFunction:
    """Parses a function of ``ncl.library`` (its calls resolve through its own module)."""
    return parse_function(pyfunc, library=True)
