r"""The heads of a chain of calls (:mod:`ncl.computer.calls`), built so that one more call is the same function
again: a model trained on one- and two-call problems has no weight that only a third call would use.

- **Where call k reads.** A gate on every prompt token says whether a step phrase has just ended there (the
  comma of ", then"; with ``read="focus"`` also the full stop or question mark after the last step); it is
  labelled in training. With ``read="text"`` the last step always ends at the answer cue (the last token the
  heads read), and the gate reads the token and the two after it (``step_reach``; ``mix`` reads eight, on to
  the ``e`` of ``then``, as its training also has commas that end no step: :func:`ncl.tasks.compose.chatter`),
  not the context: it only has to find the commas of ", then" and ", and then", and a gate read off the
  context fired inside lists and numbers longer than any trained on. Call k's focus is the first such token
  after call k − 1's (call 1: from the prompt's start), so call k finds the k-th step the way call 1 finds the
  first.
- **Nested steps** (``nesting``). Nested wording names the calls last first: in ``add 7 to the product of 36
  and 12`` the step ``the product of 36 and 12`` runs first. Its steps end where the next phrase begins with
  ``the`` (the space after ``to``), which only the words before and after tell apart from ``Compute the product
  of``: the step-end gate then reads the tokens from :data:`STEP_WINDOW`'s first offset to its last, through
  a hidden layer, and a second output of it says whether a step end is nested (labelled in training). An
  expression (``4 + 9 * 12``) needs the hidden layer: whether a step ends after ``9`` depends on the operators
  on both sides, a conjunction: a linear gate marked every step end right on 75 % of two-call expressions
  (seed 0, 1,500 steps), this one on 98 % (docs/language.md). A step ends where this gate or the near one of
  ``read="text"`` (the token and the two after it) says so, the larger logit: the window also reads the words
  before a comma, and a two-call chain's comma always follows the prompt's first step, so the window alone
  missed the comma after a middle step (``, and then add 9 to it, then ...``), which only the words after it
  mark. Each gate learns from labels of its own, the window from every step end, the near gate from the step
  ends that close on a comma: trained through the larger logit, only the larger gate learned at a token, and
  the window, quicker, took the commas too. A row with a nested step end before its cue
  reads its steps from the last back: call 1's step runs from the last step end before the cue to the cue,
  call k's ends where call k − 1's began, and call k halts unless a step ends before its step.
  Words and counts are read as for a forward step, and pointers are offered the step's own operands only:
  read backwards, every outer step's numbers stand before the focus (a fourth call, ``the sum of``, took the
  ``26`` of ``multiply 26 by``). The direction is a hard decision, a constant to the losses.
- **Halting.** Call k halts unless a step ends after its focus: its logit is minus the largest step-end logit
  after the focus, a constant to the losses (the gate's own labels train it: through the halting labels, a
  missed step end, which leaves a call's focus short, was pushed further down). Heads that read the text
  after the step learned what fits one- and two-call problems (the second "then" is the last), and so did
  attentions that chose where a call reads, labelled or not (a second call that read the third step).
- **What the program and pointers read**, ``c_k``: with ``read="text"`` (the default), the step's words, the
  tokens after call k − 1's focus up to call k's that the tape does not hold, pooled by learned queries, plus
  an embedding of how many operands end among them (one, two, three or more); with ``nesting`` each word also
  carries its place in the step (before, between or after the step's operands: :data:`ROLES`); the words name
  the program and the operands' roles, and pooled they do not drift on prompts longer than any trained on, as
  the state at the focus does. With ``call_separators=False`` a list's inner separators (the space after each
  comma of an edge list) are not words (:func:`list_separators`): there is one per item, and a long list's
  outweighed the words that name the program at 4× (docs/labels.md). The states pooled are those of the
  prompt with every number collapsed to one digit (:func:`collapse_numbers`; ``ComputerConfig.word_view``,
  which :class:`~ncl.augmented.AugmentedLlama` runs), so a word reads the same beside a number of any length:
  read as written, ``minus`` after a 20-digit number named ``long_compare``. With ``read="focus"`` (the chains of
  configs saved before ``read`` existed): the hidden state at the focus, which has read the whole step.
- **Pointers** score segments by relative position, never by absolute index or content: slot a's query
  ``W_a c_k`` against a key per segment:
  - an operand: an embedding of its order relative to the focus (the last operand at or before it, the one
    before that, the first after it, ...). With ``read="text"`` only operands at or before the focus are
    offered: a step's operands end by its end. With ``read="focus"`` the later ones are offered too, their
    score decaying with their distance after the focus. Not its content: an end token's hidden state let the
    second call learn "the prompt's last number", right in every two-call problem and wrong for the second
    call of three;
  - the previous call's result ("it"): a learned key. Older results are not offered: the chains of
    :mod:`ncl.tasks.compose` never read them, so no training problem would teach their keys;
  - the empty segment: a learned key.

Shapes: ``h (B,T,d)`` the prompt's normalised hidden states, ``mask (B,T)`` its real tokens, ``ends (B,T)`` 1 at
the tokens that end an operand (hard), ``words (B,T)`` 1 at the tokens the tape does not hold, O operands and K
calls; S = 1 + O + K segments.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ncl.computer.config import CALL_READS

#: Relative orders an operand's key distinguishes: at or before the focus (−3, −2, −1), then the 1st, 2nd, ...
#: after it.
OPERAND_ORDERS = (-3, 3)
WORD_QUERIES = 4  #: learned queries that pool a step's words
ROLES = 3  #: a word's places in its step that a nesting chain's words carry: before, between, after its operands
COUNTS = 4  #: operand counts a step's context tells apart: none, one, two, three or more
#: The token offsets a nesting chain's step-end gate reads, relative to the token it marks: the words before a
#: nested step end (``add 7 to``; in ``86 minus 5 times 7`` the operator before a two-digit operand, whose
#: last letters tell ``plus`` and ``minus`` from ``times``) and after it (`` the p`` against ``reverse the
#: list``, `` the r`` ...; the operator after the next operand).
STEP_WINDOW = (-5, 6)
#: How a chain's program head pools the step's words: by the learned queries (the pointers always do), or their
#: plain mean, the way a pretrained sentence encoder's states are pooled into a sentence's embedding
#: (``word_view="pretrained"``: :mod:`ncl.computer.word_encoder`).
PROGRAM_POOLS = ("attention", "mean")
#: How far, in tokens to either side, a state of :class:`LocalWords` reads: two convolutions of half this width.
NGRAM = 4


def list_separators(written: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,T) bool: the separators inside the tape's lists, the real tokens not written whose neighbours on both
    sides are (the space after the comma of ``1 2, 3 4``, whose comma ends a number and is written), from
    ``written (B,T)`` and ``mask (B,T)``, the tokens written and the real ones (0/1). An operator between
    numbers (`` + ``) or a step's words (``, then``) have a word on one side, and stay words."""
    real, on = mask > 0, written > 0
    before = nn.functional.pad(on[:, :-1], (1, 0), value=False)
    after = nn.functional.pad(on[:, 1:], (0, 1), value=False)
    return real & ~on & before & after


