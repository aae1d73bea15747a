r"""A chain of library calls on the digit tape, each one's result a segment that later calls can take as input.

A problem like "add 7 to the product of 36 and 12" needs two calls: ``long_mul(36, 12)`` then
``long_add(#1, 7)``. Here every value a call can take is a **segment**: cells in the input convention of the
digit-tape library (``ncl.library.symbols``), each number's digits followed by ``SEP``. Segment 0 is empty (an
argument slot a call leaves unused). Segments 1..O are the prompt's operands (a number, or a list of numbers).
Segment O + k is call k's result, the cells its run left before ``END``, ended by ``SEP`` like an input number.

Call k (k = 1..K) has heads that the model computes (:func:`run_chain` takes their logits):

- ``π_k (P,)``: the program, run as the single call's is (``run`` below: mixture or superposition);
- ``pointer_k (A, S)``: per argument slot a, a distribution over the segments that exist before the call (the
  empty one, the row's operands, the results of calls 1..k−1; the others are masked). Straight-through: the
  forward pass takes the argmax segment, the backward pass gives every candidate segment's cells the slot's
  soft weight;
- ``halt_k``: whether call k's result is the answer. Straight-through too, and call K always halts.

Call k's input tape is its slots' segments one after another, ``tape = seg(a_1) ‖ seg(a_2) ‖ …``, and it runs as
``f(0, len(tape))``. So "subtract 2 from 63" and "63 minus 2" differ only in their pointers. The answer is the
result of the first call that halts: ``answer = Σ_k stop_k · result_k`` with ``stop_k = halt_k Π_{j<k}(1 −
halt_j)``, exactly one-hot forward. A row's calls after its halting one do not run, so ``calls`` (the calls run
per row) measures the adaptive depth: a one-call problem stops after one.

Gradients: the answer reaches call k's π through its run (as a single call's does), its pointers through the
soft segment mixture and the run's input, and every earlier call through the result segments later calls read.
Where a segment ends (the operand ends in the prompt, ``END`` in a result) is read hard: no gradient. A result's
cells are straight-through too: in mixture mode a run's tape blends its candidates', and the machine is exact
only on sharp inputs (a later call on a blend can leak mass, or overflow).

Shapes: B rows, K calls, A argument slots, S = 1 + O + K segments, C tape cells, n values.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from ncl.computer.arguments import initial_registers
from ncl.computer.contracts import decode_call, segment_numbers
from ncl.computer.run import RunOutput
from ncl.computer.sharp import straight_through, straight_through_gate
from ncl.library.symbols import END, SEP

NONE = 0  #: the empty segment's index: a slot that takes it adds no cells to the call's tape


class Segments(NamedTuple):
    """Segments of digit-tape cells: ``cells (B,S,C,n)``, ``length (B,S)`` (long; cells past it are 0) and
    ``count (B,)`` (long: segments 1..count are filled; segment 0 is the empty one)."""

    cells: torch.Tensor
    length: torch.Tensor
    count: torch.Tensor


class ChainOutput(NamedTuple):
    """What :func:`run_chain` returns.

    - ``r0 (B,n)``, ``mem (B,C,n)``: the answer, the halting call's final register r0 and tape;
    - ``steps (B,)``: expected machine steps summed over the calls run (the ponder cost), ``call_steps (B,K)``
      each call's (0 for a call not run); ``unhalted (B,)``: the running mass the calls run left, summed;
    - ``calls (B,)`` (long): the calls each row ran; ``run_steps`` (int): the machine steps the calls ran, summed;
    - ``stop (B,K)``: each call's weight in the answer (one-hot forward);
    - ``program (B,K)``, ``args (B,K,A)`` (long): each call's chosen program and argument segments (−1 for a
      call not run);
    - ``segments``: every segment, the results included (:class:`Segments`, S = 1 + O + K);
    - ``pointers (B,K,A,S)``: the pointers' soft distributions (masked), for an auxiliary loss.
    """

    r0: torch.Tensor
    mem: torch.Tensor
    steps: torch.Tensor
    call_steps: torch.Tensor
    unhalted: torch.Tensor
    calls: torch.Tensor
    run_steps: int
    stop: torch.Tensor
    program: torch.Tensor
    args: torch.Tensor
    segments: Segments
    pointers: torch.Tensor


def _zero_cells(B: int, C: int, n: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(torch.zeros(B, C, dtype=torch.long, device=like.device), n).to(like.dtype)


def operand_segments(mem: torch.Tensor, length: torch.Tensor, ends: torch.Tensor, operands: int) -> Segments:
    """Split a prompt's tape into its operands.

    Args:
        mem: (B, C, n) the prompt's tape; length: (B,) long, the cells written.
        ends: (B, C) 1 at the last cell of each operand (its closing ``SEP``), 0 elsewhere (read as ``> 0.5``;
            cells from ``length`` on are ignored). "5 3 9 then 7" is the cells ``5 SEP 3 SEP 9 SEP 7 SEP``
            with ends at cells 5 and 7: the list, then the number.
        operands: O, the most operands a row has (rows with fewer leave the rest empty).

    Returns:
        :class:`Segments` with S = 1 + O: the empty segment, then operand j at index 1 + j.
    """
    if mem.dim() != 3:
        raise ValueError(f"mem must be (B, C, n), got shape {tuple(mem.shape)}")
    B, C, n = mem.shape
    if length.shape != (B,) or length.dtype != torch.long:
        raise ValueError(f"length must be a long tensor of shape {(B,)}, got {length.dtype} {tuple(length.shape)}")
    if ends.shape != (B, C):
        raise ValueError(f"ends must be (B, C) = {(B, C)}, got {tuple(ends.shape)}")
    if operands < 1:
        raise ValueError(f"operands must be >= 1, got {operands}")
    cell = torch.arange(C, device=mem.device)
    marked = (ends > 0.5) & (cell[None] < length[:, None])
    last = torch.where(marked, cell[None], C).sort(-1).values[:, :operands]  # (B, O): end cells, C = none
    if last.shape[1] < operands:
        last = F.pad(last, (0, operands - last.shape[1]), value=C)
    first = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1] + 1], 1)
    filled = last < C
    seg_len = torch.where(filled, last - first + 1, 0)  # (B, O)
    idx = (first[..., None] + cell[None, None]).clamp(max=C - 1)  # (B, O, C)
    cells = mem[:, None].expand(B, operands, C, n).gather(2, idx[..., None].expand(-1, -1, -1, n))
    inside = cell[None, None] < seg_len[..., None]
    cells = torch.where(inside[..., None], cells, _zero_cells(B, C, n, mem)[:, None])
    empty = _zero_cells(B, C, n, mem)[:, None]
    return Segments(torch.cat([empty, cells], 1), F.pad(seg_len, (1, 0)), filled.sum(-1))


def result_segment(mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A finished run's answer as a segment: ``mem (B,C,n)`` → ``(cells (B,C,n), length (B,))``.

    The cells before the first ``END`` (read as argmax), then a ``SEP`` unless the last of them is one: a
    number answer ``7 3`` becomes ``7 3 SEP``; a list answer ``2 SEP 5 SEP`` stays. An empty answer is an
    empty segment. Cells past the segment hold 0. The kept cells carry the run's gradient.
    """
    B, C, n = mem.shape
    sym = mem.argmax(-1)
    cell = torch.arange(C, device=mem.device)
    end = torch.where(sym == END, cell[None], C).min(-1).values.clamp(max=C - 1)  # (B,)
    last = sym.gather(1, (end - 1).clamp(min=0)[:, None]).squeeze(1)
    sep = (end > 0) & (last != SEP)
    length = end + sep.long()
    keep = cell[None] < end[:, None]
    add_sep = sep[:, None] & (cell[None] == end[:, None])
    sep_cell = F.one_hot(torch.full((B, C), SEP, dtype=torch.long, device=mem.device), n).to(mem.dtype)
    out = torch.where(keep[..., None], mem, torch.where(add_sep[..., None], sep_cell, _zero_cells(B, C, n, mem)))
    return out, length


