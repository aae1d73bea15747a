"""The compiled starting library (docs/design.md §4): plain Python sources in ``ncl/library/sources/``, compiled
on demand, and ``ncl.compile``, the compiler with the library in reach.

- ``compile(fn, *helpers, config=None)``: ``ncl.compile``; calls in ``fn`` may reach every library function.
- ``names()``: every library function, in a fixed order.
- ``source(name)``: the Python function (read it, or run it as Python with ``call_python``).
- ``get(name, config=None)``: its ``CompiledFunction`` (cached per name and config; shared, so copy its program
  before training it).
- ``image(config=None)``: one fresh ``Program`` holding every function, with ``program.entries``: name -> the line
  of that function's entry stub (``CALL f; HALT``). Starting the machine at ``entries[f]`` with the arguments in
  r1, r2, ... computes ``f`` and halts with the result in r0.
- ``resources(name, length)``: upper bounds ``(cells, steps)`` for a digit-tape function on a segment of that length.

Conventions (docs/library.md): tape functions take ``(start, length)`` of a segment of ``mem``; ``divmod`` returns
the quotient in r0 and the remainder in r1.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

from ncl.compiler import CompiledFunction, compile_library, compile_library_function
from ncl.compiler import compile as compile_function
from ncl.library.sources import arith, recursion, tape
from ncl.library.sources import digits, graphs, lists
from ncl.library.source_text import define
from ncl.machine import MachineConfig, Program, assemble

_MODULES = (arith, recursion, tape, lists, graphs, digits)


@functools.lru_cache(maxsize=None)
def _functions() -> dict[str, Callable]:
    table = {}
    for module in _MODULES:
        for name in (*module.__all__, *getattr(module, "HELPERS", ())):
            fn = getattr(module, name)
            if fn.__name__ != name or name in table:
                raise RuntimeError(f"library source {module.__name__}.{name} is misnamed or defined twice")
            table[name] = fn
    return table


def functions() -> dict[str, Callable]:
    """
    Every library function's Python source.

    Returns:
        A new dict: name -> Python function.
    """
    return dict(_functions())


def names() -> list[str]:
    """
    The library's function names, in a fixed order (module by module: arithmetic, recursion, tape, lists,
    graphs, ...); modules' ``HELPERS`` are left out.

    Returns:
        The names.
    """
    return [name for name in _functions() if name not in _helpers()]


@functools.lru_cache(maxsize=None)
def _helpers() -> frozenset[str]:
    # A module's HELPERS are library functions its programs call but that are no program of their own: in
    # reach of every compilation, left out of names() and of the image's entry stubs.
    return frozenset(name for module in _MODULES for name in getattr(module, "HELPERS", ()))


def source(name: str) -> Callable:
    """
    A library function's Python source.

    Args:
        name: A name from ``names()``.

    Returns:
        The Python function.

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    table = _functions()
    if name not in table:
        raise KeyError(f"no library function {name!r}; the library has: {', '.join(table)}")
    return table[name]


def compile(fn: Callable | str, *helpers: Callable, config: MachineConfig | None = None,  # noqa: A001
            overflow: str = "wrap") -> CompiledFunction:
    """
    ``ncl.compile``: compiles a Python function for the machine, with every library function in reach.

    Calls inside ``fn`` resolve to ``fn`` itself, to the ``helpers`` (by name), or to the library's functions
    (bound in ``fn``'s module, or by name); see ``ncl.compiler.compile``.

    Args:
        fn: The function to compile, or Python source text (a function defined in a REPL or by ``exec`` has no
            source ``inspect`` can find): its first function is compiled, the others are its helpers
            (:mod:`ncl.library.source_text`).
        helpers: Further functions ``fn`` (or each other) may call.
        config: The machine; the default ``MachineConfig()`` if None.
        overflow: ``"wrap"``: integers wrap around Z_n, the machine's semantics; ``"error"``: the integer runs
            (calling the result, ``execute``, ``trace``) raise ``OverflowError`` when a value leaves
            ``0..n-1``, to find the inputs a program cannot handle. Constants are taken modulo n: write
            ``x - 1``, since ``x + (-1)`` adds n - 1 and is reported (docs/compiler.md).

    Returns:
        The CompiledFunction; its program starts with ``fn``'s entry stub at line 0.

    Raises:
        CompileError: Anything outside the subset, with the source line number.
        ValueError: ``overflow`` is neither ``"wrap"`` nor ``"error"``.

    Example::

        >>> import ncl
        >>> def gcd(a, b):
        ...     while b != 0:
        ...         a, b = b, a % b
        ...     return a
        >>> f = ncl.compile(gcd, config=ncl.MachineConfig(n=32))
        >>> f(12, 18)                      # on the discrete VM
        6
        >>> f.execute(12, 18).value        # on the differentiable machine, one-hot inputs
        6
        >>> def square(x):
        ...     return x * x
        >>> ncl.compile(square, config=ncl.MachineConfig(n=32))(6)     # 36 wraps around Z_32
        4
        >>> ncl.compile(square, config=ncl.MachineConfig(n=32), overflow="error")(6)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        OverflowError: square(6): line ... 6 * 6 = 36 is outside the machine's values 0..31 ...
    """
    if isinstance(fn, str):
        fn, *more = define(fn).values()
        helpers = (*more, *helpers)
    return compile_function(fn, *helpers, config=config, library=_functions(), overflow=overflow)


