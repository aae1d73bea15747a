"""Soft stack update: one push/pop step of a stack with a soft pointer (docs/design.md §3 step 6).

:func:`stack_update` validates its inputs, picks a backend (:mod:`ncl_kernels.dispatch`) and runs either the
pure-PyTorch reference (autograd through it) or a fused forward with a hand-written fused backward. The
machine's data stack has ``W = n`` (items are values), its return stack ``W = L`` (items are lines).
"""

from __future__ import annotations

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.checks import check_inputs
from ncl_kernels.stack import reference

__all__ = ["stack_update"]



def stack_update(slots: torch.Tensor, ptr: torch.Tensor, push: torch.Tensor, pop: torch.Tensor, item: torch.Tensor,
                 *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One soft push/pop step of a stack whose pointer counts the items (position 0 = empty).

    .. math::
        p' = (1 - u - o)\,p + u\,\mathrm{up}(p) + o\,\mathrm{down}(p),\qquad
        \text{slot}_s' = \text{slot}_s + u\,\mathrm{up}(p)_s\,(\text{item} - \text{slot}_s),

    with ``up``/``down`` moving the pointer one position and saturating at the ends
    (:mod:`ncl_kernels.stack.reference`). Slot 0 is a sentinel: ``up(p)_0 = 0``, so no push writes it.

    Args:
        slots: ``(B, S, W)`` the stack, ``S >= 2``.
        ptr: ``(B, S)`` the pointer ``p``.
        push: ``(B,)`` push weight ``u``.
        pop: ``(B,)`` pop weight ``o`` (``u + o <= 1`` in the machine; not required here).
        item: ``(B, W)`` what a push writes.
        backend: force ``"reference" | "cpp" | "triton" | "cuda"``; default: :func:`ncl_kernels.dispatch.select`.

    Returns:
        ``(slots', ptr', overflow, underflow)``: ``(B, S, W)``, ``(B, S)``, and the fault masses
        ``u·p_{S-1}`` (a push onto a full stack, which overwrites the top item) and ``o·p_0`` (a pop from an
        empty stack), ``(B,)`` each. All in the inputs' dtype, all differentiable.
    """
    sizes = check_inputs("stack_update", ("slots", slots, "B S W"), ("ptr", ptr, "B S"), ("push", push, "B"),
                         ("pop", pop, "B"), ("item", item, "B W"))
    if sizes["S"] < 2:
        raise ValueError(f"stack_update: slots must have shape (B, S, W) with S >= 2 (position 0 means empty), "
                         f"got shape {tuple(slots.shape)}")
    chosen = dispatch.select(slots.device, slots.dtype, backend)
    if chosen == "reference":
        return reference.stack_update(slots, ptr, push, pop, item)
    return _oplib.apply("stack_update", chosen, slots, ptr, push, pop, item)


def _sample(g: torch.Generator):
    """Soft slots and pointer, push and pop with u + o < 1."""
    weights = torch.softmax(torch.randn(3, 3, generator=g), -1)  # push, pop, neither
    return (torch.softmax(torch.randn(3, 5, 7, generator=g), -1), torch.softmax(torch.randn(3, 5, generator=g), -1),
            weights[:, 0].contiguous(), weights[:, 1].contiguous(), torch.softmax(torch.randn(3, 7, generator=g), -1))


_oplib.register(_oplib.OpSpec(
    name="stack_update",
    fn=stack_update,
    fwd_schema="(Tensor slots, Tensor ptr, Tensor push, Tensor pop, Tensor item) -> (Tensor, Tensor, Tensor, Tensor)",
    bwd_schema="(Tensor grad_slots, Tensor grad_ptr, Tensor grad_overflow, Tensor grad_underflow, Tensor slots,"
               " Tensor ptr, Tensor push, Tensor pop, Tensor item) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    fwd_fake=lambda slots, ptr, push, pop, item: (torch.empty_like(slots), torch.empty_like(ptr),
                                                  torch.empty_like(push), torch.empty_like(pop)),
    triton_module="ncl_kernels.stack.triton",
    num_outputs=4,
    sample=_sample,
))
