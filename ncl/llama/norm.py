"""Root-mean-square layer normalisation."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    r"""RMSNorm (Zhang & Sennrich, 2019), as in LLaMA.

    .. math::  y = w \odot \frac{x}{\sqrt{\operatorname{mean}_i x_i^2 + \varepsilon}}

    The normalisation runs in float32 and is cast back to the input dtype before the weight is applied, which is
    the order Hugging Face's ``LlamaRMSNorm`` uses (it matters in bf16).

    Args:
        dim: d, the size of the last axis.
        eps: ε.

    Shapes:
        x: (..., d) → y: (..., d).  weight: (d,).
    """

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"x must have last dimension {self.weight.shape[0]}, got shape {tuple(x.shape)}")
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
