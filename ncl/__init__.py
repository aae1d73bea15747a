"""ncl: a LLaMA3 transformer with a differentiable computer (soft memory, registers, stacks, compiled
programs and per-step halting).

Public names are imported lazily so that ``import ncl`` stays cheap and each layer can be used alone.
"""

from __future__ import annotations

import importlib
import os

# OpenMP threads that wait for work spin by default (libgomp, which torch's CPU build uses). The kernels and
# torch's CPU ops run many short parallel regions, and on a machine whose cores other jobs hold the spinning
# threads take the CPU from the ones with work: training then ran slower with the default threads than with one
# (benchmarks/RESULTS.md, "Threads"). Waiting passively fixes that; libgomp reads the setting when torch loads,
# so it only takes effect when ncl is imported first (the `ncl` command always is), and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    # the machine (docs/design.md §3)
    "MachineConfig": "ncl.machine",
    "Program": "ncl.machine",
    "RunResult": "ncl.machine",
    "ExecResult": "ncl.machine",
    "assemble": "ncl.machine",
    "AssemblyError": "ncl.machine",
    # the compiler (docs/design.md §4)
    "compile": "ncl.library",  # the compiler with ncl.library in reach
    "Library": "ncl.library.user",  # the user's functions compiled into a library image
    "CompileError": "ncl.compiler",
    "CompiledFunction": "ncl.compiler",
    # the model layer (docs/design.md §5)
    "LlamaConfig": "ncl.llama",
    "LlamaModel": "ncl.llama",
    "LlamaForCausalLM": "ncl.llama",
    "AugmentedLlama": "ncl.augmented",
    # a user's own causal LM with the computer (docs/augmented.md, "Your own model")
    "augment": "ncl.hf",
    "AugmentedModel": "ncl.hf",
}

_SUBMODULES = ("machine", "compiler", "library", "llama", "tokenizers", "tasks", "computer", "nn", "hf", "training")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"ncl.{name}")
    raise AttributeError(f"module 'ncl' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))
