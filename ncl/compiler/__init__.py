"""The neural compiler (DESIGN §4): a Python subset -> assembly -> a trainable ``Program``.

``compile(fn, *helpers, config=None)`` reads ``fn`` with ``ast``, lowers it to IR on virtual registers
(``lowering``), allocates the machine's registers by liveness (``regalloc``), emits assembly with the calling
convention of docs/compiler.md (``emit``), links it with its callees behind an entry stub (``linker``) and
assembles it with ``ncl.assemble``.
"""

from .compiled import STEP_CAP, CompiledFunction
from .driver import compile, compile_library  # noqa: A004
from .errors import CompileError, ExecutionError

__all__ = ["CompileError", "CompiledFunction", "ExecutionError", "STEP_CAP", "compile", "compile_library"]
