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

Shapes: B rows, K calls, P programs, A argument slots, S segments, C tape cells, n values.
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
    own = torch.tensor([a == b for a, b in zip(answer_texts(mem), answers)], dtype=torch.bool, device=dev) & rows
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
        forced = torch.where(program >= 0, program, pi.argmax(-1))[b]  # calls not run: halting stops first
        forced[torch.arange(len(b), device=dev), k] = p
        out = _rerun(computer, chain, b, F.one_hot(forced, P).to(pi.dtype), max_steps)
        right = torch.tensor([t == answers[i] for t, i in zip(answer_texts(out.mem), b.tolist())],
                             dtype=torch.bool, device=dev)
        matches[b[right], k[right], p[right]] = True
    return SearchResult(matches, own, len(b))


def _rerun(computer, chain, src: torch.Tensor, pi: torch.Tensor, max_steps: int | None) -> calls_.ChainOutput:
    """Rows ``src (R,)`` of ``chain`` run again with the programs ``pi (R,K,P)``: their operands, pointers and
    halting as the model chose them."""
    segments, length = chain.segments[src], chain.segment_length[src]
    K = chain.pi.shape[1]
    S_op = segments.shape[1] - K
    n = computer.config.machine.n
    count = (length[:, 1:S_op] > 0).sum(1)  # operands fill segments 1..count
    operands = calls_.Segments(F.one_hot(segments[:, :S_op], n).to(pi.dtype), length[:, :S_op], count)
    pointer_logits = torch.log(chain.pointers[src].to(pi.dtype))  # masked segments: −inf, masked again there
    return calls_.run_chain(lambda p, r, m: computer.run_machine(p, r, m, max_steps), pi, pointer_logits,
                            chain.halt_logit[src], operands, computer.config.machine.registers, answer_grad=False)


def search_loss(pi: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """``−mean log Σ_{p matches} π_{b,k,p}`` over the calls with a match: ``pi (B,K,P)`` (with its gradient),
    ``matches (B,K,P)`` bool. 0 when no call has one."""
    found = matches.any(-1)
    if not bool(found.any()):
        return pi.new_zeros(())
    mass = (pi * matches.to(pi.dtype)).sum(-1)[found]
    return -torch.log(mass.clamp_min(1e-9)).mean()


__all__ = ["SearchResult", "answer_texts", "search_loss", "search_programs"]
