"""One LLaMA decoder layer: pre-norm attention and pre-norm SwiGLU, each around a residual."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .cache import KVCache
from .config import LlamaConfig
from .mlp import MLP
from .norm import RMSNorm


class DecoderLayer(nn.Module):
    r"""A LLaMA decoder layer.

    .. math::
        h' = h + \mathrm{Attention}(\mathrm{RMSNorm}_1(h)),\qquad
        y = h' + \mathrm{MLP}(\mathrm{RMSNorm}_2(h'))

    Args:
        config: the model's ``LlamaConfig``.
        layer_idx: this layer's index (its slot in a ``KVCache``).

    Shapes:
        h: (B, T, d); cos, sin: (B, T, hd); attn_mask: None or (B, 1, T, S) → y: (B, T, d).
    """

    def __init__(self, config: LlamaConfig, layer_idx: int = 0, device=None, dtype=None):
        super().__init__()
        c = config
        self.self_attn = Attention(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                                   layer_idx=layer_idx, bias=c.attention_bias, device=device, dtype=dtype)
        self.mlp = MLP(c.hidden_size, c.intermediate_size, bias=c.mlp_bias, device=device, dtype=dtype)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, device=device, dtype=dtype)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, device=device, dtype=dtype)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = True, cache: KVCache | None = None) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, attn_mask, is_causal, cache)
        return h + self.mlp(self.post_attention_layernorm(h))
