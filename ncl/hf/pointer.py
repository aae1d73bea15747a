"""The copy output of an :class:`~ncl.hf.AugmentedModel` (``copy=True``): a pointer-generator mixture (See et al.
2017), as :class:`ncl.augmented.AugmentedLlama` has it, printed through the tokenizer's own tokens.

At a read position the readout carries the class of a tape cell (its digit, its symbol, or "other") for r0 and for
the cell under the read pointer. The output distribution is ``p = g·copy + (1 − g)·softmax(logits)``: ``copy`` puts
the class on the token that spells it (a digit on the tokenizer's one-token ``"0"``..``"9"``, ``SEP`` on ``" "``,
``END`` on end-of-sequence, the sign and the comparisons on ``"-"``, ``"<"``, ``"="``, ``">"``), "other" on the
LM's own distribution; ``g`` and the choice between r0 and the cell are learned gates on the final hidden state.
The model's logits are then these log-probabilities. Answers are then written one digit per token.
"""

from __future__ import annotations

import torch
from torch import nn

from ncl.hf.tokens import single_token
from ncl.library.symbols import END, SYMBOL_TEXT, TAPE_SYMBOLS


class CopyHead(nn.Module):
    """Gates and token ids of the copy (module docstring).

    Args:
        hidden_size: d of the final hidden states.
        tokenizer: the model's tokenizer: ``"0"``..``"9"``, ``" "``, ``"-"``, ``"<"``, ``"="``, ``">"`` must each be one
            token, and it needs an end-of-sequence token (ValueError otherwise).
    """

    def __init__(self, hidden_size: int, tokenizer):
        super().__init__()
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("copy: the tokenizer needs an end-of-sequence token (eos_token_id), which END prints")
        digits = [single_token(tokenizer, str(d), "the digit") for d in range(10)]
        symbols = [eos if s == END else single_token(tokenizer, SYMBOL_TEXT[s], "the tape symbol")
                   for s in TAPE_SYMBOLS]
        self.register_buffer("digit_ids", torch.tensor(digits), persistent=False)
        self.register_buffer("symbol_ids", torch.tensor(symbols), persistent=False)
        self.gates = nn.Linear(hidden_size, 2)  # [copy gate g, source: r0 (vs the tape cell)]

    def forward(self, logits: torch.Tensor, h: torch.Tensor, print_r0: torch.Tensor, print_cell: torch.Tensor,
                read: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the mixture: ``logits (B,T,V)``, ``h (B,T,d)`` final hidden states, ``print_r0``
        and ``print_cell (B,T,17)`` (digits, the 6 symbols, "other"; zero outside the read positions), ``read
        (B,T)`` → (B,T,V)."""
        gates = torch.sigmoid(self.gates(h.to(self.gates.weight.dtype)).float())
        g, src = gates[..., 0] * read.float(), gates[..., 1:]
        spelled = src * print_r0.float() + (1 - src) * print_cell.float()
        p_lm = torch.softmax(logits.float(), -1)
        copy = spelled[..., -1:] * p_lm  # "other" (or no readout): what the LM says
        copy = copy.index_add(-1, self.digit_ids, spelled[..., :10])
        copy = copy.index_add(-1, self.symbol_ids, spelled[..., 10:10 + len(TAPE_SYMBOLS)])
        p = g[..., None] * copy + (1 - g[..., None]) * p_lm
        return torch.log(p.clamp_min(1e-30))


__all__ = ["CopyHead"]
