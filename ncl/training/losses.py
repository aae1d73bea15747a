"""The auxiliary loss: the computer's heads against what the task knows the machine should receive."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncl.computer import ComputerOutput


def aux_loss(comp: ComputerOutput, batch: dict) -> torch.Tensor:
    """Cross-entropies of the computer's heads (``comp.heads``, :class:`~ncl.computer.Heads`) against the
    auxiliary targets of ``batch`` (:func:`~ncl.training.encode`): the program, the arguments' sources, the tape
    gates and values (or digits, with the digit reader), the read gates and, with the digit writer, the digit
    gates. Each term is the mean over the targets given (not −100); a term with none is 0, so rows without
    labels (:func:`~ncl.training.labels.drop_labels`) add nothing, and a batch without any gives 0."""
    h, prompt = comp.heads, comp.heads.prompt
    P = prompt.gate_logit.shape[1]
    if prompt.chain is not None:
        loss = _chain_loss(prompt.chain, batch, P)
    else:
        loss = _nll(prompt.pi, batch["program"])
        # arguments: the mass on the sources that hold the right value (the value heads have their own loss)
        args = batch["args"]
        A = min(args.shape[1], prompt.source_weights.shape[1])
        match = prompt.source_values[:, None, :] == args[:, :A, None]  # (B, A, S)
        p = (prompt.source_weights[:, :A] * match).sum(-1)
        sel = match.any(-1) & (args[:, :A] >= 0)
        if bool(sel.any()):
            loss = loss - torch.log(p[sel].clamp_min(1e-9)).mean()
    loss = loss + _bce(prompt.gate_logit, batch["gate"][:, :P])
    if prompt.reader in ("digits", "cells"):  # which digit each prompt token is (10: none)
        loss = loss + _ce(prompt.digit_logits, batch["digit"][:, :P])
    else:  # each number-ending token's value
        loss = loss + _ce(prompt.value_logits, batch["value"][:, :P])
    loss = loss + _bce(h.read_logit, batch["read_gate"])
    if h.digit_gate_logit is not None:
        loss = loss + _bce(h.digit_gate_logit, batch["digit_gate"])
    return loss


def _bce(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``logit`` against the ``target`` entries that are not −100 (0 if none)."""
    sel = target >= 0
    if not bool(sel.any()):
        return logit.new_zeros(())
    return F.binary_cross_entropy_with_logits(logit[sel], target[sel].to(logit.dtype))


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (..., C)`` against the ``target (...)`` entries that are not −100
    (0 if none)."""
    sel = target >= 0
    if not bool(sel.any()):
        return logits.new_zeros(())
    return F.cross_entropy(logits[sel], target[sel])


def _nll(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean −log p[target] over the targets that are not −100: ``p (..., S)``, ``target (...)``."""
    sel = target >= 0
    if not bool(sel.any()):
        return p.new_zeros(())
    return -torch.log(p[sel].gather(-1, target[sel][:, None]).clamp_min(1e-9)).mean()


def _chain_loss(chain, batch: dict, P: int) -> torch.Tensor:
    """A chain's heads (:class:`~ncl.computer.outputs.ChainHeads`) against the composed problem's calls: each
    call's program, its slots' segments, where the step phrases end (with nesting: each of its two gates, the
    window on every step end, the near gate on those that close on a comma, and whether they are nested), and
    the operand ends. Halting has no term: a call halts when no step ends after it
    (:mod:`ncl.computer.call_heads`), so the step-end labels train it."""
    loss = _nll(chain.pi, batch["call_program"]) + _nll(chain.pointers, batch["call_args"])
    loss = loss + _bce(chain.end_logit, batch["operand_end"][:, :P])
    # none labelled for composed examples without step places (Composed.spans); no nested labels in a batch
    # whose composed problems all have one step
    gate = chain.step_logit if chain.window_logit is None else chain.window_logit  # (nesting: its two gates')
    for logit, key in ((gate, "step_end"), (chain.nest_logit, "step_nest"), (chain.join_logit, "step_join")):
        if logit is not None and key in batch:
            loss = loss + _bce(logit, batch[key][:, :P])
    return loss


__all__ = ["aux_loss"]
