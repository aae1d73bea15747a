"""``AugmentedLlama``: LLaMA3 with the differentiable computer between its layers (DESIGN §5), and
``PlainLlama``, the baseline with the same interface and no computer.

``AugmentedLlama`` (B prompts, left padded so every prompt ends in the same column, answers to the right):

1. **Encode**: the first ``split`` layers of the LLaMA run on the whole sequence (causal, so the prompt's
   states do not depend on the answer).
2. **Heads, run**: a :class:`ncl.nn.NeuralComputer` reads the prompt's states and runs the library.
3. **Inject**: its readout embeddings are added to the hidden states at the answer positions (``read_mask``:
   the last prompt token and the answer tokens, i.e. every position that predicts an answer token).
4. **Decode**: the remaining layers, the final norm and the LM head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncl.llama import LlamaConfig, LlamaForCausalLM
from ncl.nn import ComputerConfig, NeuralComputer


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
    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_id: int, max_steps=None):
        return _greedy(self, input_ids, attention_mask, max_new_tokens, eos_token_id, max_steps)


class AugmentedLlama(nn.Module):
    """LLaMA3 with a :class:`~ncl.nn.NeuralComputer` after layer ``split``.

    Args:
        llama_config: the LLaMA's configuration.
        computer_config: the computer's (default :class:`~ncl.nn.ComputerConfig`).
        split: layers that encode before the computer runs (default: half, at least 1).

    ``forward(input_ids (B,T), attention_mask (B,T), read_mask (B,T), labels=None, computer_state=None)`` →
    dict with ``logits`` (B,T,V), ``computer`` (:class:`~ncl.nn.ComputerOutput`) and ``loss``.
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

    def forward(self, input_ids, attention_mask, read_mask, labels=None, computer_state=None, max_steps=None):
        m = self.llama.model
        h = m.embed(input_ids)
        ctx = m.context(h, attention_mask=attention_mask)
        h = m.run_layers(h, 0, self.split, context=ctx)
        comp = self.computer(h, attention_mask, read_mask, state=computer_state, max_steps=max_steps)
        h = h + comp.readout.to(h.dtype)
        h = m.final_norm(m.run_layers(h, self.split, None, context=ctx))
        logits = self.llama.logits_from_hidden(h)
        out = {"logits": logits, "computer": comp}
        if labels is not None:
            out["loss"] = _lm_loss(logits, labels)
        return out

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_id: int, max_steps=None):
        """Greedy answers to left-padded prompts ``input_ids (B,P)``.

        Returns ``(tokens (B, ≤max_new_tokens), computer output of the prompt run)``.
        """
        return _greedy(self, input_ids, attention_mask, max_new_tokens, eos_token_id, max_steps)


def _greedy(model, input_ids, attention_mask, max_new_tokens, eos_token_id, max_steps):
    """Greedy decoding by full recomputation (answers are short); the machine runs once per prompt."""
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
