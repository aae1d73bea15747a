"""``LlamaModel`` (the decoder stack) and ``LlamaForCausalLM`` (stack plus LM head).

Parameter names equal Hugging Face's, so a transformers ``state_dict`` loads as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .checkpoint import load_pretrained, save_pretrained
from .config import LlamaConfig
from .generation import greedy_generate
from .layer import DecoderLayer
from .norm import RMSNorm
from .rope import RotaryEmbedding

# Label value that the loss ignores (Hugging Face's convention).
IGNORE_INDEX = -100


@dataclass
class LayerContext:
    """Everything the decoder layers need besides the hidden states, computed once per forward.

    Fields:
        cos, sin: (B or 1, T, hd) RoPE tables, float32.
        attn_mask: None or (B, 1, T, S) bool (True = attend) or float (added to scores).
        is_causal: with ``attn_mask`` None, whether to apply the plain causal mask.
        position_ids: (B or 1, T) the positions used.
        cache: the ``KVCache`` or None.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    attn_mask: torch.Tensor | None
    is_causal: bool
    position_ids: torch.Tensor
    cache: KVCache | None


class LlamaModel(nn.Module):
    r"""The LLaMA decoder stack: token embedding, ``num_hidden_layers`` ``DecoderLayer`` s and a final RMSNorm.

    .. math::  h_0 = E[\text{ids}],\quad h_{\ell+1} = \mathrm{Layer}_\ell(h_\ell),\quad
               y = \mathrm{RMSNorm}(h_L)

    ``forward`` runs all of it. The pieces are public so that a caller can stop between layers, change the hidden
    states, and go on (``ncl.AugmentedLlama`` injects machine readouts this way)::

        ctx = model.context(h, attention_mask=mask)            # RoPE tables and mask, once
        h = model.run_layers(model.embed(ids), 0, k, context=ctx)
        h = h + injected                                       # (B, T, d), e.g. at answer positions only
        y = model.final_norm(model.run_layers(h, k, None, context=ctx))

    which equals ``model(ids, attention_mask=mask)`` when nothing is injected.

    Args:
        config: a ``LlamaConfig``.

    Shapes:
        input_ids: (B, T) int64; inputs_embeds: (B, T, d); attention_mask: (B, S) with 1 = token, 0 = padding, S =
        cached + T (or a ready (B, 1, T, S) mask); position_ids: (B, T) or (T,) → (B, T, d).
    """

    def __init__(self, config: LlamaConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        pad = config.pad_token_id
        padding_idx = pad if isinstance(pad, int) and 0 <= pad < config.vocab_size else None
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=padding_idx,
                                         device=device, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(config, i, device=device, dtype=dtype)
                                    for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, device=device, dtype=dtype)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta, config.rope_scaling, device=device)

    # ------------------------------------------------------------------ pieces

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings.  input_ids: (B, T) int64 → (B, T, d)."""
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be an int64 tensor of shape (B, T), got {input_ids.dtype} "
                             f"{tuple(input_ids.shape)}")
        return self.embed_tokens(input_ids)

    def context(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                start: int = 0) -> LayerContext:
        """The RoPE tables and the attention mask for hidden states ``h`` (B, T, d).

        Args:
            h: (B, T, d) hidden states (only their shape, device and dtype are read).
            attention_mask: None, (B, S) with 1 = attend and 0 = padding over the S = cached + T positions, or a
                ready (B or 1, 1, T, S) bool (True = attend) or additive float mask.
            position_ids: (B, T) or (T,); default ``cached + arange(T)``.
            cache: a ``KVCache``; its length at layer ``start`` is the number of cached positions.
            start: the first layer this context will run (so that the cached length is read before that layer
                appends to the cache).

        With a padding mask, a padded query position also attends to itself: its output is meaningless either way,
        and this keeps every softmax row non-empty (no NaN).
        """
        if h.dim() != 3 or h.shape[-1] != self.config.hidden_size:
            raise ValueError(f"h must have shape (B, T, {self.config.hidden_size}), got {tuple(h.shape)}")
        B, T, _ = h.shape
        past = cache.length(start) if cache is not None else 0
        S = past + T
        device = h.device
        if position_ids is None:
            position_ids = torch.arange(past, S, device=device)[None]
        else:
            if position_ids.dim() == 1:
                position_ids = position_ids[None]
            if position_ids.dim() != 2 or position_ids.shape[1] != T or position_ids.shape[0] not in (1, B):
                raise ValueError(f"position_ids must have shape ({B}, {T}) or ({T},), got "
                                 f"{tuple(position_ids.shape)}")
        cos, sin = self.rotary_emb(position_ids)

        attn_mask, is_causal = None, past == 0
        if attention_mask is not None and attention_mask.dim() == 4:
            if (attention_mask.shape[0] not in (1, B) or attention_mask.shape[2:] != (T, S)
                    or attention_mask.shape[1] not in (1, self.config.num_attention_heads)):
                raise ValueError(f"a 4-D attention_mask must have shape ({B}, 1, {T}, {S}), got "
                                 f"{tuple(attention_mask.shape)}")
            attn_mask, is_causal = attention_mask, False
        elif attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != (B, S):
                raise ValueError(f"attention_mask must have shape (B, cached + T) = ({B}, {S}), got "
                                 f"{tuple(attention_mask.shape)}")
            keep = attention_mask.to(torch.bool)
            if not bool(keep.all()):
                query_pos = torch.arange(past, S, device=device)
                key_pos = torch.arange(S, device=device)
                causal = key_pos[None, :] <= query_pos[:, None]                        # (T, S)
                attn_mask = causal[None] & keep[:, None, :]                           # (B, T, S)
                attn_mask = (attn_mask | (key_pos[None, :] == query_pos[:, None]))[:, None]
                is_causal = False
        if attn_mask is None and past > 0 and T > 1:
            # Causal mask offset by the cached length: SDPA's is_causal aligns at the top-left corner.
            query_pos = torch.arange(past, S, device=device)
            attn_mask = (torch.arange(S, device=device)[None, :] <= query_pos[:, None])[None, None]
        return LayerContext(cos, sin, attn_mask, is_causal, position_ids, cache)

    def run_layers(self, h: torch.Tensor, start: int = 0, end: int | None = None, *,
                   context: LayerContext | None = None, attention_mask: torch.Tensor | None = None,
                   position_ids: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """Run decoder layers ``start … end−1`` (``end`` None = all) on ``h``: (B, T, d) → (B, T, d).

        Pass a ``context`` from ``context()``, or the arguments to build one (``attention_mask``,
        ``position_ids``, ``cache``, with the meaning documented there), not both. No final norm is applied.
        """
        n = len(self.layers)
        end = n if end is None else end
        if not 0 <= start <= end <= n:
            raise ValueError(f"start and end must satisfy 0 <= start <= end <= {n}, got {start}, {end}")
        if context is None:
            context = self.context(h, attention_mask, position_ids, cache, start=start)
        elif attention_mask is not None or position_ids is not None or cache is not None:
            raise ValueError("pass either context or attention_mask/position_ids/cache, not both")
        c = context
        for layer in self.layers[start:end]:
            h = layer(h, c.cos, c.sin, c.attn_mask, c.is_causal, c.cache)
        return h

    def final_norm(self, h: torch.Tensor) -> torch.Tensor:
        """The final RMSNorm.  h: (B, T, d) → (B, T, d)."""
        return self.norm(h)

    # ------------------------------------------------------------------ whole stack

    def forward(self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Normalised last hidden states (B, T, d) of ``input_ids`` (B, T) or ``inputs_embeds`` (B, T, d)."""
        h = self._input_states(input_ids, inputs_embeds)
        return self.final_norm(self.run_layers(h, attention_mask=attention_mask, position_ids=position_ids,
                                               cache=cache))

    def _input_states(self, input_ids, inputs_embeds) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            return self.embed(input_ids)
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(f"inputs_embeds must have shape (B, T, {self.config.hidden_size}), got "
                             f"{tuple(inputs_embeds.shape)}")
        return inputs_embeds

    def reset_buffers(self, device=None) -> None:
        """Recompute the RoPE buffer (after building on the meta device)."""
        self.rotary_emb.reset_buffers(device)


@dataclass
class CausalLMOutput:
    """Output of ``LlamaForCausalLM.forward``.

    Fields:
        logits: (B, T', V), T' = T or ``logits_to_keep``.
        loss: scalar next-token cross-entropy when ``labels`` were given, else None.
        cache: the ``KVCache`` passed in (updated), or None.
        hidden_states: (B, T, d) the normalised last hidden states.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    cache: KVCache | None = None
    hidden_states: torch.Tensor | None = None


class LlamaForCausalLM(nn.Module):
    r"""LLaMA3 language model: ``LlamaModel`` plus a linear LM head (optionally tied to the embedding).

    .. math::  \text{logits} = \mathrm{LlamaModel}(\text{ids})\, W_{head}^\top,\qquad
               W_{head} = E \text{ when tied}

    A drop-in ``nn.Module`` whose parameter names, config and checkpoints are Hugging Face's. See
    ``LlamaModel`` for running the layers piecewise (``self.model``), and ``logits_from_hidden`` for the head.

    Args:
        config: a ``LlamaConfig``.
        device, dtype: where and in what dtype to create the parameters.

    Shapes:
        input_ids: (B, T) int64 or inputs_embeds (B, T, d); attention_mask: (B, S), S = cached + T;
        position_ids: (B, T); labels: (B, T) int64 with ``IGNORE_INDEX`` (−100) ignored → logits (B, T, V).
    """

    def __init__(self, config: LlamaConfig, device=None, dtype=None):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise ValueError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.model = LlamaModel(config, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, device=device, dtype=dtype)
        if str(device) != "meta":
            self.reset_parameters()
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with the LM head when ``config.tie_word_embeddings``."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def reset_parameters(self) -> None:
        """Hugging Face's init: linear and embedding weights N(0, ``initializer_range``²), biases 0, norms 1."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, RMSNorm):
                module.reset_parameters()

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """LM head.  h: (B, T, d) normalised hidden states → logits (B, T, V)."""
        return self.lm_head(h)

    def forward(self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None, labels: torch.Tensor | None = None,
                logits_to_keep: int = 0) -> CausalLMOutput:
        """Logits of every position (or of the last ``logits_to_keep`` ones when it is > 0).

        With ``labels`` (B, T), ``loss`` is the mean cross-entropy of predicting ``labels[:, t+1]`` from
        position t, skipping labels equal to −100 (the Hugging Face convention).
        """
        h = self.model(input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                       position_ids=position_ids, cache=cache)
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        logits = self.logits_from_hidden(h[:, -logits_to_keep:] if logits_to_keep else h)
        loss = None
        if labels is not None:
            if labels.shape != h.shape[:2]:
                raise ValueError(f"labels must have shape {tuple(h.shape[:2])}, got {tuple(labels.shape)}")
            if logits_to_keep:
                raise ValueError("labels need the logits of every position: leave logits_to_keep at 0")
            loss = causal_lm_loss(logits, labels)
        return CausalLMOutput(logits=logits, loss=loss, cache=cache, hidden_states=h)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 32, *,
                 attention_mask: torch.Tensor | None = None, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Greedy decoding; see ``ncl.llama.generation.greedy_generate``.  input_ids: (B, T) → (B, T + N)."""
        return greedy_generate(self, input_ids, max_new_tokens, attention_mask=attention_mask,
                               eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=use_cache)

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None, strict: bool = True) -> "LlamaForCausalLM":
        """Load a local Hugging Face checkpoint; see ``ncl.llama.checkpoint.load_pretrained``."""
        return load_pretrained(cls, path, dtype=dtype, device=device, strict=strict)

    def save_pretrained(self, path, max_shard_size: int | str = "5GB") -> None:
        """Write a Hugging Face checkpoint; see ``ncl.llama.checkpoint.save_pretrained``."""
        save_pretrained(self, path, max_shard_size=max_shard_size)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Next-token cross-entropy: :math:`\operatorname{mean}_{t: y_{t+1} \ne -100} -\log p(y_{t+1} \mid \le t)`.

    Shapes:
        logits: (B, T, V); labels: (B, T) int64 → scalar (float32).
    """
    shifted = labels[:, 1:]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                           ignore_index=IGNORE_INDEX)
