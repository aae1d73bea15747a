"""The readout: what the answer positions receive from a finished run.

r0 and the tape cell under a read pointer (which starts at cell 0 and advances by a gate at each read position,
reading after it advances), plus whether that cell was written, are embedded (d) for the positions in
``read_mask``. With ``writer="digits"`` the readout also carries the decimal digit of r0 and of the cell under a
digit pointer (:func:`place_pointers`): it starts at the most significant digit, advances by a gate at each digit
the answer writes and resets with the read pointer; past the last digit it reads "end" (class 10).

Both pointers are recurrences over the read positions; their value after a position (:class:`Pointers`) is all
that a later position needs from the earlier ones, which is what lets decoding add one position at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ncl.computer.config import PLACES
from ncl.computer.tape import shift


class Pointers(NamedTuple):
    """The readout's recurrent state after a position: the read pointer ``read (B,C)`` and, with
    ``writer="digits"`` (else None), the digit pointer ``place (B,PLACES)``."""

    read: torch.Tensor
    place: torch.Tensor | None


class Readout(NamedTuple):
    """What :meth:`NeuralComputer.readout <ncl.computer.NeuralComputer.readout>` returns: ``readout (B,T,d)``
    (zero outside the read positions), ``read_logit (B,T)``, and with ``writer="digits"`` (else None)
    ``digit_gate_logit (B,T)``, ``print_r0`` and ``print_cell`` (B,T,11): the digit (or 10 = "end") under the
    digit pointer of r0 and of the tape cell read, zero outside the read positions (with ``writer="cells"`` the
    two prints are filled too, from the cells themselves); ``pointers``: the :class:`Pointers` after the last
    position."""

    readout: torch.Tensor
    read_logit: torch.Tensor
    digit_gate_logit: torch.Tensor | None
    print_r0: torch.Tensor | None
    print_cell: torch.Tensor | None
    pointers: Pointers


def read_pointers(adv: torch.Tensor, first_read: int, cells: int,
                  start: torch.Tensor | None = None) -> torch.Tensor:
    """The read pointer at each position from ``first_read`` on: (B, T) advance gates → (B, T − first_read, C).
    ``start`` (B, C): the pointer before ``first_read`` (default: on cell 0)."""
    B, T = adv.shape
    ptr = start
    if ptr is None:
        ptr = F.one_hot(torch.zeros(B, dtype=torch.long, device=adv.device), cells).to(adv.dtype)
    ptrs = []
    for t in range(first_read, T):
        ptr = (1 - adv[:, t, None]) * ptr + adv[:, t, None] * shift(ptr)
        ptrs.append(ptr)
    return torch.stack(ptrs, 1)


def place_pointers(step: torch.Tensor, adv: torch.Tensor, first_read: int,
                   start: torch.Tensor | None = None) -> torch.Tensor:
    """The digit pointer at each position from ``first_read`` on: it moves to the next place where ``step``
    (B, T) fires and back to the first where the read pointer advances (``adv`` (B, T)). → (B, T', PLACES).
    ``start`` (B, PLACES): the pointer before ``first_read`` (default: on the first place)."""
    B = step.shape[0]
    first = F.one_hot(torch.zeros(B, dtype=torch.long, device=step.device), PLACES).to(step.dtype)
    place = first if start is None else start
    places = []
    for t in range(first_read, step.shape[1]):
        moved = step[:, t, None] * shift(place) + (1 - step[:, t, None]) * place
        place = adv[:, t, None] * first + (1 - adv[:, t, None]) * moved
        places.append(place)
    return torch.stack(places, 1)


def cell_digits(value: torch.Tensor, symbols: int = 0) -> torch.Tensor:
    """A digit-tape cell as a printable class: ``value (…, n)`` → (…, 11 + symbols): its mass on the digits
    0..9, on the first ``symbols`` tape symbols (cells 10.., :data:`ncl.library.symbols.TAPE_SYMBOLS`), and on
    "other" (the last class) the mass on every cell past them; with ``symbols=0`` "other" is every symbol."""
    known = 10 + symbols
    return torch.cat([value[..., :known], value[..., known:].sum(-1, keepdim=True)], -1)


def spell_table(n: int) -> torch.Tensor:
    """(n, PLACES·11): each value's decimal digits, most significant first, one-hot over 11 (10 = "end")."""
    spell = torch.zeros(n, PLACES, 11)
    for v in range(n):
        digits = [int(c) for c in str(v)] + [10] * PLACES
        spell[v, torch.arange(PLACES), torch.tensor(digits[:PLACES])] = 1
    return spell.flatten(1)


def spelled(places: torch.Tensor, value: torch.Tensor, spell: torch.Tensor) -> torch.Tensor:
    """The digit under the place pointer: ``places (B,T',PLACES)``, ``value (B,T',n)`` → (B,T',11)."""
    return torch.einsum("btp,btpk->btk", places, (value @ spell).unflatten(-1, (PLACES, 11)))


__all__ = ["Pointers", "Readout", "cell_digits", "place_pointers", "read_pointers", "spell_table", "spelled"]
