"""The argument heads' sources, and the register file they fill.

Register r_k (k = 1..A) is a mixture, chosen by a head on the last prompt token, over sources: the first
``arg_cells`` tape cells, the tape length (the write pointer's final position read as a value) and the value 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Arguments(NamedTuple):
    """What :meth:`NeuralComputer.arguments <ncl.computer.NeuralComputer.arguments>` returns: ``args (B,A,n)``
    (hard forward with straight-through), ``soft (B,A,n)`` (the mixtures), ``weights (B,A,S)`` (each
    register's source weights) and ``source_values (B,S)`` (each source's argmax value)."""

    args: torch.Tensor
    soft: torch.Tensor
    weights: torch.Tensor
    source_values: torch.Tensor


def sources(mem: torch.Tensor, length: torch.Tensor, arg_cells: int) -> torch.Tensor:
    """The argument sources (B, S = arg_cells + 2, n): the leading tape cells of ``mem (B,C,n)``, the tape length
    (the write pointer ``length (B,C)``: position c is the value c) and the value 0."""
    B, C, n = mem.shape
    length_value = F.pad(length, (0, n - C))
    zero = F.one_hot(torch.zeros(B, dtype=torch.long, device=mem.device), n).to(mem.dtype)
    return torch.cat([mem[:, :arg_cells], length_value[:, None], zero[:, None]], 1)


def initial_registers(args: torch.Tensor, registers: int) -> torch.Tensor:
    """The register file (B, K, n) a run starts from: r1..rA hold ``args (B,A,n)``, every other register 0."""
    B, A, n = args.shape
    regs = F.one_hot(torch.zeros(B, registers, dtype=torch.long, device=args.device), n).to(args.dtype)
    return torch.cat([regs[:, :1], args, regs[:, 1 + A:]], 1)


__all__ = ["Arguments", "initial_registers", "sources"]
