"""The compiler's error type."""

from __future__ import annotations


class CompileError(Exception):
    """
    Raised when a Python function uses something outside the compiled subset (docs/design.md §4).

    Args:
        message: What is unsupported, e.g. ``"floats are not supported"``.
        lineno: The line in the source file where the construct appears, or None if unknown.
        filename: The source file, or None if unknown.
        function: The name of the function being compiled, or None.

    The string form is ``"<file>:<line>: in <function>: <message>"``, so the line number is always visible.
    """

    def __init__(self, message: str, lineno: int | None = None, filename: str | None = None,
                 function: str | None = None) -> None:
        self.message = message
        self.lineno = lineno
        self.filename = filename
        self.function = function
        where = []
        if filename is not None or lineno is not None:
            where.append(f"{filename or '<source>'}:{lineno if lineno is not None else '?'}")
        if function is not None:
            where.append(f"in {function}()")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ExecutionError(RuntimeError):
    """
    Raised when a compiled function cannot be run to completion: its discrete run does not halt within the step
    cap, or a stack overflows (recursion deeper than the machine's stacks).
    """
