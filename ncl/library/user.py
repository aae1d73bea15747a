"""``ncl.Library``: the user's own functions compiled into one library image, with the built-in library or without.

A function's calls resolve as the compiler's library functions do (``ncl.compiler.make_resolver``): to what the
name is bound to in the function's own module (so functions of one file or one source text call each other), then
to any function of the library by name (the built-in ones included). Every function gets an entry stub in the
image (a program the computer can choose), except those whose name starts with ``_`` (helpers). Compile errors are
:class:`~ncl.compiler.CompileError` naming the function and the line (in its file, or in the source text).
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Callable, Iterable

import ncl.library as builtin
from ncl.compiler import CompiledFunction, CompileError, compile_library, compile_library_function
from ncl.compiler.frontend import parse_library_function
from ncl.library.source_text import define
from ncl.machine import MachineConfig, Program, assemble


class Library:
    """A library of compiled functions: the user's (and by default the built-in ones).

    Build one with :meth:`from_functions`, :meth:`from_source` or :meth:`from_module`; give it to
    ``ncl.augment(..., library=lib)`` (or :func:`ncl.hf.install_library` for a ``NeuralComputer``).

    Attributes:
        functions: name -> Python function, every function in reach (built-ins first).
        user_names: the user's functions, in order.
        source: the user's source text (what a saved model stores beside the image), or None.
        builtins: whether the built-in library is part of it.
    """

    def __init__(self, functions: dict[str, Callable], builtins: bool = True, source: str | None = None):
        if not isinstance(functions, dict) or not functions:
            raise ValueError("functions must be a non-empty dict: name -> Python function")
        table = builtin.functions() if builtins else {}
        for name, fn in functions.items():
            if not inspect.isfunction(fn):
                raise ValueError(f"functions[{name!r}] must be a Python function, got {type(fn).__name__}")
            if fn.__name__ != name:
                raise ValueError(f"functions[{name!r}] is named {fn.__name__!r}: calls resolve by name")
            if name in table and table[name] is not fn:
                raise ValueError(f"function {name!r} has the name of a built-in library function; rename it (or "
                                 f"pass builtins=False)")
            table[name] = fn
        self.functions = table
        self.user_names = list(functions)
        self.builtins = builtins
        self.source = source if source is not None else _sources(functions.values())
        self._images: dict[MachineConfig, str] = {}
        for name in self.user_names:  # a function without source fails here, named, not at the first image
            _parse(self.functions[name])

    @classmethod
    def from_functions(cls, functions: Iterable[Callable], builtins: bool = True) -> "Library":
        """The library of ``functions`` (Python functions whose source ``inspect`` finds), with the built-in
        library unless ``builtins=False``."""
        if callable(functions):
            functions = [functions]
        functions = list(functions)
        if not functions:
            raise ValueError("functions must hold at least one function")
        table = {}
        for fn in functions:
            name = getattr(fn, "__name__", None)
            if name in table:
                raise ValueError(f"two functions are named {name!r}: calls resolve by name")
            table[name] = fn
        return cls(table, builtins=builtins)

    @classmethod
    def from_source(cls, text: str, builtins: bool = True, filename: str | None = None) -> "Library":
        """The library of every function ``text`` (Python source) defines at top level
        (:func:`ncl.library.source_text.define`)."""
        return cls(define(text, filename), builtins=builtins, source=text)

    @classmethod
    def from_module(cls, path, builtins: bool = True) -> "Library":
        """The library of every function defined in the Python file ``path`` (imported as a module of its own)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path: no Python file at {path}")
        spec = importlib.util.spec_from_file_location(f"ncl_user_library_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        functions = {name: f for name, f in vars(module).items()
                     if inspect.isfunction(f) and f.__module__ == module.__name__}
        if not functions:
            raise ValueError(f"{path}: defines no function")
        return cls(functions, builtins=builtins, source=path.read_text())

    def names(self) -> list[str]:
        """The programs of the image, in entry order: the built-in ones (if any), then the user's (not the ``_``
        helpers)."""
        user = [n for n in self.user_names if not n.startswith("_")]
        return (builtin.names() if self.builtins else []) + user

    def image_text(self, config: MachineConfig | None = None) -> str:
        """The image's assembly (compiled once per config)."""
        config = config if config is not None else MachineConfig()
        if config not in self._images:
            self._images[config] = compile_library(self.names(), self.functions, config)[0]
        return self._images[config]

    def image(self, config: MachineConfig | None = None) -> Program:
        """A fresh :class:`~ncl.machine.Program` holding every program behind an entry stub, with ``entries``:
        name -> line of its stub (run from there with the arguments in r1, r2, ...: the result is in r0)."""
        config = config if config is not None else MachineConfig()
        program = assemble(self.image_text(config), config)
        program.entries = {name: program.labels[f"{name}.entry"] for name in self.names()}
        return program

    def compile(self, name: str, config: MachineConfig | None = None) -> CompiledFunction:
        """One function alone, compiled (run it on the VM with ``f(*args)``, on the soft machine with
        ``f.execute(*args)``)."""
        if name not in self.functions:
            raise KeyError(f"no function {name!r} in this library; it has: {', '.join(self.user_names)}")
        return compile_library_function(name, self.functions, config)

    def __repr__(self) -> str:
        return f"Library({', '.join(self.user_names)}{', with the built-in library' if self.builtins else ''})"


def _parse(fn: Callable) -> None:
    try:
        parse_library_function(fn)
    except CompileError as exc:
        if "source" in exc.message and "not available" in exc.message:
            raise CompileError(f"{exc.message}; for a function defined in a REPL or by exec, pass its source "
                               f"text: ncl.Library.from_source(text) or ncl.compile(text)",
                               function=exc.function) from None
        raise


def _sources(functions) -> str | None:
    """The functions' source texts, one after the other (None if one has none)."""
    try:
        return "\n\n".join(inspect.getsource(f).rstrip() for f in functions) + "\n"
    except (OSError, TypeError):
        return None


__all__ = ["Library"]