def collapse_numbers(is_digit: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prompt with every number collapsed to its first digit, the view a chain's heads read the words in
    with ``word_view="collapsed"``: from ``is_digit (B,T)`` and the real tokens ``mask (B,T)`` (0/1), returns
    ``(keep (B,T') long, kept (B,T'), where (B,T))``: the columns each collapsed row gathers, left padded as the
    prompt is (``kept`` 0 on the padding, whose ``keep`` is 0), and the collapsed column of every token, a
    dropped digit's that of its number's first digit. T' is the longest collapsed row."""
    real = mask > 0
    later_digit = is_digit & nn.functional.pad(is_digit[:, :-1], (1, 0), value=False)
    stays = real & ~later_digit
    count = stays.sum(-1)
    width = max(int(count.max()), 1)
    rank = stays.long().cumsum(-1) - 1  # a kept token's place among its row's kept ones
    where = (rank + (width - count)[:, None]).clamp(min=0)
    cols = torch.arange(is_digit.shape[1], device=is_digit.device).expand_as(rank)
    keep = torch.zeros(is_digit.shape[0], width + 1, dtype=torch.long, device=is_digit.device)
    keep = keep.scatter(1, torch.where(stays, where, width), cols)[:, :width]  # the others land in a spare column
    kept = (torch.arange(width, device=is_digit.device)[None] >= (width - count)[:, None]).to(mask.dtype)
    return keep, kept, where


class LocalWords(nn.Module):
    """Each token's state from its neighbours alone, the words' view ``word_view="local"``: the embeddings
    ``x (B,T,d)`` plus two convolutions over the sequence (a GELU between them, each :data:`NGRAM` // 2 tokens to
    either side, so :data:`NGRAM` in all), the padding of ``mask (B,T)`` (0/1) read as zeros → (B,T,d). A
    character n-gram's features do not depend on the sentence around it, the layers' states do: the idea was
    that a word would then read the same in a template no training prompt uses. Measured on ``mix`` (3 seeds),
    held-out wording moved within the spread between seeds and one seed lost three-call problems (an ablation,
    not the default: docs/language.md)."""

    def __init__(self, d: int):
        super().__init__()
        width = NGRAM // 2 * 2 + 1
        self.grams = nn.Conv1d(d, d, width, padding=width // 2)
        self.mix = nn.Conv1d(d, d, width, padding=width // 2)
        nn.init.zeros_(self.mix.weight)  # starts as the embeddings themselves
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = (mask > 0).to(x.dtype)[:, None]  # (B, 1, T)
        y = nn.functional.gelu(self.grams(x.transpose(1, 2) * keep)) * keep
        return x + self.mix(y).transpose(1, 2)


class CallLogits(NamedTuple):
    """What :class:`CallHeads` gives: ``program (B,K,P)``, ``pointers (B,K,A,S)`` and ``halt (B,K)`` logits;
    ``step (B,T)``, the step-end gate's; with ``nesting`` (else None), ``nest (B,T)``, whether a step end is
    nested, and its two step-end gates' own logits, which the auxiliary loss labels (``step`` is their
    maximum): ``join (B,T)``, the near gate's, labelled with the step ends that close on a comma (``, then``),
    and ``window (B,T)``, the window's, labelled with every step end."""

    program: torch.Tensor
    pointers: torch.Tensor
    halt: torch.Tensor
    step: torch.Tensor
    nest: torch.Tensor | None
    join: torch.Tensor | None
    window: torch.Tensor | None


class CallHeads(nn.Module):
    """Per-call program, pointer and halting logits (module docstring).

    Args:
        d: hidden size; programs: P, the library's entry points; slots: A, argument slots per call; read: what
            the program and pointers read, one of :data:`~ncl.computer.config.CALL_READS`; nesting: whether steps
            may be read last first (needs ``read="text"``); program_pool: how the program head pools the step's
            words, one of :data:`PROGRAM_POOLS`; word_dropout: in training, the share of the step's words the
            ``"mean"`` pool leaves out (``ComputerConfig.word_dropout``); step_reach: how many tokens after it
            the near step-end gate reads (``ComputerConfig.step_reach``; more than 2 needs ``read="text"``).
    """

    def __init__(self, d: int, programs: int, slots: int, read: str = "text", nesting: bool = False,
                 program_pool: str = "attention", word_dropout: float = 0.0, step_reach: int = 2):
        super().__init__()
        if step_reach < 2 or (step_reach > 2 and read != "text"):
            raise ValueError(f"step_reach must be >= 2, and 2 but with read='text'; got {step_reach}")
        self.step_reach = step_reach
        if not 0 <= word_dropout < 1 or (word_dropout and program_pool != "mean"):
            raise ValueError(f"word_dropout must be in [0, 1), and 0 but with program_pool='mean'; got {word_dropout}")
        self.word_dropout = word_dropout
        if program_pool not in PROGRAM_POOLS or (program_pool == "mean" and read != "text"):
            raise ValueError(f"program_pool must be one of {PROGRAM_POOLS} ('mean' needs read='text'), got "
                             f"{program_pool!r}")
        self.program_pool = program_pool
        if read not in CALL_READS:
            raise ValueError(f"read must be one of {CALL_READS}, got {read!r}")
        if nesting and read != "text":
            raise ValueError("nesting needs read='text'")
        self.d, self.slots, self.read, self.nesting = d, slots, read, nesting
        if read == "text":
            self.word_query = nn.Parameter(0.02 * torch.randn(WORD_QUERIES, d))
            self.word_key = nn.Linear(d, d, bias=False)
            self.count = nn.Embedding(COUNTS, d)
        if read == "text":
            self.step_next = nn.Linear(d, 1, bias=False)  # the step-end gate's view of the next token
            self.step_next2 = nn.Linear(d, 1, bias=False)  # ... and of the one after it
        self.step_end = nn.Linear(d, 1)  # has a step phrase just ended at this token
        nn.init.constant_(self.step_end.bias, -2.0)
        self.program = nn.Linear(d, programs)
        self.slot_query = nn.Linear(d, slots * d, bias=False)
        self.operand_order = nn.Embedding(OPERAND_ORDERS[1] - OPERAND_ORDERS[0] + 1, d)
        self.previous = nn.Parameter(0.02 * torch.randn(d))
        self.empty = nn.Parameter(0.02 * torch.randn(d))
        if read == "focus":  # (with "text" the operands after the focus are not offered at all)
            # a decay of an operand's pointer score with its distance after the focus (softplus, per token): the
            # next step's number is further away than this step's own
            self.operand_decay = nn.Parameter(torch.tensor(-2.0))
        if nesting:  # (step end, nested) from the window's tokens side by side; created last, so that the other
            # heads start as a chain's without nesting does
            # a hidden layer: where an expression's step ends is a conjunction of the operators on either side
            self.step_window = nn.Sequential(nn.Linear(d * (STEP_WINDOW[1] - STEP_WINDOW[0] + 1), d), nn.GELU(),
                                             nn.Linear(d, 2))
            nn.init.constant_(self.step_window[-1].bias, -2.0)
            # a word's place in its step, before, between or after the step's operands (zero at first): whether
            # "it" stands before or after "by 36" sets the slots' order, and the words' own states, which read
            # the context, drifted in a chain's middle steps, longer than any step trained on
            self.word_role = nn.Embedding(ROLES, d)
            nn.init.zeros_(self.word_role.weight)
        if step_reach > 2:  # the near gate's view of the tokens from the third ahead on; created last, so that a
            # chain reading two ahead starts as before this option existed
            self.step_further = nn.Linear(d * (step_reach - 2), 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, ends: torch.Tensor, operands: int,
                calls: int, words: torch.Tensor | None = None,
                tokens: tuple[torch.Tensor, ...] | None = None, force: torch.Tensor | None = None,
                program_h: torch.Tensor | None = None, program_words: torch.Tensor | None = None) -> CallLogits:
        """:class:`CallLogits` for K = ``calls`` and O = ``operands`` (S = 1 + O + K). ``words`` is needed with
        ``read="text"``, whose step-end gate reads ``tokens``: (each token, the next, the one after, ...; (B,T,d)
        each; with ``nesting`` up to :data:`STEP_WINDOW`'s last offset), or ``h`` if None. ``force (B,T)``
        (long): where a step ends regardless of the gate, 1 a step end, 0 none, −1 as the gate says (the step
        search of :mod:`ncl.training.search` runs the chain again so); the gate's logits are returned as they are.
        ``program_h (B,T,d)`` and ``program_words (B,T)``: with ``program_pool="mean"``, the states and words the
        program head pools instead of ``h`` and ``words`` (both or neither; the pointers still read ``h``).
        """
        B, T, d = h.shape
        if force is not None and force.shape != (B, T):
            raise ValueError(f"force must be (B, T) = {(B, T)}, got {tuple(force.shape)}")
        if (program_h is None) != (program_words is None) or (program_h is not None and (
                self.program_pool != "mean" or program_h.shape != h.shape or program_words.shape != (B, T))):
            raise ValueError(f"program_h (B, T, d) = {tuple(h.shape)} and program_words (B, T) come together, with "
                             f"program_pool='mean'; got {None if program_h is None else tuple(program_h.shape)} and "
                             f"{None if program_words is None else tuple(program_words.shape)}")
        if program_h is None:
            program_h, program_words = h, words
        if self.program_pool == "mean" and self.training and self.word_dropout:
            program_words = program_words * (torch.rand_like(program_words) >= self.word_dropout)
        pos = torch.arange(T, device=h.device)
        real = mask > 0
        is_end = (ends > 0.5) & real
        # the operands' end tokens, in text order (T = none)
        end_pos = torch.where(is_end, pos[None], T).sort(-1).values[:, :operands]
        if end_pos.shape[1] < operands:
            end_pos = nn.functional.pad(end_pos, (0, operands - end_pos.shape[1]), value=T)
        nest_logit = join_logit = window = None
        if self.read == "text" and (tokens is not None or self.nesting):
            near = self._ahead(h if tokens is None else tokens, self.step_reach)
            step_logit = self.step_end(near[0]) + self.step_next(near[1]) + self.step_next2(near[2])
            if self.step_reach > 2:
                step_logit = step_logit + self.step_further(torch.cat(near[3:], -1))
            step_logit = step_logit.squeeze(-1)
        else:
            step_logit = self.step_end(h).squeeze(-1)
        if self.nesting:  # a step ends where either gate says so; each gate has labels of its own
            window, nest_logit = self._window(h if tokens is None else tokens).unbind(-1)
            join_logit, step_logit = step_logit, torch.maximum(step_logit, window)
        ended = step_logit.detach()  # what halting reads: a constant to the losses
        if self.read == "text":  # the last step ends at the answer cue, the last token the heads read
            ended = torch.cat([ended[:, :-1], torch.full_like(ended[:, -1:], 30.0)], 1)
        if force is not None:
            ended = torch.where(force >= 0, 60.0 * force.to(ended.dtype) - 30.0, ended)
        marks = (ended > 0) & real
        focus = torch.full((B,), -1, dtype=torch.long, device=h.device)
        # reading last first: a row with a nested step end before its cue (the cue, always a step end, is T - 1)
        backwards = ((nest_logit.detach() > 0) & marks)[:, :-1].any(-1) if self.nesting else None
        back_focus = torch.full((B,), T - 1, dtype=torch.long, device=h.device)
        back_found = torch.ones(B, dtype=torch.bool, device=h.device)
        rows = torch.arange(B, device=h.device)
        if self.read == "text":
            if words is None or words.shape != (B, T):
                raise ValueError(f"read='text' needs words of shape (B, T) = {(B, T)}")
            word_scores = torch.einsum("btd,qd->bqt", self.word_key(h), self.word_query) / d ** 0.5
        pis, ptrs, halts = [], [], []
        for k in range(calls):
            later = marks & (pos[None] > focus[:, None])
            found = later.any(-1)
            previous = focus
            focus = torch.where(found, later.float().argmax(-1), focus)  # the first mark after the last focus
            if self.nesting:  # backwards: the step from the last mark before back_focus to it
                start = torch.where(marks & (pos[None] < back_focus[:, None]), pos[None], -1).amax(-1)
                previous = torch.where(backwards, start, previous)
                focus = torch.where(backwards, back_focus, focus)
                found = torch.where(backwards, back_found, found)
                back_found = back_found & (start >= 0)
                back_focus = torch.where(start >= 0, start, back_focus)
            if self.read == "text":  # the step's words, and how many operands end in it
                step = (pos[None] > previous[:, None]) & (pos[None] <= focus[:, None]) & found[:, None]
                w = torch.softmax(word_scores.masked_fill(~(step & (words > 0))[:, None], float("-inf")), -1)
                count = (is_end & step).sum(-1).clamp(max=COUNTS - 1)
                w = w.nan_to_num(0.0)
                c = torch.einsum("bqt,btd->bd", w, h)
                if self.nesting:
                    c = c + torch.einsum("bqt,btd->bd", w, self.word_role(self._roles(is_end & step)))
                counted = self.count(count) * found[:, None].to(h.dtype)
                c = c + counted
                if self.program_pool == "mean":  # the program reads the step's words' mean, not the attention's
                    chosen = (step & (program_words > 0)).to(h.dtype)
                    mean = torch.einsum("bt,btd->bd", chosen, program_h) / chosen.sum(-1, keepdim=True).clamp(min=1)
            else:
                c = h[rows, focus.clamp(min=0)] * found[:, None].to(h.dtype)  # no step left: a zero context
            # halt unless a step ends after the focus (+30: none can, a sigmoid of 1 in fp32); detached, since
            # where a step end was missed the halting labels would push it further down
            after_focus = (pos[None] > focus[:, None]) & real
            if self.nesting:  # backwards: halt unless a step ends before this one
                after_focus = torch.where(backwards[:, None], (pos[None] <= previous[:, None]) & real, after_focus)
            halts.append(-ended.masked_fill(~after_focus, -30.0).amax(-1))
            pis.append(self.program(mean + counted if self.program_pool == "mean" else c))
            # operand j's order relative to the focus: −1, −2 at or before it; 0, 1, ... after it
            after = (end_pos > focus[:, None]).long()
            rank = after.cumsum(1) - 1  # the j-th operand after the focus has rank j (for those after)
            before = (end_pos <= focus[:, None]).long()
            back = before.flip(1).cumsum(1).flip(1)  # 1 for the last operand at or before the focus, 2 before
            order = torch.where(after.bool(), rank, -back).clamp(*OPERAND_ORDERS) - OPERAND_ORDERS[0]
            keys = torch.cat([self.empty.expand(B, 1, d), self.operand_order(order),
                              self.previous.expand(B, calls, d)], 1)  # (B, S, d)
            queries = self.slot_query(c).view(B, self.slots, d)
            scores = torch.einsum("bad,bsd->bas", queries, keys) / d ** 0.5
            far = (end_pos - focus[:, None]).clamp(min=0).to(h.dtype)  # (B, O) tokens after the focus
            far = torch.cat([far.new_zeros(B, 1), far, far.new_zeros(B, calls)], 1)
            older = torch.zeros(1 + operands + calls, dtype=torch.bool, device=h.device)
            older[1 + operands:1 + operands + max(k - 1, 0)] = True  # results before the previous call's
            hidden = older.expand(B, -1)
            if self.read == "text":  # a step's operands end at or before its end, the focus: later ones are not
                # offered (their keys, ranks after the focus that one- and two-call training rarely shows,
                # drew a third slot to the next steps' numbers)
                outside = end_pos > focus[:, None]
                if self.nesting:
                    outside = outside | (end_pos <= previous[:, None])
                hidden = hidden | torch.cat([far.new_zeros(B, 1, dtype=torch.bool), outside,
                                             far.new_zeros(B, calls, dtype=torch.bool)], 1)
            else:
                scores = scores - nn.functional.softplus(self.operand_decay) * far[:, None]
            ptrs.append(scores.masked_fill(hidden[:, None], float("-inf")))
        return CallLogits(torch.stack(pis, 1), torch.stack(ptrs, 1), torch.stack(halts, 1), step_logit, nest_logit,
                          join_logit, window)

    @staticmethod
    def _roles(ends: torch.Tensor) -> torch.Tensor:
        """(B,T) each token's place relative to the operands that end at ``ends`` (B,T; a step's): 0 before the
        first's end, 1 between the first's and the last's, 2 after the last's (0 everywhere if none ends)."""
        pos = torch.arange(ends.shape[1], device=ends.device)[None]
        first = torch.where(ends, pos, ends.shape[1]).amin(-1, keepdim=True)
        last = torch.where(ends, pos, -1).amax(-1, keepdim=True)
        return (pos > first).long() + ((pos > last) & (last >= 0)).long()

    def _window(self, tokens: tuple[torch.Tensor, ...] | torch.Tensor) -> torch.Tensor:
        """The nesting step-end gate: (B, T, 2) logits (step end, nested) of the tokens at :data:`STEP_WINDOW`'s
        offsets, from ``tokens`` (each token, the next, ...: the look-ahead views, which stop at the answer
        cue) or, given one (B,T,d) tensor, its shifts (zeros past either end)."""
        first, last = STEP_WINDOW
        here, *ahead = self._ahead(tokens, last)
        T = here.shape[1]
        behind = [nn.functional.pad(here[:, :T - j], (0, 0, j, 0)) for j in range(-first, 0, -1)]
        return self.step_window(torch.cat(behind + [here] + ahead, -1))

    @staticmethod
    def _ahead(tokens: tuple[torch.Tensor, ...] | torch.Tensor, last: int) -> list[torch.Tensor]:
        """Each token and the ``last`` after it, (B,T,d) each: the first ``last + 1`` look-ahead views of
        ``tokens`` or, given one (B,T,d) tensor, its shifts (zeros past its end)."""
        if isinstance(tokens, tuple):
            if len(tokens) <= last:
                raise ValueError(f"the step-end gate reads {last} tokens ahead, got {len(tokens) - 1}")
            return list(tokens[:last + 1])
        return [tokens] + [nn.functional.pad(tokens[:, j:], (0, 0, 0, j)) for j in range(1, last + 1)]


__all__ = ["COUNTS", "NGRAM", "CallHeads", "CallLogits", "LocalWords", "OPERAND_ORDERS", "ROLES", "STEP_WINDOW",
           "WORD_QUERIES", "list_separators"]
