"""The typed results of :class:`~ncl.computer.NeuralComputer`: its heads, the state a later call may reuse, and
the output of ``forward``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ncl.computer.calls import Segments


class ChainInputs(NamedTuple):
    """What a chain's heads read on the prompt, kept so that the chain can run again with some decisions changed
    (:meth:`NeuralComputer.chain_with_steps <ncl.computer.NeuralComputer.chain_with_steps>`, the step search of
    :mod:`ncl.training.search`): ``h (B,T,d)`` the normalised hidden states the call heads read (with
    ``word_view="collapsed"`` the collapsed prompt's, in the prompt's columns), ``mask (B,T)`` its tokens written
    from, ``ends (B,T)`` the operand ends (hard), ``words (B,T)`` the tokens the tape does not
    hold, ``tokens`` what the local gates read (a tuple of (B,T,d) look-ahead views, or None), ``operands`` the
    prompt's :class:`~ncl.computer.calls.Segments` and ``max_steps`` the machine's step limit (None: the
    computer's); with ``word_view="hybrid"`` (else None), ``program_h (B,T,d)`` the states the program head
    pools instead (the pretrained encoder's) and ``program_words (B,T)`` the tokens it pools."""

    h: torch.Tensor
    mask: torch.Tensor
    ends: torch.Tensor
    words: torch.Tensor
    tokens: tuple | None
    operands: Segments
    max_steps: int | None
    program_h: torch.Tensor | None = None
    program_words: torch.Tensor | None = None


class ChainHeads(NamedTuple):
    """The heads of a chain of calls (``ComputerConfig.calls`` = K > 0; :mod:`ncl.computer.calls`): ``pi
    (B,K,P)``, ``pointers (B,K,A,S)`` (the argument slots' soft segment distributions, masked), ``halt_logit
    (B,K)``, ``end_logit (B,T)`` (whether a prompt token's cell ends an operand), and what ran: ``calls (B,)``,
    ``program (B,K)`` and ``args (B,K,A)`` (−1 for a call not run), ``call_steps (B,K)`` (each call's expected
    machine steps), and every segment's cells ``segments (B,S,C)`` (argmax values) and ``segment_length
    (B,S)``, for traces; ``step_logit (B,T)``: has a step phrase ended at this prompt token
    (:class:`~ncl.computer.call_heads.CallHeads`); ``nest_logit (B,T)``: is that step end nested, and the two
    step-end gates' own logits, ``join_logit (B,T)`` (the near gate's) and ``window_logit (B,T)`` (all three
    None without ``ComputerConfig.nesting``); ``inputs``: what the heads read (:class:`ChainInputs`)."""

    pi: torch.Tensor
    pointers: torch.Tensor
    halt_logit: torch.Tensor
    end_logit: torch.Tensor
    calls: torch.Tensor
    program: torch.Tensor
    args: torch.Tensor
    call_steps: torch.Tensor
    segments: torch.Tensor
    segment_length: torch.Tensor
    step_logit: torch.Tensor
    nest_logit: torch.Tensor | None = None
    join_logit: torch.Tensor | None = None
    window_logit: torch.Tensor | None = None
    inputs: ChainInputs | None = None


class PromptHeads(NamedTuple):
    """The heads on the prompt (computed once per prompt, kept in :class:`ComputerState`).

    ``reader`` says which tape reader produced the token logits: ``"mlp"`` fills ``value_logits (B,T,n)``
    (each token's value), ``"digits"`` fills ``digit_logits (B,T,11)`` (each token's digit, 10 = not a digit;
    with ``digit_tokens`` these are the exact digits of the ids, scaled to logits); the other one is None.
    ``pi (B,P)``: program probabilities; ``args_soft (B,A,n)``: the argument mixtures; ``source_weights
    (B,A,S)`` and ``source_values (B,S)``: the argument heads' weights and each source's value; ``gate_logit
    (B,T)``: the tape write gates. ``chain``: a chain's :class:`ChainHeads` (then ``pi`` and the argument fields
    are its first call's), or None.
    """

    reader: str
    pi: torch.Tensor
    args_soft: torch.Tensor
    source_weights: torch.Tensor
    source_values: torch.Tensor
    gate_logit: torch.Tensor
    value_logits: torch.Tensor | None
    digit_logits: torch.Tensor | None
    chain: ChainHeads | None = None


class ComputerState(NamedTuple):
    """What :meth:`NeuralComputer.forward <ncl.computer.NeuralComputer.forward>` may be given back to skip the
    prompt's heads and the run (the same prompt, more answer tokens): the prompt heads, the run's ``r0 (B,n)``,
    ``mem (B,C,n)``, ``steps (B,)``, ``unhalted (B,)`` and ``run_steps``, the tape's ``written (B,C)``, and
    ``first_read``, the first read column."""

    heads: PromptHeads
    r0: torch.Tensor
    mem: torch.Tensor
    written: torch.Tensor
    steps: torch.Tensor
    unhalted: torch.Tensor
    run_steps: int
    first_read: int


@dataclass(frozen=True)
class Heads:
    """Every head output of one forward call (for auxiliary losses and diagnostics).

    ``prompt``: the prompt's heads (:class:`PromptHeads`: ``reader``, ``pi``, the argument and tape heads).
    Then the read positions' heads: ``read_logit (B,T)``; ``writer``, and with ``writer="digits"`` (else None)
    ``digit_gate_logit (B,T)``, ``print_r0`` and ``print_cell`` (B,T,11): the digit, or 10 = "end", under the
    digit pointer of r0 and of the tape cell read (zero outside the read positions); and the run's results
    ``r0 (B,n)``, ``mem (B,C,n)``.
    """

    prompt: PromptHeads
    writer: str
    read_logit: torch.Tensor
    digit_gate_logit: torch.Tensor | None
    print_r0: torch.Tensor | None
    print_cell: torch.Tensor | None
    r0: torch.Tensor
    mem: torch.Tensor


class ComputerOutput(NamedTuple):
    """What :meth:`NeuralComputer.forward <ncl.computer.NeuralComputer.forward>` returns.

    ``readout``: (B, T, d) embeddings, zero outside ``read_mask``. ``steps``: (B,) expected steps (the ponder
    cost). ``unhalted``: (B,) running mass left. ``run_steps``: the steps the machine ran (int). ``heads``:
    :class:`Heads`. ``state``: :class:`ComputerState`, what a later call may pass back to skip the run (same
    prompt).
    """

    readout: torch.Tensor
    steps: torch.Tensor
    unhalted: torch.Tensor
    run_steps: int
    heads: Heads
    state: ComputerState


__all__ = ["ChainHeads", "ChainInputs", "ComputerOutput", "ComputerState", "Heads", "PromptHeads"]
