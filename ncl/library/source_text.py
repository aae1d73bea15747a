"""Functions from source text: ``ncl.compile`` and ``ncl.Library`` take Python source as well as function objects.

``inspect`` finds no source for a function defined in a REPL or by ``exec``, and the compiler reads source. So
the text is executed into a fresh namespace under a file name of its own, and the text is registered under that
name in :mod:`linecache`, where ``inspect`` looks: the functions then compile like any other, and a compile error
names the function and its line in the text.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
from typing import Callable


def define(text: str, filename: str | None = None) -> dict[str, Callable]:
    """Execute ``text`` (Python source) and return the functions it defines at top level, in order.

    Args:
        text: the source.
        filename: the name errors report (default ``<ncl source HASH>``, from the text).

    Returns:
        name -> function.

    Raises:
        ValueError: ``text`` is not a str, does not parse, or defines no function.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be Python source (a str), got {type(text).__name__}")
    if filename is None:
        filename = f"<ncl source {hashlib.sha256(text.encode()).hexdigest()[:12]}>"
    try:
        code = compile(text, filename, "exec")
    except SyntaxError as exc:
        raise ValueError(f"{filename}:{exc.lineno}: the source does not parse: {exc.msg}") from None
    lines = text.splitlines(keepends=True)
    # what inspect.getsource reads: an entry without a modification time is never invalidated by checkcache
    linecache.cache[filename] = (len(text), None, lines, filename)
    namespace = {"__name__": f"ncl_source_{abs(hash(filename))}", "__file__": filename}
    exec(code, namespace)  # noqa: S102 - the caller's own source, run as the caller asked
    functions = {name: f for name, f in namespace.items()
                 if inspect.isfunction(f) and f.__code__.co_filename == filename}
    if not functions:
        raise ValueError(f"{filename}: the source defines no function")
    return functions


__all__ = ["define"]
