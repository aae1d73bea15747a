"""``AugmentedLlama``: LLaMA3 with the differentiable computer between its layers (docs/design.md §5), and
``PlainLlama``, the baseline with the same interface and no computer.

``AugmentedLlama`` (B prompts, left padded so every prompt ends in the same column, answers to the right):

1. **Encode**: the first ``split`` layers of the LLaMA run on the whole sequence (causal, so the prompt's
   states do not depend on the answer).
2. **Heads, run**: a :class:`ncl.computer.NeuralComputer` reads the prompt's states and runs the library.
3. **Inject**: its readout embeddings are added to the hidden states at the answer positions (``read_mask``:
   the last prompt token and the answer tokens, i.e. every position that predicts an answer token).
4. **Decode**: the remaining layers, the final norm and the LM head.

With ``computer_config.digit_tokens`` (the ids of ``"0"``..``"9"``; ``writer="digits"``), numbers go through the
computer only, so digits never seen in training are read and written like the others:

- every digit token enters the LLaMA as one shared learned embedding (the computer reads its value from the id);
- the output at a read position is a pointer-generator mixture (See et al. 2017):
  ``p = g·copy + (1 − g)·softmax(logits)``, where ``copy`` puts the digit under the readout's digit pointer
  on that digit's token (and defers to the LM where the pointer reads "end"), ``g`` is a learned gate and a
  second learned gate chooses between r0 and the tape cell. ``logits`` are then these log-probabilities.
  With ``computer_config.symbol_tokens`` (``writer="cells"``) ``copy`` also puts a tape symbol on the token
  that spells it (the list separator, the sign, a comparison, and ``END`` on end-of-sequence), so the whole
  answer, its end included, can be copied from the tape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncl.llama import LlamaConfig, LlamaForCausalLM
from ncl.llama.generation import greedy_decode, greedy_generate
from ncl.computer import ComputerConfig, NeuralComputer
from ncl.computer.call_heads import LocalWords, collapse_numbers
from ncl.computer.config import ENCODER_VIEWS
from ncl.computer.word_encoder import PretrainedWords


def _lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy; ``labels`` (B,T) is already aligned to ``logits`` (B,T,V) and −100 is ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


class PlainLlama(nn.Module):
    """The baseline: a :class:`~ncl.llama.LlamaForCausalLM` with :class:`AugmentedLlama`'s interface.

    ``forward(input_ids (B,T), attention_mask (B,T), read_mask (B,T), labels=None)`` → dict with ``logits``
    (B,T,V) and ``loss`` (when labels are given; labels are aligned with the logits: ``labels[:, t]`` is the
    token predicted at t). ``read_mask`` is ignored.
    """

    has_computer = False

    def __init__(self, llama_config: LlamaConfig):
        super().__init__()
        self.llama = LlamaForCausalLM(llama_config)

    def forward(self, input_ids, attention_mask, read_mask=None, labels=None, computer_state=None, max_steps=None):
        logits = self.llama(input_ids, attention_mask=attention_mask).logits
        out = {"logits": logits, "computer": None}
        if labels is not None:
            out["loss"] = _lm_loss(logits, labels)
        return out

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_id: int, max_steps=None,
                 use_cache: bool = True):
        """Greedy answers to left-padded prompts ``input_ids (B,P)`` with a KV cache (``use_cache=False``: by
        recomputation): ``(tokens (B, ≤max_new_tokens), None)``, rows that finished filled with
        ``eos_token_id``. RoPE sees only relative positions, so the padding-aware positions of the cached decoder
        give the tokens of a full recomputation (``tests/test_augmented.py``)."""
        tokens = greedy_generate(self.llama, input_ids, max_new_tokens, attention_mask=attention_mask,
                                 eos_token_id=eos_token_id, use_cache=use_cache)
        return tokens[:, input_ids.shape[1]:], None


class AugmentedLlama(nn.Module):
    """LLaMA3 with a :class:`~ncl.computer.NeuralComputer` after layer ``split``.

    Args:
        llama_config: the LLaMA's configuration.
        computer_config: the computer's (default :class:`~ncl.computer.ComputerConfig`).
        split: layers that encode before the computer runs (default: half, at least 1).

    ``forward(input_ids (B,T), attention_mask (B,T), read_mask (B,T), labels=None, computer_state=None)`` →
    dict with ``logits`` (B,T,V), ``computer`` (:class:`~ncl.computer.ComputerOutput`) and ``loss``.
    ``read_mask`` marks the positions that predict answer tokens and must leave at least one prompt token
    before them (:class:`~ncl.computer.NeuralComputer`).

    Example::

        >>> import torch
        >>> from ncl.augmented import AugmentedLlama
        >>> from ncl.computer import ComputerConfig
        >>> from ncl.llama import LlamaConfig
        >>> model = AugmentedLlama(LlamaConfig.preset("tiny"), ComputerConfig(max_steps=16))
        >>> input_ids = torch.randint(0, 128, (2, 7))               # 3 prompt tokens, then the answer
        >>> attention_mask = torch.ones(2, 7)
        >>> read_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]] * 2)   # the last prompt token and the answer
        >>> out = model(input_ids, attention_mask, read_mask, labels=input_ids)
        >>> out["logits"].shape                                     # (B, T, V)
        torch.Size([2, 7, 128])
        >>> out["loss"].backward()                                  # trains the LLaMA and the computer's heads
        >>> tokens, _ = model.generate(input_ids[:, :3], attention_mask[:, :3], max_new_tokens=4, eos_token_id=0)
        >>> tokens.shape[0]                                         # (B, at most max_new_tokens)
        2
    """

    has_computer = True

    def __init__(self, llama_config: LlamaConfig, computer_config: ComputerConfig | None = None,
                 split: int | None = None):
        super().__init__()
        layers = llama_config.num_hidden_layers
        split = max(1, layers // 2) if split is None else split
        if not 0 <= split <= layers:
            raise ValueError(f"split must be in 0..{layers}, got {split}")
        self.split = split
        self.llama = LlamaForCausalLM(llama_config)
        self.computer = NeuralComputer(llama_config.hidden_size, computer_config)
        ccfg = self.computer.config
        if ccfg.digit_tokens:
            if ccfg.writer not in ("digits", "cells"):
                raise ValueError("AugmentedLlama: digit_tokens needs writer='digits' or 'cells' (the copy prints its "
                                 "digits)")
            d = llama_config.hidden_size
            self.digit_embed = nn.Parameter(torch.randn(d) * llama_config.initializer_range)
            self.copy_head = nn.Linear(d, 2)  # [copy gate g, source: r0 (vs the tape cell)]
        if ccfg.word_view == "local" and self._own_word_states:
            self.local_words = LocalWords(llama_config.hidden_size)
        if ccfg.word_view in ENCODER_VIEWS and self._own_word_states:
            self.pretrained_words = PretrainedWords(llama_config.hidden_size)

    def forward(self, input_ids, attention_mask, read_mask, labels=None, computer_state=None, max_steps=None):
        logits, comp, _ = self._run(input_ids, attention_mask, read_mask, state=computer_state, max_steps=max_steps)
        out = {"logits": logits, "computer": comp}
        if labels is not None:
            out["loss"] = _lm_loss(logits, labels)
        return out

    def _run(self, input_ids, attention_mask, read_mask, *, past_mask=None, position_ids=None, cache=None,
             state=None, pointers=None, max_steps=None, last=False):
        """The model on the tokens ``input_ids (B,T)``, their ``attention_mask`` and ``read_mask`` (B,T), after
        the ``cache``'s positions (if any) → ``(logits (B,T,V), ComputerOutput, Pointers)``.

        Decoding against a ``cache`` also passes ``past_mask (B,S)``, the padding mask of all S = cached + T
        positions, the ``position_ids (B,T)``, and after the prompt the run's ``state`` and the readout's
        ``pointers`` (:meth:`NeuralComputer.forward_incremental`). ``last``: the logits of the last position
        only, (B,1,V).
        """
        m = self.llama.model
        h = m.embed(input_ids)
        digits = self.computer.config.digit_tokens
        if digits:  # every digit looks alike to the LLaMA: its value reaches the answer through the computer
            is_digit = (input_ids[..., None] == self.computer.digit_ids).any(-1)
            h = torch.where(is_digit[..., None], self.digit_embed.to(h.dtype), h)
        tokens = h  # the pointer gates read the token alone (NeuralComputer.readout)
        words, program = self._word_states(input_ids, tokens, is_digit, attention_mask, read_mask) \
            if state is None and self._own_word_states else (None, None)
        past_mask = attention_mask if past_mask is None else past_mask
        ctx = m.context(h, attention_mask=past_mask, position_ids=position_ids, cache=cache)
        h = m.run_layers(h, 0, self.split, context=ctx)
        comp, pointers = self.computer.forward_incremental(h, attention_mask, read_mask, state=state,
                                                           max_steps=max_steps, input_ids=input_ids,
                                                           pointers=pointers, token_states=tokens,
                                                           word_states=words, program_states=program)
        h = h + comp.readout.to(h.dtype)
        keep = slice(-1, None) if last else slice(None)
        h = m.final_norm(m.run_layers(h, self.split, None, context=ctx)[:, keep])
        logits = self.llama.logits_from_hidden(h)
        if digits:
            heads = comp.heads
            logits = self._copy(logits, h, heads.print_r0[:, keep], heads.print_cell[:, keep],
                                (read_mask * attention_mask)[:, keep])
        return logits, comp, pointers

    @property
    def _own_word_states(self) -> bool:
        """Whether a chain's heads pool the step's words from states of their own (:meth:`_word_states`: the
        prompt with its numbers collapsed, or the pretrained encoder's) rather than the layers' states of the
        prompt as written (``ComputerConfig.word_view``; a chain reading the step's words, numbers told by their
        tokens)."""
        c = self.computer.config
        return bool(c.calls and c.call_read == "text" and c.digit_tokens and c.word_view != "context")

    def _word_states(self, input_ids, embedded, is_digit, attention_mask, read_mask):
        """``(words, program)``: the states a chain's heads pool the step's words from and those its program
        head pools instead (None but with ``word_view="hybrid"``), (B,T,d) each, zero from the first read
        position on, where the heads do not read (in training, the answer: it is not collapsed and run again).
        ``embedded (B,T,d)`` the tokens' embeddings, ``input_ids``, ``is_digit``, ``attention_mask`` and
        ``read_mask (B,T)``.

        ``word_view="collapsed"`` (and the pointers' of ``"hybrid"``): the states of the layers below the
        computer on the prompt with every number collapsed to one digit
        (:func:`~ncl.computer.call_heads.collapse_numbers`), gathered back to the prompt's columns (a dropped
        digit takes its number's first digit's). The collapsed prompt is the same beside numbers of any length,
        so the words' states are too; its own pass, with no cache, so decoding is unchanged. ``"local"``: the
        collapsed prompt read by :class:`~ncl.computer.call_heads.LocalWords` instead of the layers;
        ``"pretrained"`` (and the program's of ``"hybrid"``): the prompt ``input_ids`` read by
        :class:`~ncl.computer.word_encoder.PretrainedWords` (which does its own replacing of the numbers)."""
        m, T, view = self.llama.model, embedded.shape[1], self.computer.config.word_view
        reads = torch.nonzero((read_mask * attention_mask).sum(0) > 0)
        P = int(reads[0]) if len(reads) else T  # (no read position: the computer's own check says so)
        pretrained = self.pretrained_words(input_ids, attention_mask, P) if view in ENCODER_VIEWS else None
        if view == "pretrained":
            return pretrained, None
        keep, kept, where = collapse_numbers(is_digit[:, :P], attention_mask[:, :P])
        h = embedded.gather(1, keep[..., None].expand(-1, -1, embedded.shape[-1]))
        if view == "local":
            h = self.local_words(h, kept)
        else:
            h = m.run_layers(h, 0, self.split, context=m.context(h, attention_mask=kept))
        return F.pad(h.gather(1, where[..., None].expand(-1, -1, h.shape[-1])), (0, 0, 0, T - P)), pretrained

    def _copy(self, logits, h, print_r0, print_cell, read):
        """Log-probabilities of the pointer-generator mixture (module docstring). logits (B,T,V), h (B,T,d),
        print_r0 and print_cell (B,T,K) (:class:`~ncl.computer.Heads`; K = 11, or 11 + the symbols the copy
        prints), read (B,T) → (B,T,V)."""
        gates = torch.sigmoid(self.copy_head(h).float())  # (B, T, 2)
        g, src = gates[..., 0] * read.float(), gates[..., 1:]
        spelled = src * print_r0.float() + (1 - src) * print_cell.float()  # (B,T,K)
        p_lm = torch.softmax(logits.float(), -1)
        copy = spelled[..., -1:] * p_lm  # "other" (or no readout): what the LM says
        copy = copy.index_add(-1, self.computer.digit_ids, spelled[..., :10])
        if self.computer.config.symbol_tokens:
            copy = copy.index_add(-1, self.computer.symbol_ids, spelled[..., 10:-1])
        p = g[..., None] * copy + (1 - g[..., None]) * p_lm
        return torch.log(p.clamp_min(1e-30))

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_id: int, max_steps=None,
                 use_cache: bool = True):
        """Greedy answers to left-padded prompts ``input_ids (B,P)``.

        Returns ``(tokens (B, ≤max_new_tokens), computer output of the prompt run)``, rows that finished filled
        with ``eos_token_id``. With ``use_cache`` the prompt runs once (both LLaMA halves against a ``KVCache``,
        the machine, the readout of its last token) and each later token runs alone: the layers against the
        cache, the readout continuing from the carried read pointers. ``use_cache=False`` recomputes the whole
        sequence for every token (the machine still runs once): the reference, same tokens
        (``tests/test_augmented.py``), and 11× slower on 80 tokens for 32 ``long_mul`` prompts of 86 tokens
        (benchmarks/RESULTS.md, "Augmented decoding").
        """
        if not use_cache:
            return _greedy(self, input_ids, attention_mask, max_new_tokens, eos_token_id, max_steps)
        step = _CachedStep(self, max_steps)
        tokens = greedy_decode(step, len(self.llama.model.layers), input_ids, max_new_tokens,
                               attention_mask=attention_mask, eos_token_id=eos_token_id)
        return tokens[:, input_ids.shape[1]:], step.first


class _CachedStep:
    """:func:`~ncl.llama.generation.greedy_decode`'s ``step`` for an :class:`AugmentedLlama` with a cache.

    The first call gets the prompt: its last token is the first read position (as in :func:`_greedy`), the
    machine runs, and its output is kept as ``first``. Later calls get one token each, a read position, and
    continue the readout from the run's state and the pointers the previous call left.

    The positions are ``greedy_decode``'s padding-aware ones where ``forward`` numbers the columns; RoPE sees only
    offsets, so both give the same logits up to rounding.
    """

    def __init__(self, model: AugmentedLlama, max_steps: int | None):
        self.model, self.max_steps = model, max_steps
        self.first, self.pointers = None, None

    def __call__(self, ids, mask, positions, cache):
        """ids (B,T), mask (B,S), positions (B,T) → logits (B,V) of the last position."""
        T = ids.shape[1]
        new = mask[:, -T:]
        read = torch.ones_like(new)
        if self.first is None:
            read[:, :-1] = 0
        state = None if self.first is None else self.first.state
        logits, comp, self.pointers = self.model._run(ids, new, read, past_mask=mask, position_ids=positions,
                                                      cache=cache, state=state, pointers=self.pointers,
                                                      max_steps=self.max_steps, last=True)
        self.first = self.first or comp
        return logits[:, -1]


def _greedy(model, input_ids, attention_mask, max_new_tokens, eos_token_id, max_steps):
    """Greedy decoding by full recomputation (the reference of the cached decoder); the machine runs once."""
    B, P = input_ids.shape
    ids, mask = input_ids, attention_mask
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    state, first = None, None
    new = []
    for _ in range(max_new_tokens):
        read = torch.zeros_like(mask)
        read[:, P - 1:] = 1
        out = model(ids, mask, read, computer_state=state, max_steps=max_steps)
        if out["computer"] is not None:
            state = out["computer"].state
            first = first or out["computer"]
        token = out["logits"][:, -1].argmax(-1)
        token = torch.where(done, torch.full_like(token, eos_token_id), token)
        new.append(token)
        done |= token == eos_token_id
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)  # tokens after EOS are dropped later
        if bool(done.all()):
            break
    return torch.stack(new, 1), first


__all__ = ["AugmentedLlama", "PlainLlama"]