def call_tape(segments: Segments, pointers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A call's input tape from its argument slots' segments.

    Args:
        segments: :class:`Segments` (B, S, C, n).
        pointers: (B, A, S) each slot's choice, one-hot forward (straight-through: the backward pass gives each
            candidate segment its soft weight).

    Returns:
        ``(mem (B,C,n), length (B,))``: slot 1's chosen segment, then slot 2's, ...; cells past ``length`` hold
        0. A tape longer than C is cut at C (the call then reads a cut operand).
    """
    cells, seg_len = segments.cells, segments.length
    B, S, C, n = cells.shape
    if pointers.dim() != 3 or pointers.shape[0] != B or pointers.shape[2] != S:
        raise ValueError(f"pointers must be (B, A, S) = ({B}, A, {S}), got {tuple(pointers.shape)}")
    cell = torch.arange(C, device=cells.device)
    chosen = pointers.argmax(-1)  # (B, A)
    lengths = seg_len.gather(1, chosen)  # (B, A)
    offsets = lengths.cumsum(1) - lengths
    mem = _zero_cells(B, C, n, cells)
    for a in range(pointers.shape[1]):
        mixed = torch.einsum("bs,bscn->bcn", pointers[:, a].to(cells.dtype), cells)  # the chosen segment, forward
        i = cell[None] - offsets[:, a, None]  # (B, C): the slot's cell at each tape cell
        inside = (i >= 0) & (i < lengths[:, a, None])
        placed = mixed.gather(1, i.clamp(0, C - 1)[..., None].expand(-1, -1, n))
        mem = torch.where(inside[..., None], placed, mem)
    return mem, lengths.sum(1).clamp(max=C)


def available(operands: torch.Tensor, segments_before: int, call: int, S: int) -> torch.Tensor:
    """(B, S) bool: the segments call ``call`` (0-based) may take: the empty one, the row's ``operands (B,)``
    (indices 1..count), and the results of the calls before it (indices ``segments_before`` on, where
    ``segments_before = 1 + O``)."""
    idx = torch.arange(S, device=operands.device)[None]
    is_operand = (idx >= 1) & (idx <= operands[:, None])
    is_result = (idx >= segments_before) & (idx < segments_before + call)
    return (idx == NONE) | is_operand | is_result


def run_chain(run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], RunOutput], pi: torch.Tensor,
              pointer_logits: torch.Tensor, halt_logit: torch.Tensor, operands: Segments, registers: int,
              answer_grad: bool = True, halt_grad: bool | None = None,
              contracts: torch.Tensor | None = None) -> ChainOutput:
    """Run up to K library calls per row, each on the segments its pointers choose (module docstring).

    Args:
        run: ``run(pi (R,P), regs (R,R_reg,n), mem (R,C,n)) -> RunOutput`` runs the library for R rows, e.g.
            ``NeuralComputer.run_machine`` with a step limit.
        pi: (B, K, P) each call's program distribution.
        pointer_logits: (B, K, A, S) each call's slots' segment logits, S = 1 + O + K (masked here to the
            segments that exist before the call).
        halt_logit: (B, K) whether each call's result is the answer (call K always halts).
        operands: the prompt's :class:`Segments` (S_op = 1 + O), e.g. from :func:`operand_segments`.
        registers: the machine's register count (r1 = 0 and r2 = the tape's length start each call).
        answer_grad: whether the answer's gradient reaches the pointers (and the result cells later calls
            read) and, unless ``halt_grad`` says otherwise, the halting gates (``ComputerConfig.answer_grad``
            and its ``answer_grad_heads``).
        halt_grad: whether it reaches the halting gates (None: as ``answer_grad``).
        contracts: (P, M + 1) bool, the programs' input contracts
            (:func:`~ncl.computer.contracts.contract_table`): if given, each call's program and arguments are
            decoded together under them (:func:`~ncl.computer.contracts.decode_call`; one-hot, for evaluation)
            instead of each head's argmax on its own.

    Returns:
        :class:`ChainOutput`.
    """
    B, S_op, C, n = operands.cells.shape
    if pi.dim() != 3 or pi.shape[0] != B:
        raise ValueError(f"pi must be (B, K, P) with B = {B}, got {tuple(pi.shape)}")
    K = pi.shape[1]
    S = S_op + K
    if pointer_logits.dim() != 4 or pointer_logits.shape[:2] != (B, K) or pointer_logits.shape[3] != S:
        raise ValueError(f"pointer_logits must be (B, K, A, S) = ({B}, {K}, A, {S}), "
                         f"got {tuple(pointer_logits.shape)}")
    if halt_logit.shape != (B, K):
        raise ValueError(f"halt_logit must be (B, K) = {(B, K)}, got {tuple(halt_logit.shape)}")
    dev, dt = operands.cells.device, operands.cells.dtype
    seg_cells = list(operands.cells.unbind(1))
    seg_len = list(operands.length.unbind(1))
    running = torch.ones(B, dtype=torch.bool, device=dev)
    still = torch.ones(B, dtype=dt, device=dev)  # Π_{j<k}(1 − halt_j), straight-through
    r0, mem = pi.new_zeros(B, n), pi.new_zeros(B, C, n)
    steps, unhalted, call_steps = pi.new_zeros(B), pi.new_zeros(B), []
    calls = torch.zeros(B, dtype=torch.long, device=dev)
    run_steps = 0
    program = torch.full((B, K), -1, dtype=torch.long, device=dev)
    args = torch.full((B, K, pointer_logits.shape[2]), -1, dtype=torch.long, device=dev)
    stops, soft_ptrs = [], []
    numbers = [segment_numbers(operands.cells, operands.length)] if contracts is not None else []
    for k in range(K):
        ok = available(operands.count, S_op, k, S)  # (B, S)
        soft = torch.softmax(pointer_logits[:, k].masked_fill(~ok[:, None], float("-inf")), -1)
        soft_ptrs.append(soft)
        ptr = straight_through(soft, answer_grad)
        pi_k = pi[:, k]
        if contracts is not None:
            held = F.pad(torch.cat(numbers, 1), (0, K - k))  # (B, S): the segments not there yet hold none
            pi_k, decoded, fits = decode_call(pi_k, soft, held, contracts)
            ptr = torch.where(fits[:, None, None], decoded, ptr)
        halt = torch.ones(B, dtype=dt, device=dev) if k == K - 1 else \
            straight_through_gate(torch.sigmoid(halt_logit[:, k]), answer_grad if halt_grad is None else halt_grad)
        stop = still * halt
        stops.append(stop)
        rows = running.nonzero().squeeze(1)
        out_cells = _zero_cells(B, C, n, operands.cells)
        out_len = torch.zeros(B, dtype=torch.long, device=dev)
        call_steps.append(pi.new_zeros(B))
        if len(rows):
            # the pointers' mass is on the S_op + k segments that exist (the others are masked)
            segs = Segments(torch.stack(seg_cells, 1)[rows], torch.stack(seg_len, 1)[rows], operands.count[rows])
            tape, tape_len = call_tape(segs, ptr[rows, :, :S_op + k])
            start = torch.stack([torch.zeros_like(tape_len), tape_len], 1)
            regs = initial_registers(F.one_hot(start, n).to(dt), registers)
            res = run(pi_k[rows], regs, tape)
            run_steps += res.run_steps
            w = stop[rows]
            r0 = r0.index_add(0, rows, w[:, None] * res.r0)
            mem = mem.index_add(0, rows, w[:, None, None] * res.mem)
            steps = steps.index_add(0, rows, res.steps)
            call_steps[-1] = call_steps[-1].index_add(0, rows, res.steps.detach())
            unhalted = unhalted.index_add(0, rows, res.unhalted)
            cells_k, len_k = result_segment(res.mem)
            # a mixture run's tape is a blend of its candidates' tapes; a later call must run on a sharp one
            cells_k = straight_through(cells_k, answer_grad)
            out_cells = out_cells.index_copy(0, rows, cells_k)
            out_len = out_len.index_copy(0, rows, len_k)
            program[rows, k] = pi_k[rows].argmax(-1)
            args[rows, k] = ptr[rows].argmax(-1)
            calls = calls + running.long()
        seg_cells.append(out_cells)
        seg_len.append(out_len)
        if contracts is not None:
            numbers.append(segment_numbers(out_cells[:, None], out_len[:, None]))
        running = running & (halt.detach() < 0.5)
        still = still * (1 - halt)
    segments = Segments(torch.stack(seg_cells, 1), torch.stack(seg_len, 1), operands.count)
    return ChainOutput(r0, mem, steps, torch.stack(call_steps, 1), unhalted, calls, run_steps, torch.stack(stops, 1),
                       program, args, segments, torch.stack(soft_ptrs, 1))


__all__ = ["ChainOutput", "NONE", "Segments", "available", "call_tape", "operand_segments", "result_segment",
           "run_chain"]
