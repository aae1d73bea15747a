"""Reading a Python function into an ``ast.FunctionDef`` with file line numbers, and checking its signature."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Callable

from .errors import CompileError


@dataclass
class ParsedFunction:
    """
    One Python function read for compilation.

    Args:
        pyfunc: The Python function object.
        name: Its ``__name__``.
        node: Its ``ast.FunctionDef``, with line numbers counted in the source file.
        params: Parameter names, in order.
        filename: The source file.
        results: How many values it returns: 1, or 2 for ``return a, b``.
        library: True for library functions (their calls resolve through their own module only).
        bindings: The names visible to it besides its locals (its module's globals and its closure cells).
    """

    pyfunc: Callable
    name: str
    node: ast.FunctionDef
    params: list[str]
    filename: str
    results: int = 1
    library: bool = False
    bindings: dict = field(default_factory=dict)

    def error(self, message: str, node: ast.AST | None = None) -> CompileError:
        """
        Builds a CompileError for this function.

        Args:
            message: What is wrong.
            node: The AST node at fault; its line number is reported (the ``def`` line if None).

        Returns:
            The CompileError (the caller raises it).
        """
        lineno = getattr(node, "lineno", None) if node is not None else self.node.lineno
        return CompileError(message, lineno=lineno, filename=self.filename, function=self.name)


def parse_function(pyfunc: Callable, library: bool = False) -> ParsedFunction:
    """
    Reads the source of a Python function and checks that its signature is in the subset.

    Args:
        pyfunc: A plain Python function (``def``), whose source ``inspect`` can find.
        library: Whether it is a library function.

    Returns:
        The ParsedFunction.

    Raises:
        CompileError: Not a function, no source, a lambda, or parameters other than plain positional ones.
    """
    if not inspect.isfunction(pyfunc):
        raise CompileError(f"can only compile Python functions, got {type(pyfunc).__name__}")
    name = pyfunc.__name__
    try:
        lines, first = inspect.getsourcelines(pyfunc)
        filename = inspect.getsourcefile(pyfunc) or "<source>"
    except (OSError, TypeError) as exc:
        raise CompileError(f"the source of {name}() is not available ({exc})", function=name) from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    # Report lines as they are in the file, not in the dedented snippet.
    ast.increment_lineno(tree, first - 1)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef):
        raise CompileError("lambdas and async functions are not supported; use a plain def", lineno=first,
                           filename=filename, function=name)
    parsed = ParsedFunction(pyfunc=pyfunc, name=name, node=node, params=[], filename=filename, library=library)
    args = node.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise parsed.error("only plain positional parameters are supported (no *args, **kwargs, keyword-only "
                           "or positional-only parameters)", node)
    if args.defaults:
        raise parsed.error("default parameter values are not supported", args.defaults[0])
    parsed.params = [a.arg for a in args.args]
    if len(set(parsed.params)) != len(parsed.params):
        raise parsed.error("repeated parameter names", node)
    parsed.results = _count_results(parsed)
    parsed.bindings = _bindings(pyfunc)
    return parsed


@functools.lru_cache(maxsize=None)
def parse_library_function(pyfunc: Callable) -> ParsedFunction:
    """
    Reads a library function, once per function object (library sources do not change while a process runs).

    Args:
        pyfunc: A function of a library (a mapping passed to ``compile``); its calls resolve through its own
            module only.

    Returns:
        The ParsedFunction, shared between compilations (never modified after parsing).
    """
    return parse_function(pyfunc, library=True)


def _count_results(parsed: ParsedFunction) -> int:
    """How many values the function returns (1, or 2 for tuples); all returns must agree."""
    counts = set()
    for sub in _walk_own_body(parsed.node):
        if isinstance(sub, ast.Return) and sub.value is not None:
            if isinstance(sub.value, ast.Tuple):
                if len(sub.value.elts) != 2:
                    raise parsed.error("only pairs can be returned as tuples (two results, in r0 and r1)", sub)
                counts.add(2)
            else:
                counts.add(1)
    if len(counts) > 1:
        raise parsed.error("every return must give the same number of results", parsed.node)
    return counts.pop() if counts else 1


def _walk_own_body(node: ast.FunctionDef):
    """Walks the function's statements and expressions without entering nested functions or lambdas."""
    stack = list(node.body)
    while stack:
        sub = stack.pop()
        yield sub
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(sub))


def _bindings(pyfunc: Callable) -> dict:
    """The names visible to the function besides its locals: closure cells over module globals."""
    names = dict(pyfunc.__globals__)
    if pyfunc.__closure__:
        for var, cell in zip(pyfunc.__code__.co_freevars, pyfunc.__closure__):
            try:
                names[var] = cell.cell_contents
            except ValueError:  # an empty cell: the enclosing variable is not assigned yet
                pass
    return names
