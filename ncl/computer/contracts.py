r"""Decoding a call under the library's input contracts: the program and its arguments chosen together.

The call heads (:mod:`ncl.computer.call_heads`) give each call a program distribution ``π (P,)`` and, per
argument slot, a distribution over segments ``q_a (S,)``, and :func:`~ncl.computer.calls.run_chain` takes each
head's argmax on its own. So a call can run ``palindrome`` (one number) on two numbers, when the words of an
unseen wording pull the program head one way and the operands pull the pointers another.

Every digit-tape function states how many numbers its segment may hold (:func:`ncl.library.reads`:
``long_add`` two, ``palindrome`` one, a list function one or more, a graph function ``s``, ``t`` and two per
edge). Decoding under these contracts takes the most likely call whose tape is in its program's contract:

.. math::

    (p^*, s^*_1, \ldots, s^*_A) = \arg\max_{p,\,s}\; \log \pi_p + \textstyle\sum_a \log q_a(s_a)
    \quad \text{s.t.}\; \mathrm{reads}\big(p,\ \textstyle\sum_a \mathrm{numbers}(s_a)\big),

over every program and every assignment of the available segments to the slots (``S^A`` of them: 10³ for the
``mix`` chain). A program that is no digit-tape function (the register programs: ``gcd``, ``fib``, ...) reads no
segment and is never chosen. A row where no call fits keeps the heads' own choice.

This is a decoding rule for evaluation, built by hand from the library's contracts, not learned: it returns
one-hot choices, so no gradient reaches the heads through it. Training is unchanged.

Shapes: B rows, P programs, A argument slots, S segments, C cells.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ncl import library
from ncl.library.symbols import SEP


def contract_table(names: list[str], most: int) -> torch.Tensor:
    """(P, most + 1) bool: ``[p, c]`` whether program ``names[p]`` may run on a tape of ``c`` numbers
    (:func:`ncl.library.reads`; the last column stands for ``most`` or more). A name that is no digit-tape
    function gets an all-False row."""
    if most < 1:
        raise ValueError(f"most must be >= 1, got {most}")
    tape = set(library.bounded_names())
    table = torch.zeros(len(names), most + 1, dtype=torch.bool)
    for p, name in enumerate(names):
        if name in tape:
            table[p] = torch.tensor([library.reads(name, c) for c in range(most + 1)])
    return table


def segment_numbers(cells: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """(B, S) long: the numbers each segment holds, its ``SEP`` cells. ``cells (B,S,C)`` long symbols (or
    ``(B,S,C,n)`` one-hot-like, read as argmax), ``length (B,S)`` long (cells past it are not counted)."""
    if cells.dim() == 4:
        cells = cells.argmax(-1)
    if cells.dim() != 3 or length.shape != cells.shape[:2]:
        raise ValueError(f"cells must be (B, S, C) with length (B, S), got {tuple(cells.shape)} and "
                         f"{tuple(length.shape)}")
    inside = torch.arange(cells.shape[2], device=cells.device)[None, None] < length[..., None]
    return ((cells == SEP) & inside).sum(-1)


def decode_call(pi: torch.Tensor, pointers: torch.Tensor, numbers: torch.Tensor,
                table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The most likely call in its program's contract (module docstring).

    Args:
        pi: (B, P) the program distribution.
        pointers: (B, A, S) each slot's segment distribution (0 on the segments not available).
        numbers: (B, S) long, the numbers each segment holds (:func:`segment_numbers`).
        table: (P, M + 1) bool, :func:`contract_table` (counts above M read as M).

    Returns:
        ``(pi (B,P), pointers (B,A,S), fits (B,) bool)``: one-hot choices where a call fits (``fits``), the
        inputs unchanged in the other rows.
    """
    B, P = pi.shape
    if pointers.dim() != 3 or pointers.shape[0] != B:
        raise ValueError(f"pointers must be (B, A, S) with B = {B}, got {tuple(pointers.shape)}")
    A, S = pointers.shape[1:]
    if numbers.shape != (B, S):
        raise ValueError(f"numbers must be (B, S) = {(B, S)}, got {tuple(numbers.shape)}")
    if table.shape[0] != P or table.dtype != torch.bool:
        raise ValueError(f"table must be a (P, M + 1) = ({P}, M + 1) bool tensor, got {table.dtype} "
                         f"{tuple(table.shape)}")
    log_q = torch.log(pointers.detach().double())  # (B, A, S); −inf where a segment is not available
    combos = torch.tensor(list(itertools.product(range(S), repeat=A)), device=pi.device)  # (S^A, A)
    score = sum(log_q[:, a, combos[:, a]] for a in range(A))  # (B, S^A)
    count = sum(numbers[:, combos[:, a]] for a in range(A)).clamp(max=table.shape[1] - 1)  # (B, S^A)
    allowed = table.to(pi.device)[:, count].permute(1, 0, 2)  # (B, P, S^A)
    joint = torch.log(pi.detach().double())[..., None] + score[:, None]
    joint = joint.masked_fill(~allowed, float("-inf")).flatten(1)  # (B, P · S^A)
    best, where = joint.max(-1)
    fits = best > float("-inf")
    program, combo = where // combos.shape[0], where % combos.shape[0]
    chosen_pi = F.one_hot(program, P).to(pi.dtype)
    chosen_ptr = F.one_hot(combos[combo], S).to(pointers.dtype)  # (B, A, S)
    return (torch.where(fits[:, None], chosen_pi, pi), torch.where(fits[:, None, None], chosen_ptr, pointers),
            fits)


__all__ = ["contract_table", "decode_call", "segment_numbers"]
