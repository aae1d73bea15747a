r"""Reference (pure PyTorch) soft stack update: the executable spec of :func:`ncl_kernels.stack_update`.

docs/design.md §3 step 6 with the decisions of ``docs/machine.md``: the pointer ``p`` over ``S`` positions counts
the items (position 0 = empty, slot 0 a sentinel that a push never reaches), and both moves saturate:

.. math::
    \mathrm{up}(p)_s = p_{s-1}\ (0 < s < S-1),\quad \mathrm{up}(p)_0 = 0,\quad
    \mathrm{up}(p)_{S-1} = p_{S-2} + p_{S-1};\qquad
    \mathrm{down}(p)_s = p_{s+1}\ (0 < s < S-1),\quad \mathrm{down}(p)_0 = p_0 + p_1,\quad
    \mathrm{down}(p)_{S-1} = 0

.. math::
    p' = (1 - u - o)\,p + u\,\mathrm{up}(p) + o\,\mathrm{down}(p),\qquad
    \text{slot}_s' = \text{slot}_s + u\,\mathrm{up}(p)_s\,(\text{item} - \text{slot}_s)

Differentiable in every input, float64-capable.
"""

from __future__ import annotations

import torch


def up(p: torch.Tensor) -> torch.Tensor:
    """Move a pointer one position up, saturating at the top. ``(B, S) -> (B, S)``, ``S >= 2``."""
    zero = torch.zeros_like(p[:, :1])
    return torch.cat([zero, p[:, :-2], p[:, -2:-1] + p[:, -1:]], dim=1)


def down(p: torch.Tensor) -> torch.Tensor:
    """Move a pointer one position down, saturating at the bottom. ``(B, S) -> (B, S)``, ``S >= 2``."""
    zero = torch.zeros_like(p[:, :1])
    return torch.cat([p[:, :1] + p[:, 1:2], p[:, 2:], zero], dim=1)


def stack_update(slots: torch.Tensor, ptr: torch.Tensor, push: torch.Tensor, pop: torch.Tensor,
                 item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One soft push/pop step.

    Args:
        slots: ``(B, S, W)`` the stack's slots.
        ptr: ``(B, S)`` the pointer ``p``.
        push: ``(B,)`` push weight ``u``.
        pop: ``(B,)`` pop weight ``o``.
        item: ``(B, W)`` what a push writes.

    Returns:
        ``(slots', ptr', overflow, underflow)``: ``(B, S, W)``, ``(B, S)``, ``u·p_{S-1}`` and ``o·p_0``
        (``(B,)`` each: a push onto a full stack, which overwrites the top item, and a pop from an empty one).
    """
    raised = up(ptr)
    new_ptr = (1 - push - pop)[:, None] * ptr + push[:, None] * raised + pop[:, None] * down(ptr)
    # soft_write(slots, raised, item, push), spelled out as ncl_kernels.memory.reference.soft_write does.
    a = (push[:, None] * raised)[:, :, None]
    new_slots = slots + a * (item[:, None, :] - slots)
    return new_slots, new_ptr, push * ptr[:, -1], pop * ptr[:, 0]
