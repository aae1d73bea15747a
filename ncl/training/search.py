r"""Programs searched on the machine (``ncl train --search-programs``): for an example without interface labels,
the programs whose call prints its answer become the program head's targets.

The chain of calls (:mod:`ncl.computer.calls`) runs the programs its heads choose on the operands its pointers
choose. For a training example without labels the answer text is all there is. The search asks the machine:
for each call k the row ran and each program p, run the row's chain again with call k's program replaced by p
(the other calls, the pointers and the halting as the model chose them) and read the answer off the halting
call's tape (:func:`ncl.library.symbols.text`). ``matches[b, k, p]`` is whether that answer is the example's.
The row's own chain counts too: when it prints the answer, each call's own program matches. A row whose chain
is right is searched all the same: a program can print the right answer for the wrong reason (``reachable``
prints 1, the distance of most ``shortest_path`` problems), and only the other programs that match keep such a
spurious one from being the sole target (as in semantic parsing, where a search finds every consistent program).

The loss is the answer's marginal likelihood over the programs with the executor exact, the answer 1 when it is
printed and 0 otherwise (the "maximum marginal likelihood" of semantic parsing with a deterministic executor):

    L = −mean_{(b,k): some p matches} log Σ_{p matches} π_{b,k,p}

so every program that prints the answer (``list_sort`` and ``merge_sort`` both sort) shares the target, and a
call whose row no single-program change repairs (a wrong operand, a wrong halt) adds nothing. Unlike the answer's
straight-through gradient (docs/labels.md), it asks which program's answer is right, not which blend of tapes
reads better. It is a search, not a gradient: a tool-use model could be given the same one (the VM running its
candidate calls); the machine's part is that the candidates run as one batch.

The same question, asked of the other decisions on the rows whose chain is wrong: :func:`search_pointers` (each
argument slot pointed at each other segment, one at a time; the same loss over the segments) and
:func:`search_steps` (where each step ends, one flip at a time, the chain's heads run again on the new steps).

Shapes: B rows, K calls, P programs, A argument slots, S segments, T prompt tokens, C tape cells, n values.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ncl.computer import calls as calls_
from ncl.library.symbols import text


class SearchResult(NamedTuple):
    """What :func:`search_programs` found: ``matches (B,K,P)`` bool, ``own (B,)`` bool (the row's own chain
    prints the answer) and ``runs`` (int: the candidate chains run)."""

    matches: torch.Tensor
    own: torch.Tensor
    runs: int


def answer_texts(mem: torch.Tensor) -> list[str]:
    """The answer each row's tape ``mem (B,C,n)`` spells: its argmax cells read up to ``END``."""
    return [text(row) for row in mem.argmax(-1).tolist()]


def printed_right(mem: torch.Tensor, answers: list[str]) -> torch.Tensor:
    """(B,) bool: whether each row's tape ``mem (B,C,n)`` spells its answer text."""
    return torch.tensor([a == b for a, b in zip(answer_texts(mem), answers)], dtype=torch.bool, device=mem.device)


@torch.no_grad()
def search_programs(computer, chain, mem: torch.Tensor, answers: list[str], rows: torch.Tensor,
                    max_steps: int | None = None, top: int | None = None) -> SearchResult:
    """Which programs print each example's answer (module docstring).

    Args:
        computer: the :class:`~ncl.computer.NeuralComputer` whose forward gave ``chain``.
        chain: its :class:`~ncl.computer.outputs.ChainHeads` on the batch.
        mem: (B, C, n) the chain's answer tape (``ComputerOutput.heads.mem``).
        answers: the B examples' answer texts.
        rows: (B,) bool, the rows to search (e.g. those without labels); the others get no matches.
        max_steps: the machine's step limit (default the computer's).
        top: try only each call's ``top`` most likely other programs (None: all of them).

    Returns:
        :class:`SearchResult`.
    """
    pi, program, calls = chain.pi, chain.program, chain.calls
    B, K, P = pi.shape
    if len(answers) != B:
        raise ValueError(f"answers: expected {B} texts, got {len(answers)}")
    if rows.shape != (B,) or rows.dtype != torch.bool:
        raise ValueError(f"rows must be a bool tensor of shape {(B,)}, got {rows.dtype} {tuple(rows.shape)}")
    dev = pi.device
    rows = rows.to(dev)
    own = printed_right(mem, answers).to(dev) & rows
    ran = torch.arange(K, device=dev)[None] < calls[:, None]  # (B, K)
    matches = torch.zeros(B, K, P, dtype=torch.bool, device=dev)
    chosen = program.clamp_min(0)
    matches.scatter_(2, chosen[..., None], (own[:, None] & ran)[..., None])
    # the candidates: (row, call, program) for each call the row ran, each program but its own (or the top ones)
    others = pi.masked_fill(F.one_hot(chosen, P).bool(), -1.0)
    order = others.argsort(-1, descending=True)[..., :P - 1 if top is None else min(top, P - 1)]  # (B, K, M)
    cand = (rows[:, None] & ran)[..., None].expand_as(order)
    b, k, m = cand.nonzero(as_tuple=True)
    p = order[b, k, m]
    if len(b):
        forced = _programs(chain)[b]
        forced[torch.arange(len(b), device=dev), k] = p
        out = _rerun(computer, chain, b, F.one_hot(forced, P).to(pi.dtype), max_steps)
        right = printed_right(out.mem, [answers[i] for i in b.tolist()]).to(dev)
        matches[b[right], k[right], p[right]] = True
    return SearchResult(matches, own, len(b))