@functools.lru_cache(maxsize=None)
def _get(name: str, config: MachineConfig) -> CompiledFunction:
    return compile_library_function(name, _functions(), config)


def get(name: str, config: MachineConfig | None = None) -> CompiledFunction:
    """
    A library function, compiled (cached per name and config).

    Args:
        name: A name from ``names()``.
        config: The ``MachineConfig``; the default if None.

    Returns:
        The ``CompiledFunction``; the cached object is shared between callers.

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    source(name)
    return _get(name, config if config is not None else MachineConfig())


@functools.lru_cache(maxsize=None)
def _image_text(config: MachineConfig) -> str:
    return compile_library(names(), _functions(), config)[0]


def image(config: MachineConfig | None = None) -> Program:
    """
    The library image: every function in one program, behind one entry stub each.

    Args:
        config: The ``MachineConfig``; the default if None.

    Returns:
        A new ``Program`` (an ``nn.Module``) with an ``entries`` attribute: name -> line of its entry stub.
    """
    config = config if config is not None else MachineConfig()
    program = assemble(_image_text(config), config)
    program.entries = {name: program.labels[f"{name}.entry"] for name in names()}
    return program


def resources(name: str, length: int) -> tuple[int, int]:
    """
    Upper bounds for running a digit-tape function (docs/library.md) on a segment of ``length`` cells at
    ``start = 0``, for any input in its documented range: the cells it touches (its highest index + 1) and the VM
    steps it takes, the entry stub's included. Each module that has such functions bounds them in its own
    ``resources(name, length)``.

    Args:
        name: A name from ``names()``.
        length: The input segment's length.

    Returns:
        ``(cells, steps)``.

    Raises:
        KeyError: An unknown name, or a function whose module gives no bounds for it.
    """
    module = sys.modules[source(name).__module__]
    if not hasattr(module, "resources"):
        raise KeyError(f"no resource bounds for {name!r}: {module.__name__} defines no resources()")
    return module.resources(name, length)


def reads(name: str, count: int) -> bool:
    """
    Whether a digit-tape function (:func:`bounded_names`) may be called on a segment of ``count`` numbers: its
    input contract, e.g. ``long_add`` reads two numbers, ``palindrome`` one, ``list_sort`` a list of one or more,
    ``shortest_path`` the query's two and two an edge. A call on any other count is outside what the function
    is written for. Each module with such functions states it in its own ``reads(name, count)``.

    Args:
        name: A name from ``names()``.
        count: The numbers the segment holds (each number's digits end with ``SEP``).

    Returns:
        Whether the call is in the function's contract.

    Raises:
        KeyError: An unknown name, or a function whose module states no contract (not a digit-tape function).
    """
    module = sys.modules[source(name).__module__]
    if not hasattr(module, "reads"):
        raise KeyError(f"no input contract for {name!r}: {module.__name__} defines no reads()")
    return module.reads(name, count)


def bounded_names() -> list[str]:
    """
    The functions over the digit tape: those whose module bounds their resources (:func:`resources`), in
    ``names()`` order. The evaluation's machine budget is the most any of them may need.

    Returns:
        The names.
    """
    return [name for name in names() if hasattr(sys.modules[source(name).__module__], "resources")]


def call_python(fn, *args: int, mem: list[int] | None = None):
    """
    Runs a library (or any compilable) function as plain Python, on a given tape.

    Args:
        fn: A library name or a Python function that uses a module-level ``mem``.
        args: Its arguments.
        mem: The tape (copied); zeros if None. It replaces the function module's ``mem`` during the call.

    Returns:
        ``(value, tape)``: the return value (a tuple for pairs) and the tape after the call.
    """
    fn = source(fn) if isinstance(fn, str) else fn
    scope = fn.__globals__
    missing = object()
    saved = scope.get("mem", missing)
    scope["mem"] = list(mem) if mem is not None else [0] * len(saved if saved is not missing else [0] * 128)
    try:
        value = fn(*args)
        return value, list(scope["mem"])
    finally:
        if saved is missing:
            del scope["mem"]
        else:
            scope["mem"] = saved
