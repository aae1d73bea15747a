r"""The run: the library image from the program choice, in either mode, with adaptive halting.

``π = softmax(head(h_last))`` is a distribution over the library's entry points. ``"mixture"`` runs each of the
top-k programs as its own machine instance and mixes their results by π (renormalised over the k);
``"superposition"`` runs one machine from ``ip = Σ_p π_p δ(entry_p)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ncl.computer.config import ComputerConfig


class RunOutput(NamedTuple):
    """What :func:`run_library` returns: ``r0 (B,n)``, ``mem (B,C,n)``, ``steps (B,)`` (expected steps, the
    ponder cost), ``unhalted (B,)`` (running mass left) and ``run_steps`` (the steps the machine ran, int)."""

    r0: torch.Tensor
    mem: torch.Tensor
    steps: torch.Tensor
    unhalted: torch.Tensor
    run_steps: int


def clip_rows(grad: torch.Tensor, max_norm: float = 1.0) -> torch.Tensor:
    """Zero every batch row of ``grad`` that holds a non-finite number; scale the others to norm ≤ max_norm.

    Gradients through long runs are large (docs/design.md §5 measured 4.6e4 after 54 steps; wrong candidates
    early in training reach 1e16): clipped only globally, one such sample would scale every other gradient to
    nothing.
    """
    flat = grad.flatten(1)
    finite = torch.isfinite(flat).all(1)
    norm = torch.where(finite[:, None], flat, torch.zeros_like(flat)).norm(dim=1)
    scale = torch.where(finite, (max_norm / norm.clamp_min(1e-30)).clamp(max=1.0), torch.zeros_like(norm))
    return torch.where(finite.view(-1, *[1] * (grad.dim() - 1)), grad, torch.zeros_like(grad)) * \
        scale.view(-1, *[1] * (grad.dim() - 1))


def run_library(library, entries: torch.Tensor, config: ComputerConfig, pi: torch.Tensor, regs: torch.Tensor,
                mem: torch.Tensor, max_steps: int) -> RunOutput:
    """Run ``library`` (the image, a :class:`~ncl.machine.Program`) from the program choice ``pi (B,P)``.

    ``entries (P,)`` are the entry lines of the P programs; ``regs (B,K,n)`` and ``mem (B,C,n)`` the start state.
    """
    B, L = pi.shape[0], library.length
    if torch.is_grad_enabled():
        # A long run (a wrong candidate, early in training) can blow up or overflow its fp32 gradient:
        # clip each sample's input gradient, and zero it where it is not finite.
        for t in (regs, mem):
            if t.requires_grad:
                t.register_hook(clip_rows)
    if config.mode == "superposition":
        ip = pi.new_zeros(B, L).index_add(1, entries, pi)
        res = library.run(regs, mem, ip, max_steps=max_steps)
        return RunOutput(res.r0, res.mem, res.expected_steps, res.unhalted, res.steps)
    k = min(config.top_k, pi.shape[1])
    top_p, top_i = pi.topk(k, -1)
    weight = top_p / top_p.sum(-1, keepdim=True)  # exact mixture over the k candidates; gradient to π
    if not config.answer_grad_to("program"):
        weight = weight.detach()
    keep = (weight.detach() >= config.min_prob).flatten()
    keep[0::k] = True  # every sample runs its best candidate
    rows = keep.nonzero().squeeze(1)
    sample = rows // k
    ip = F.one_hot(entries[top_i.flatten()[rows]], L).to(regs.dtype)
    res = library.run(regs[sample], mem[sample], ip, max_steps=max_steps)
    w = weight.flatten()[rows]
    r0 = regs.new_zeros(B, config.machine.n).index_add(0, sample, w[:, None] * res.r0)
    mem_out = mem.new_zeros(mem.shape).index_add(0, sample, w[:, None, None] * res.mem)
    steps = regs.new_zeros(B).index_add(0, sample, w * res.expected_steps)
    unhalted = regs.new_zeros(B).index_add(0, sample, w * res.unhalted)
    # a dropped candidate's weight (< min_prob) is mass that produced nothing: count it as unhalted
    unhalted = unhalted + (1 - regs.new_zeros(B).index_add(0, sample, w))
    return RunOutput(r0, mem_out, steps, unhalted, res.steps)


__all__ = ["RunOutput", "clip_rows", "run_library"]