class StepSearch(NamedTuple):
    """What :func:`search_steps` found: ``matches (B,T)`` bool (flipping the step-end mark at that prompt token
    makes the row's chain print its answer), ``marks (B,T)`` bool (where the gate marks a step end now) and
    ``runs`` (int: the candidate chains run)."""

    matches: torch.Tensor
    marks: torch.Tensor
    runs: int


@torch.no_grad()
def search_steps(computer, chain, answers: list[str], rows: torch.Tensor) -> StepSearch:
    """Which single changes of the step ends make each searched row's chain print its answer.

    Where the steps of a prompt end decides how many calls run and what each reads (:mod:`ncl.computer.call_heads`):
    a missed ``, then`` runs one call on both steps' words. The candidates of a row are its operand ends (a step
    names its operands, so a step ends at the end of its last one: the comma of ``add 4 and 9, then``) and the
    tokens the gate marks now, the answer cue excepted (a step always ends there); each is flipped alone, and
    the chain runs again from its heads (:meth:`NeuralComputer.chain_with_steps
    <ncl.computer.NeuralComputer.chain_with_steps>`: its programs and pointers as the model chooses them on the
    new steps).

    Args:
        computer: the :class:`~ncl.computer.NeuralComputer` whose forward gave ``chain``.
        chain: its :class:`~ncl.computer.outputs.ChainHeads` on the batch (with ``inputs``).
        answers: the B examples' answer texts.
        rows: (B,) bool, the rows to search (e.g. those without labels whose own chain is wrong).

    Returns:
        :class:`StepSearch`.
    """
    inputs = chain.inputs
    B, T = chain.step_logit.shape
    if inputs is None:
        raise ValueError("chain: its heads carry no inputs to run again (ChainHeads.inputs)")
    if len(answers) != B:
        raise ValueError(f"answers: expected {B} texts, got {len(answers)}")
    if rows.shape != (B,) or rows.dtype != torch.bool:
        raise ValueError(f"rows must be a bool tensor of shape {(B,)}, got {rows.dtype} {tuple(rows.shape)}")
    real = inputs.mask > 0
    marks = (chain.step_logit.detach() > 0) & real
    cand = ((inputs.ends > 0.5) & real | marks) & rows.to(real.device)[:, None]
    cand[:, -1] = False  # the answer cue: a step always ends there
    b, t = cand.nonzero(as_tuple=True)
    matches = torch.zeros(B, T, dtype=torch.bool, device=real.device)
    if len(b):
        force = torch.full((len(b), T), -1, dtype=torch.long, device=real.device)
        force[torch.arange(len(b), device=real.device), t] = (~marks[b, t]).long()
        out = computer.chain_with_steps(inputs, b, force)
        right = printed_right(out.mem, [answers[i] for i in b.tolist()]).to(real.device)
        matches[b[right], t[right]] = True
    return StepSearch(matches, marks, len(b))


