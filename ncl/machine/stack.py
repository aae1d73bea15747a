r"""Soft stacks: a bank of ``S`` slots and a pointer distribution over them (DESIGN §3 step 6).

The pointer counts the items: position 0 means "empty" and slot 0 is a sentinel that is never written
(a pop from an empty stack reads it). A push moves the pointer up and writes the slot it lands on; a
pop reads the slot under the pointer and moves it down. Both saturate at the ends:

.. math:: p' = (1 - u - o)\,p + u\,\mathrm{up}(p) + o\,\mathrm{down}(p),\qquad
          \text{slot}_s' = (1 - u\,\mathrm{up}(p)_s)\,\text{slot}_s + u\,\mathrm{up}(p)_s\,\text{item}.
"""

from __future__ import annotations

import torch

from ncl.machine._ops import soft_read, soft_write


def up(p: torch.Tensor) -> torch.Tensor:
    """Move a pointer one position up, saturating at the top.

    Args:
        p: ``(B, S)``, ``S >= 2``.

    Returns:
        ``(B, S)``: ``out_s = p_{s-1}``, with ``out_{S-1} = p_{S-2} + p_{S-1}`` and ``out_0 = 0``.
    """
    zero = torch.zeros_like(p[:, :1])
    return torch.cat([zero, p[:, :-2], p[:, -2:-1] + p[:, -1:]], dim=1)


def down(p: torch.Tensor) -> torch.Tensor:
    """Move a pointer one position down, saturating at the bottom.

    Args:
        p: ``(B, S)``, ``S >= 2``.

    Returns:
        ``(B, S)``: ``out_s = p_{s+1}``, with ``out_0 = p_0 + p_1`` and ``out_{S-1} = 0``.
    """
    zero = torch.zeros_like(p[:, :1])
    return torch.cat([p[:, :1] + p[:, 1:2], p[:, 2:], zero], dim=1)


def top(slots: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    r"""The item under the pointer, :math:`\sum_s p_s\,\text{slot}_s`.

    Args:
        slots: ``(B, S, D)``.
        p: ``(B, S)``.

    Returns:
        ``(B, D)``.
    """
    return soft_read(slots, p[:, None, :])[:, 0]


def update(slots: torch.Tensor, p: torch.Tensor, push: torch.Tensor, pop: torch.Tensor,
           item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One soft push/pop step.

    Args:
        slots: ``(B, S, D)`` the stack.
        p: ``(B, S)`` the pointer.
        push: ``(B,)`` push weight ``u``.
        pop: ``(B,)`` pop weight ``o`` (``u + o <= 1``).
        item: ``(B, D)`` what a push writes.

    Returns:
        ``(slots', p', overflow, underflow)``: ``(B, S, D)``, ``(B, S)``, and the masses ``u·p_{S-1}``
        (a push onto a full stack, which overwrites the top item) and ``o·p_0`` (a pop from an empty one),
        each ``(B,)``.
    """
    raised = up(p)
    new_p = (1 - push - pop)[:, None] * p + push[:, None] * raised + pop[:, None] * down(p)
    new_slots = soft_write(slots, raised, item, push)
    return new_slots, new_p, push * p[:, -1], pop * p[:, 0]
