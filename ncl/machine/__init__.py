"""The differentiable computer (DESIGN §3): values, state, instruction set, ALUs, interpreter, discrete VM.

``assemble(text, config)`` builds a :class:`Program` (an ``nn.Module`` of per-line logits);
``Program.run`` is the batched soft machine; :mod:`ncl.machine.vm` is the plain integer VM it must match
in the hard limit.
"""

from ncl.machine import vm
from ncl.machine.assembler import AssemblyError, assemble
from ncl.machine.config import MachineConfig
from ncl.machine.interpreter import RunResult
from ncl.machine.opcodes import OPCODES, Instruction
from ncl.machine.program import ExecResult, Program

__all__ = ["AssemblyError", "ExecResult", "Instruction", "MachineConfig", "OPCODES", "Program", "RunResult",
           "assemble", "vm"]
