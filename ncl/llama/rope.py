"""Rotary position embeddings (RoPE) with the rope scalings of LLaMA checkpoints (default, linear, llama3)."""

from __future__ import annotations

import math

import torch
from torch import nn


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None, device=None) -> torch.Tensor:
    r"""Inverse frequencies of RoPE, with optional scaling.

    Default: :math:`f_i = \theta^{-2i/hd}` for i = 0 … hd/2 − 1.

    ``linear``: :math:`f_i / s`, with s = ``scaling["factor"]``.

    ``llama3`` (Llama 3.1+): with wavelength :math:`\lambda_i = 2\pi / f_i`, original context ``L`` =
    ``original_max_position_embeddings``, and factors s, α = ``low_freq_factor``, β = ``high_freq_factor``:

    - :math:`\lambda_i < L/\beta` (high frequency): :math:`f_i` unchanged;
    - :math:`\lambda_i > L/\alpha` (low frequency): :math:`f_i / s`;
    - otherwise, with :math:`\gamma = (L/\lambda_i - \alpha)/(\beta - \alpha)`:
      :math:`(1-\gamma) f_i / s + \gamma f_i`.

    The arithmetic is float32 in the same order as Hugging Face's, so the tables agree bit for bit.

    Args:
        head_dim: hd (even).
        theta: the base θ.
        scaling: ``None`` or a normalised rope-scaling dict (see ``LlamaConfig.rope_scaling``).

    Returns:
        inv_freq: (hd/2,) float32.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even int, got {head_dim!r}")
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).to(torch.float32) / head_dim
    inv_freq = 1.0 / (theta ** exponent)
    rope_type = "default" if scaling is None else scaling.get("rope_type", "default")
    if rope_type == "default":
        return inv_freq
    factor = scaling["factor"]
    if rope_type == "linear":
        return inv_freq / factor
    if rope_type != "llama3":
        raise ValueError(f"scaling rope_type {rope_type!r} is not supported")
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_len / low
    high_freq_wavelen = old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    r"""The cos/sin tables of RoPE for given positions.

    .. math::  \phi_{b,t,i} = p_{b,t}\, f_{i \bmod hd/2},\qquad \cos\phi,\ \sin\phi

    (the frequencies repeat over the two halves of the head, Hugging Face's "rotate half" layout).

    Args:
        head_dim: hd.
        theta: the base θ.
        scaling: ``None`` or a rope-scaling dict (see ``rope_inv_freq``).

    Shapes:
        position_ids: (B, T) or (T,) integers → cos, sin: (B, T, hd) (B = 1 for 1-D positions), in ``dtype``.
        Buffer ``inv_freq``: (hd/2,) float32, not saved in checkpoints.
    """

    def __init__(self, head_dim: int, theta: float, scaling: dict | None = None, device=None):
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, float(theta), scaling
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta, scaling, device=device), persistent=False)

    def reset_buffers(self, device=None) -> None:
        """Recompute ``inv_freq`` (e.g. after building the module on the meta device)."""
        device = self.inv_freq.device if device is None else device
        self.inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling, device=device)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32):
        if position_ids.dim() == 1:
            position_ids = position_ids[None]
        if position_ids.dim() != 2:
            raise ValueError(f"position_ids must have shape (B, T) or (T,), got {tuple(position_ids.shape)}")
        # Angles in float32 whatever the model dtype: bf16 positions beyond 256 would collide.
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, scaling={self.scaling}"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) over the two halves of the last axis.  x: (..., hd) → (..., hd)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    r"""Rotate queries or keys: :math:`x \cos\phi + \operatorname{rotate\_half}(x) \sin\phi`.

    Shapes:
        x: (B, heads, T, hd); cos, sin: (B, T, hd) → (B, heads, T, hd).
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin
