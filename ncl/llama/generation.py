"""Greedy decoding with or without a KV cache."""

from __future__ import annotations

import torch

from .cache import KVCache


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int = 32, *,
                    attention_mask: torch.Tensor | None = None, eos_token_id: int | list[int] | None = None,
                    pad_token_id: int | None = None, use_cache: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Greedy decoding: append :math:`\arg\max_v \text{logits}_{b,-1,v}` ``max_new_tokens`` times.

    Positions follow the padding mask, :math:`p_t = \sum_{s \le t} m_s - 1` (Hugging Face's rule), so a
    left-padded prompt is decoded like the unpadded one. With ``use_cache`` the prompt is run once and every later
    step feeds one token against a ``KVCache``; without it every step recomputes the whole sequence. Both give
    the same tokens.

    Args:
        model: a ``LlamaForCausalLM``.
        input_ids: (B, T) int64 prompts (left-pad them when their lengths differ).
        max_new_tokens: N ≥ 0.
        attention_mask: (B, T), 1 = token, 0 = padding; default all ones.
        eos_token_id: one id or a list. A row that emits one is finished and gets ``pad_token_id`` afterwards;
            decoding stops when every row is finished. None: never stop early.
        pad_token_id: filler for finished rows; default the first eos id.
        use_cache: decode incrementally with a KV cache.
        generator: sample each token from the softmax with it instead of taking the argmax.

    Returns:
        (B, T + N') int64, N' ≤ N (fewer only when every row finished).
    """
    def step(ids, mask, positions, cache):
        return model(ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1).logits[:, -1]

    return greedy_decode(step, len(model.model.layers), input_ids, max_new_tokens, attention_mask=attention_mask,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=use_cache,
                         generator=generator)


@torch.no_grad()
def greedy_decode(step, num_layers: int, input_ids: torch.Tensor, max_new_tokens: int, *,
                  attention_mask: torch.Tensor | None = None, eos_token_id: int | list[int] | None = None,
                  pad_token_id: int | None = None, use_cache: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`greedy_generate`'s loop for any model that can take a step:
    ``step(ids (B,T'), attention_mask (B,S), position_ids (B,T'), cache) → logits (B,V)`` of the last position,
    where ``ids`` are the tokens not yet in ``cache`` (every token when ``cache`` is None: ``use_cache=False``),
    ``attention_mask`` covers all S tokens so far and ``position_ids`` are the padding-aware positions of
    ``ids``. ``num_layers``: the ``KVCache``'s. The other arguments and the result are :func:`greedy_generate`'s.
    With ``generator``, each token is drawn from ``softmax(logits)`` with it instead of taken greedily (the
    tool-use baseline's REINFORCE samples its calls so: :mod:`ncl.training.reinforce`).
    """
    if input_ids.dim() != 2 or input_ids.dtype != torch.int64:
        raise ValueError(f"input_ids must be an int64 tensor of shape (B, T), got {input_ids.dtype} "
                         f"{tuple(input_ids.shape)}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    B, T = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have shape {tuple(input_ids.shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    attention_mask = attention_mask.to(torch.int64)
    eos = None
    if eos_token_id is not None:
        eos = torch.as_tensor(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id],
                              device=device, dtype=torch.int64)
        if pad_token_id is None:
            pad_token_id = int(eos[0])

    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache = KVCache(num_layers, capacity=T + max_new_tokens) if use_cache else None
    tokens, mask = input_ids, attention_mask
    step_ids, step_pos = input_ids, positions
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        if use_cache:
            logits = step(step_ids, mask, step_pos, cache)
        else:
            logits = step(tokens, mask, positions, None)
        if generator is None:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator)[:, 0]
        if eos is not None:
            nxt = torch.where(finished, torch.full_like(nxt, pad_token_id), nxt)
            finished = finished | torch.isin(nxt, eos)
        tokens = torch.cat((tokens, nxt[:, None]), dim=1)
        mask = torch.cat((mask, torch.ones_like(nxt[:, None])), dim=1)
        step_ids, step_pos = nxt[:, None], positions[:, -1:] + 1
        positions = torch.cat((positions, step_pos), dim=1)
        if eos is not None and bool(finished.all()):
            break
    return tokens
