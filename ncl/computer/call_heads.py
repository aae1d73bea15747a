r"""The heads of a chain of calls (:mod:`ncl.computer.calls`), built so that one more call is the same function
again: a model trained on one- and two-call problems has no weight that only a third call would use.

- **Where call k reads.** Each call attends to the prompt with the same query, over the tokens after the
  previous call's focus (the argmax of its attention; call 1 reads the whole prompt), its scores decaying with
  the distance from that focus (a learned rate), so the nearest step phrase wins. So call k finds the k-th
  step phrase the way call 1 finds the first. ``c_k`` is the attended hidden state; ``r_k`` is what a second
  attention finds in the text after call k's focus (whether another step follows).
- **Program** and pointers read ``c_k``; **halting** reads only ``W r_k``, what follows the step.
- **Pointers** score segments by content and relative position, never by absolute index: slot a's query
  ``W_a c_k`` against a key per segment:
  - an operand: its end token's hidden state, plus an embedding of its order relative to the focus (the first
    operand after it, the second, one before it, ...); its score decays with its distance after the focus;
  - a result: an embedding of how many calls back it was made (0 is "it", the previous call's result);
  - the empty segment: a learned key.

Shapes: ``h (B,T,d)`` the prompt's normalised hidden states, ``mask (B,T)`` its real tokens, ``ends (B,T)`` 1 at
the tokens that end an operand (hard), O operands and K calls; S = 1 + O + K segments.
"""

from __future__ import annotations

import torch
from torch import nn

#: Relative orders an operand's key distinguishes: before the focus (−2, −1), then the 1st, 2nd, ... after it.
OPERAND_ORDERS = (-2, 3)
#: How many calls back a result's key distinguishes (older ones share the last).
RESULT_AGES = 4


class CallHeads(nn.Module):
    """Per-call program, pointer and halting logits (module docstring).

    Args:
        d: hidden size; programs: P, the library's entry points; slots: A, argument slots per call.
    """

    def __init__(self, d: int, programs: int, slots: int):
        super().__init__()
        self.d, self.slots = d, slots
        self.step_query = nn.Parameter(0.02 * torch.randn(d))
        self.step_key = nn.Linear(d, d, bias=False)
        self.rest_query = nn.Parameter(0.02 * torch.randn(d))
        self.rest_key = nn.Linear(d, d, bias=False)
        self.rest = nn.Linear(d, d, bias=False)
        self.program = nn.Linear(d, programs)
        self.halt = nn.Linear(d, 1)
        self.slot_query = nn.Linear(d, slots * d, bias=False)
        self.operand_key = nn.Linear(d, d, bias=False)
        self.operand_order = nn.Embedding(OPERAND_ORDERS[1] - OPERAND_ORDERS[0] + 1, d)
        self.result_age = nn.Embedding(RESULT_AGES, d)
        self.empty = nn.Parameter(0.02 * torch.randn(d))
        # a decay of each attention with the distance after the focus (softplus, per token): training shows the
        # second call's step last in its prompt; the nearest step after the focus is what a third call needs
        self.step_decay = nn.Parameter(torch.tensor(-2.0))
        self.rest_decay = nn.Parameter(torch.tensor(-2.0))
        # and of an operand's pointer score with its distance after the focus: the next step's number is further
        # away than the current step's own
        self.operand_decay = nn.Parameter(torch.tensor(-2.0))

    def _attend(self, h, keys, query, allowed, distance, decay):
        """Attention of ``query (d,)`` over ``keys (B,T,d)`` where ``allowed (B,T)``, less ``softplus(decay)`` per
        token of ``distance (B,T)`` from the focus: ``(weights (B,T), context (B,d))``; a row with nothing allowed
        gets a zero context."""
        scores = (keys @ query) / self.d ** 0.5 - nn.functional.softplus(decay) * distance
        none = ~allowed.any(-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")).masked_fill(none, 0.0), -1)
        weights = weights * (~none)
        return weights, torch.einsum("bt,btd->bd", weights, h)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, ends: torch.Tensor, operands: int,
                calls: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(program logits (B,K,P), pointer logits (B,K,A,S), halt logits (B,K))`` for K = ``calls`` and
        O = ``operands`` (S = 1 + O + K)."""
        B, T, d = h.shape
        pos = torch.arange(T, device=h.device)
        real = mask > 0
        is_end = (ends > 0.5) & real
        # the operands' end tokens, in text order (T = none), their hidden states and keys
        end_pos = torch.where(is_end, pos[None], T).sort(-1).values[:, :operands]
        if end_pos.shape[1] < operands:
            end_pos = nn.functional.pad(end_pos, (0, operands - end_pos.shape[1]), value=T)
        h_end = torch.cat([h, h.new_zeros(B, 1, d)], 1).gather(1, end_pos[..., None].expand(-1, -1, d))
        op_key = self.operand_key(h_end)  # (B, O, d)
        step_keys, rest_keys = self.step_key(h), self.rest_key(h)
        focus = torch.full((B,), -1, dtype=torch.long, device=h.device)
        pis, ptrs, halts = [], [], []
        for k in range(calls):
            distance = (pos[None] - focus[:, None] - 1).clamp(min=0).to(h.dtype)
            weights, c = self._attend(h, step_keys, self.step_query, real & (pos[None] > focus[:, None]), distance,
                                      self.step_decay)
            focus = torch.where(weights.sum(-1) > 0, weights.argmax(-1), focus)
            distance = (pos[None] - focus[:, None] - 1).clamp(min=0).to(h.dtype)
            _, r = self._attend(h, rest_keys, self.rest_query, real & (pos[None] > focus[:, None]), distance,
                                self.rest_decay)
            # the step phrase decides the program and arguments; only what follows it decides halting (read off
            # the step itself, "a step after 'then' is the last" would fit every one- and two-call problem)
            pis.append(self.program(c))
            halts.append(self.halt(self.rest(r)).squeeze(-1))
            # operand j's order relative to the focus: −1, −2 before it; 0, 1, ... after it
            after = (end_pos > focus[:, None]).long()
            rank = after.cumsum(1) - 1  # the j-th operand after the focus has rank j (for those after)
            before = (end_pos <= focus[:, None]).long()
            back = before.flip(1).cumsum(1).flip(1)  # 1 for the last operand before the focus, 2 before that
            order = torch.where(after.bool(), rank, -back).clamp(*OPERAND_ORDERS) - OPERAND_ORDERS[0]
            keys_op = op_key + self.operand_order(order)
            ages = (k - 1 - torch.arange(calls, device=h.device)).clamp(0, RESULT_AGES - 1)
            keys_res = self.result_age(ages)[None].expand(B, -1, -1)
            keys = torch.cat([self.empty.expand(B, 1, d), keys_op, keys_res], 1)  # (B, S, d)
            queries = self.slot_query(c).view(B, self.slots, d)
            scores = torch.einsum("bad,bsd->bas", queries, keys) / d ** 0.5
            far = (end_pos - focus[:, None]).clamp(min=0).to(h.dtype)  # (B, O) tokens after the focus
            far = torch.cat([far.new_zeros(B, 1), far, far.new_zeros(B, calls)], 1)
            ptrs.append(scores - nn.functional.softplus(self.operand_decay) * far[:, None])
        return torch.stack(pis, 1), torch.stack(ptrs, 1), torch.stack(halts, 1)


__all__ = ["CallHeads", "OPERAND_ORDERS", "RESULT_AGES"]
