"""The machine's language layer (docs/design.md §3): the assembler, programs, the discrete VM and the run.

``assemble(text, config)`` builds a :class:`Program` (an ``nn.Module`` of per-line logits);
``Program.run`` is the batched soft machine, with its choice of backward (:mod:`ncl.machine.run`);
:mod:`ncl.machine.vm` is the plain integer VM it must match in the hard limit. The machine itself (its
config, state, step and whole-run kernels) is the kernel layer's :mod:`ncl_kernels.machine`.
"""

from ncl.machine import vm
from ncl.machine.assembler import AssemblyError, assemble
from ncl.machine.instructions import Instruction
from ncl.machine.program import ExecResult, Program
from ncl.machine.run import RunResult
from ncl_kernels.isa import OPCODES
from ncl_kernels.machine import MachineConfig

__all__ = ["AssemblyError", "ExecResult", "Instruction", "MachineConfig", "OPCODES", "Program", "RunResult",
           "assemble", "vm"]
