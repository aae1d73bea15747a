r"""The tape: the digit reader that turns prompt tokens into values, and the writer that appends them.

Every prompt token t gives a gate ``g_t`` and a value ``v_t`` (a distribution over Z_n). A write pointer ``p`` (a
distribution over cells, starting at cell 0) appends: cell c becomes ``(1 − g_t p_c) mem_c + g_t p_c v_t``, then
``p ← (1 − g_t) p + g_t shift(p)``.

With ``reader="digits"`` a token's value is the number its preceding digits spell, accumulated by a fixed base-10
recurrence on distributions (:func:`digit_values`); with ``reader="mlp"`` a head maps each token to a value.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ncl.library.symbols import SEP


class Tape(NamedTuple):
    """What :func:`append` (and :meth:`NeuralComputer.write_tape <ncl.computer.NeuralComputer.write_tape>`)
    returns: ``mem (B,C,n)``, ``length (B,C)`` (the final write pointer) and ``written (B,C)`` (mass written per
    cell, ≤ 1)."""

    mem: torch.Tensor
    length: torch.Tensor
    written: torch.Tensor


def shift(p: torch.Tensor) -> torch.Tensor:
    """Move cell c's mass to c+1 along the last dim; the last cell keeps its own (saturates)."""
    moved = F.pad(p[..., :-1], (1, 0))
    moved[..., -1] = moved[..., -1] + p[..., -1]
    return moved


def token_digits(input_ids: torch.Tensor, digit_ids: torch.Tensor) -> torch.Tensor:
    """The digit each token spells, by its id: (B, T) → (B, T, 11) one-hot (class 10: not a digit).
    ``digit_ids`` (10,) holds the ids of ``"0"``..``"9"``."""
    is_d = (input_ids[..., None] == digit_ids).float()  # (B, T, 10)
    return torch.cat([is_d, 1 - is_d.sum(-1, keepdim=True)], -1)


def times10_map(n: int) -> torch.Tensor:
    """(n, n): the one-hot map ``v ↦ 10·v mod n`` of the support, as a matrix (``dist @ map``)."""
    times10 = torch.zeros(n, n)
    times10[torch.arange(n), (10 * torch.arange(n)) % n] = 1
    return times10


def class_cells(n: int) -> torch.Tensor:
    """(11, n): the digit tape's cell for each token class: digit d → the value d, "not a digit" (class 10) →
    ``SEP`` (:mod:`ncl.library.symbols`), so ``digits (B,T,11) @ class_cells`` is each token's cell."""
    out = torch.zeros(11, n)
    out[torch.arange(10), torch.arange(10)] = 1
    out[10, SEP] = 1
    return out


def digit_values(digits: torch.Tensor, times10: torch.Tensor) -> torch.Tensor:
    """Values spelled by the digits before each token: (B,T,11) one-hot-ish digits → (B,T,n).

    ``acc_t = is_digit_t·(10·acc_{t−1} + d_t) + (1 − is_digit_t)·δ_0`` on distributions over Z_n (10· is a
    fixed map of the support, :func:`times10_map`, and + a digit is a circular shift), and the value at t is
    ``acc_{t−1}``: a number is complete at the token after its last digit, which is where the write gate fires.
    """
    B, T, _ = digits.shape
    n = times10.shape[0]
    acc = F.one_hot(torch.zeros(B, dtype=torch.long, device=digits.device), n).to(digits.dtype)
    zero = acc
    out = []
    for t in range(T):
        out.append(acc)
        shifted = acc @ times10
        rolled = torch.stack([torch.roll(shifted, k, -1) for k in range(10)], 1)  # (B, 10, n)
        grown = (digits[:, t, :10, None] * rolled).sum(1)
        is_digit = digits[:, t, :10].sum(-1, keepdim=True)
        acc = grown + (1 - is_digit) * zero
    return torch.stack(out, 1)


def append(gate: torch.Tensor, value: torch.Tensor, cells: int) -> Tape:
    """Append the gated token values to an empty tape (every cell holds 0).

    Args:
        gate: (B, T) write gates (0 outside the tokens written from).
        value: (B, T, n) each token's value.
        cells: C, the tape's cells.
    """
    B, T, n = value.shape
    mem = F.one_hot(torch.zeros(B, cells, dtype=torch.long, device=value.device), n).to(value.dtype)
    ptr = F.one_hot(torch.zeros(B, dtype=torch.long, device=value.device), cells).to(value.dtype)
    written = value.new_zeros(B, cells)
    for t in range(T):  # T is the prompt length (tens of tokens); each step is a few small ops
        w = gate[:, t, None] * ptr  # (B, C): where this token writes
        mem = mem * (1 - w[..., None]) + w[..., None] * value[:, t, None, :]
        written = written + w * (1 - written)
        ptr = (1 - gate[:, t, None]) * ptr + gate[:, t, None] * shift(ptr)
    return Tape(mem, ptr, written)


__all__ = ["Tape", "append", "class_cells", "digit_values", "shift", "times10_map", "token_digits"]
