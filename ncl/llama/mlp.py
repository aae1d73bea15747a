"""The SwiGLU feed-forward block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    r"""SwiGLU feed-forward network (Shazeer, 2020), as in LLaMA.

    .. math::  y = W_{down}\,\big(\operatorname{silu}(W_{gate} x) \odot W_{up} x\big)

    Args:
        hidden_size: d.
        intermediate_size: F.
        bias: biases on the three projections (Hugging Face ``mlp_bias``).

    Shapes:
        x: (..., d) → y: (..., d).  gate_proj, up_proj: (F, d); down_proj: (d, F).
    """

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False, device=None, dtype=None):
        super().__init__()
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
