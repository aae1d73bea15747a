"""Grouped-query self-attention with RoPE, scaled_dot_product_attention and a KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .rope import apply_rotary


class Attention(nn.Module):
    r"""Causal grouped-query self-attention (GQA) with rotary positions.

    .. math::
        q = \mathrm{RoPE}(x W_q^\top),\quad k = \mathrm{RoPE}(x W_k^\top),\quad v = x W_v^\top \\
        \mathrm{out}_h = \operatorname{softmax}\!\Big(\frac{q_h k_{g(h)}^\top}{\sqrt{hd}} + M\Big) v_{g(h)},
        \qquad g(h) = \lfloor h / (H/G) \rfloor \\
        y = [\mathrm{out}_1 \dots \mathrm{out}_H]\, W_o^\top

    Query head h reads key/value head g(h), so G key/value heads serve H query heads. The mask M is causal, plus
    any padding mask. Uses ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        hidden_size: d.
        num_heads: H.
        num_kv_heads: G (H must be a multiple of G).
        head_dim: hd.
        layer_idx: this layer's slot in a ``KVCache``.
        bias: biases on the projections (Hugging Face ``attention_bias``).

    Shapes:
        x: (B, T, d); cos, sin: (B, T, hd) from ``RotaryEmbedding``; attn_mask: None or (B, 1, T, S) bool
        (True = attend) or float (added to the scores), with S = cached + T → y: (B, T, d).
        q_proj: (H·hd, d); k_proj, v_proj: (G·hd, d); o_proj: (d, H·hd).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, layer_idx: int = 0,
                 bias: bool = False, device=None, dtype=None):
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.layer_idx = layer_idx
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, **kw)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, **kw)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, **kw)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, **kw)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = True, cache: KVCache | None = None) -> torch.Tensor:
        """See the class docstring. ``is_causal`` is used only when ``attn_mask`` is None: True applies the
        causal mask aligned at the first position (valid when nothing is cached); False attends to every key."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        groups = self.num_heads // self.num_kv_heads
        kwargs = {}
        if groups > 1:
            # enable_gqa avoids materialising repeated keys. On CUDA a mask with enable_gqa falls back to the math
            # kernel, where repeating the keys is faster.
            if attn_mask is None or x.device.type == "cpu":
                kwargs["enable_gqa"] = True
            else:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             is_causal=bool(is_causal and attn_mask is None and T > 1), **kwargs)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
