"""The neural compiler (docs/design.md §4): a Python subset -> assembly -> a trainable ``Program``.

``compile(fn, *helpers, config=None, library=None)`` reads ``fn`` with ``ast`` (``frontend``), lowers it to IR on
virtual registers (``lowering`` for the statements, ``expressions`` for the expressions), allocates the machine's
registers by liveness (``regalloc``), emits assembly with the calling convention of docs/compiler.md (``emit``),
links it with its callees behind an entry stub (``linker``) and assembles it with ``ncl.assemble``.

The compiler knows no particular library: ``library`` is a mapping name -> Python function given by the caller.
``ncl.compile`` is ``ncl.library.compile``, which passes ``ncl.library``'s functions.
"""

from .compiled import STEP_CAP, CompiledFunction
from .driver import compile, compile_library, compile_library_function  # noqa: A004
from .errors import CompileError, ExecutionError

__all__ = ["CompileError", "CompiledFunction", "ExecutionError", "STEP_CAP", "compile", "compile_library",
           "compile_library_function"]
