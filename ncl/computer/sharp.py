"""Straight-through estimators: hard values in the forward pass, the soft values' gradients in the backward pass.

Data-dependent control flow only computes the right thing on near-one-hot inputs (docs/design.md §5), so the
computer's gates, tape values and argument registers go through these (``ComputerConfig.straight_through``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def straight_through(soft: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """One-hot of the argmax in the forward pass, the gradient of ``soft`` in the backward pass (none with
    ``grad=False``: a constant). (…, n)."""
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    # the bracket is exactly 0 forward, so the value is exactly one-hot
    return hard + (soft - soft.detach()) if grad else hard


def straight_through_gate(p: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """``p > 0.5`` as 0/1 in the forward pass, the gradient of ``p`` in the backward pass (none with
    ``grad=False``)."""
    hard = (p > 0.5).to(p.dtype)
    return hard + (p - p.detach()) if grad else hard


__all__ = ["straight_through", "straight_through_gate"]