def step_search_loss(step_logit: torch.Tensor, marks: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """``−mean log Σ_{t matches} p(the gate at t flips)`` over the rows with a match: ``step_logit (B,T)`` (with
    its gradient), ``marks`` and ``matches (B,T)`` bool (:class:`StepSearch`). 0 when no row has one."""
    found = matches.any(-1)
    if not bool(found.any()):
        return step_logit.new_zeros(())
    flipped = F.logsigmoid(torch.where(marks, -step_logit, step_logit))  # log p(the other decision)
    return -torch.logsumexp(flipped.masked_fill(~matches, float("-inf")), -1)[found].mean()


class PointerSearch(NamedTuple):
    """What :func:`search_pointers` found: ``matches (B,K,A,S)`` bool (pointing call k's slot a at segment s
    instead makes the row's chain print its answer) and ``runs`` (int: the candidate chains run)."""

    matches: torch.Tensor
    runs: int


@torch.no_grad()
def search_pointers(computer, chain, answers: list[str], rows: torch.Tensor,
                    max_steps: int | None = None) -> PointerSearch:
    """Which single changes of an argument make each searched row's chain print its answer: for each call the
    row ran and each of its slots, every other segment the slot may take (those its distribution gives mass: the
    empty one, the operands before the step's end, the previous result) in place of its own, the programs and
    the other slots as the model chose them. ``subtract 13 from 37`` run as ``long_sub(13, 37)`` is repaired by
    either slot's other operand.

    Args:
        computer, chain, answers, rows: as :func:`search_steps` (the rows searched: e.g. those without labels
            whose own chain is wrong).
        max_steps: the machine's step limit (default the computer's).

    Returns:
        :class:`PointerSearch`.
    """
    ptr, args, calls = chain.pointers, chain.args, chain.calls
    B, K, A, S = ptr.shape
    if len(answers) != B:
        raise ValueError(f"answers: expected {B} texts, got {len(answers)}")
    if rows.shape != (B,) or rows.dtype != torch.bool:
        raise ValueError(f"rows must be a bool tensor of shape {(B,)}, got {rows.dtype} {tuple(rows.shape)}")
    dev = ptr.device
    ran = torch.arange(K, device=dev)[None] < calls[:, None]  # (B, K)
    seg = torch.arange(S, device=dev)
    cand = (ptr > 0) & (seg != args.clamp_min(0)[..., None]) & (rows.to(dev)[:, None] & ran)[..., None, None]
    b, k, a, s = cand.nonzero(as_tuple=True)
    matches = torch.zeros(B, K, A, S, dtype=torch.bool, device=dev)
    if len(b):
        logits = torch.log(ptr[b].to(chain.pi.dtype))  # (R, K, A, S): masked segments −inf
        r = torch.arange(len(b), device=dev)
        logits[r, k, a] = torch.zeros_like(logits[r, k, a]).masked_fill(seg[None] != s[:, None], float("-inf"))
        pi = F.one_hot(_programs(chain)[b], chain.pi.shape[-1]).to(chain.pi.dtype)
        out = _rerun(computer, chain, b, pi, max_steps, logits)
        right = printed_right(out.mem, [answers[i] for i in b.tolist()]).to(dev)
        matches[b[right], k[right], a[right], s[right]] = True
    return PointerSearch(matches, len(b))


def _programs(chain) -> torch.Tensor:
    """(B, K) long: each call's chosen program, the most likely one for a call not run (halting stops first)."""
    return torch.where(chain.program >= 0, chain.program, chain.pi.argmax(-1))


def _rerun(computer, chain, src: torch.Tensor, pi: torch.Tensor, max_steps: int | None,
           pointer_logits: torch.Tensor | None = None) -> calls_.ChainOutput:
    """Rows ``src (R,)`` of ``chain`` run again with the programs ``pi (R,K,P)``: their operands, halting and
    (unless ``pointer_logits (R,K,A,S)`` are given) pointers as the model chose them."""
    segments, length = chain.segments[src], chain.segment_length[src]
    K = chain.pi.shape[1]
    S_op = segments.shape[1] - K
    n = computer.config.machine.n
    count = (length[:, 1:S_op] > 0).sum(1)  # operands fill segments 1..count
    operands = calls_.Segments(F.one_hot(segments[:, :S_op], n).to(pi.dtype), length[:, :S_op], count)
    if pointer_logits is None:  # masked segments: −inf, masked again there
        pointer_logits = torch.log(chain.pointers[src].to(pi.dtype))
    return calls_.run_chain(lambda p, r, m: computer.run_machine(p, r, m, max_steps), pi, pointer_logits,
                            chain.halt_logit[src], operands, computer.config.machine.registers, answer_grad=False)


def search_loss(pi: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """``−mean log Σ_{p matches} π_{b,k,p}`` over the calls with a match: ``pi (B,K,P)`` (with its gradient),
    ``matches (B,K,P)`` bool. 0 when no call has one. The same for the pointers' search: ``pi`` the slots'
    segment distributions ``(B,K,A,S)``, ``matches`` :class:`PointerSearch`'s."""
    found = matches.any(-1)
    if not bool(found.any()):
        return pi.new_zeros(())
    mass = (pi * matches.to(pi.dtype)).sum(-1)[found]
    return -torch.log(mass.clamp_min(1e-9)).mean()


__all__ = ["PointerSearch", "SearchResult", "StepSearch", "answer_texts", "printed_right", "search_loss",
           "search_pointers", "search_programs", "search_steps", "step_search_loss"]
