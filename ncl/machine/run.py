r"""``machine_run``: the adaptive-depth run over the whole-run machine op, with a choice of backward.

The forward runs in chunks of ``k`` steps. With the table ALU on the fused backends (``cpp`` on CPU; ``cuda``
or ``triton`` on a GPU, fp32), a run that needs no graph is a series of whole-run kernel calls
(:mod:`ncl_kernels.machine`, at most :data:`~ncl_kernels.machine.RUN_CHUNK` steps each), and the
``"checkpoint"`` mode runs its forward on them, a chunk one or more calls; otherwise a chunk is a loop of
:func:`~ncl_kernels.machine.step.step` calls, each made of the dispatched kernel ops (``cpp`` on CPU,
``cuda``/``triton`` on a GPU, ``reference`` when forced).
What the backward keeps is the choice of ``grad_mode``:

* ``"full"``: plain backpropagation through time; autograd keeps every step's activations,
  O(B·state·T) memory.
* ``"checkpoint"``: on a kernel, :class:`~ncl_kernels.machine.CheckpointedRun` (the kernel's own
  backward, C++ on ``cpp`` and Triton on ``triton``, recomputing one chunk at a time); otherwise each
  chunk of ``k`` steps runs under :func:`torch.utils.checkpoint.checkpoint` (``use_reentrant=False``). Only
  the carry entering each chunk is kept; the backward recomputes one chunk at a time, so training memory is
  O(B·state·(T/k + k)) for one extra forward. The gradients are those of ``"full"`` (to rounding, on the
  kernel; tested).
* ``"truncated"``: gradients flow through the last ``k`` executed steps only. The run goes once without a
  graph (so ``T`` is known, early exit included), then re-runs the last ``k`` steps with one, starting from a
  kept chunk-start carry. Everything computed before step ``T - k`` (the state, and the halting
  accumulators' earlier terms) is a constant for the backward: the program's fields get the gradient of the
  last ``k`` steps, the input registers and memory get none unless ``T <= k`` (then it equals ``"full"``).
  Memory O(B·state·k).

Without autograd (``torch.no_grad()``, or no input that requires grad) every mode is the same plain run.

The carry (:class:`~ncl_kernels.machine.state.Carry`) is the machine state plus the halting accumulators of
docs/design.md §3 step 8:
``acc_reg = Σ_t h_t reg_t``, ``acc_mem = Σ_t h_t mem_t``, ``expected = Σ_t t·h_t`` and the fault mass.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from ncl_kernels.halting import halting_accumulate
from ncl_kernels.machine import (Carry, CheckpointedRun, MachineConfig, ProgramFields, advance, initial_carry,
                                 kernel_for, reads_out)

#: The backward choices of :func:`machine_run`.
GRAD_MODES = ("full", "checkpoint", "truncated")
#: Default chunk length ``k``: at B=32, n=128 one chunk's activations are about 16× a carry, a fair split of
#: the O(T/k + k) memory for runs of a few hundred steps. The truncated window's default, and the checkpoint
#: interval's except on the ``cpp`` kernel (:func:`checkpoint_chunk`).
DEFAULT_CHUNK = 16
#: The ``cpp`` kernel's checkpoint interval is the largest power of two ``k <= CPP_MAX_CHUNK`` with
#: ``k·L <= CPP_CHUNK_LINES`` (at least :data:`DEFAULT_CHUNK`): :func:`checkpoint_chunk`.
CPP_MAX_CHUNK, CPP_CHUNK_LINES = 64, 8192
#: ``max_steps`` used by ``Program.run``/``execute`` and the VM when none is given.
DEFAULT_MAX_STEPS = 1000


class RunResult(NamedTuple):
    """The result of a soft run (:meth:`ncl.machine.Program.run`).

    Fields: ``r0 (B, n)`` and ``regs (B, K, n)`` and ``mem (B, C, n)``: halting mixtures of the readouts;
    ``unhalted (B,)``: the running mass ``ρ_T`` left at the end; ``expected_steps (B,)``:
    ``Σ_t t·h_t + T·ρ_T`` (the ponder cost); ``steps``: ``T``, the steps actually run;
    ``overflow (B,)``: the expected number of stack faults.
    """

    r0: torch.Tensor
    regs: torch.Tensor
    mem: torch.Tensor
    unhalted: torch.Tensor
    expected_steps: torch.Tensor
    steps: int
    overflow: torch.Tensor


def _checkpointed_chunk(fields: ProgramFields, config: MachineConfig, backend: str | None, first: int, count: int,
                        step_fn: Callable | None):
    """A function of the flat carry for :func:`checkpoint`: tensors in, tensors out (plus the step count)."""

    def chunk(*flat: torch.Tensor):
        carry, done = advance(Carry.unflat(flat), first, count, fields, config, backend, step_fn)
        return (*carry.flat(), torch.tensor(done))

    return chunk


def finish(carry: Carry, steps: int, backend: str | None = None, read_out: bool = False) -> RunResult:
    r"""Readouts :math:`\hat R = \sum_t h_t R(\text{state}_t) + \rho_T R(\text{state}_T)` and the ponder cost.

    ``read_out``: the carry's accumulators hold the readouts already (a whole-run kernel added the last term:
    ``ncl_kernels.machine.reads_out``).
    """
    state = carry.state
    rho = state.ip.sum(-1)
    if read_out:
        regs, mem, expected = carry.acc_reg, carry.acc_mem, carry.expected
    else:  # the mass still running is read out at the end, as if it halted at step T
        regs, mem, expected = halting_accumulate(carry.acc_reg, carry.acc_mem, carry.expected, state.reg, state.mem,
                                                 rho, steps, backend=backend)
    return RunResult(regs[:, 0], regs, mem, rho, expected, steps, carry.faults)


def check_run_options(grad_mode: str, chunk: int | None) -> None:
    """Raise ``ValueError`` naming the argument unless ``grad_mode`` and ``chunk`` (``None``: the default) are
    valid."""
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise ValueError(f"chunk must be None or an int >= 1, got {chunk!r}")


def checkpoint_chunk(kernel: str | None, lines: int) -> int:
    """The default checkpoint interval ``k`` of a run of a ``lines``-line program on ``kernel`` (``None``: a
    loop of step ops).

    On the ``cpp`` kernel ``k`` sets no activation memory: the backward recomputes a chunk per sample in C++,
    keeping a tape of its ``k`` steps per thread, and the kept carries shrink as ``k`` grows. What it does set is
    the cost per chunk (the backward's copies of each sample's state and its gradient, the forward's early exit
    stays at :data:`~ncl_kernels.machine.RUN_CHUNK`) against the tape's, whose per-step record grows with ``L``
    and leaves the L2 cache. Measured at the benchmark's sizes (B = 32, n = C = 128, 64 steps, one thread;
    benchmarks/RESULTS.md, scripts/chunk_sweep.py): ``k = 64`` is the fastest up to ``L`` of about 130 (3-16 %
    ahead of 16), the three are within a few per cent of each other from 250 to 350 lines, and ``k = 16`` is the
    fastest soft at 509 (4 % ahead of 64): hence the largest power of two with ``k·L <= 8192``, between 16 and
    64. Elsewhere :data:`DEFAULT_CHUNK`.
    """
    if kernel != "cpp":
        return DEFAULT_CHUNK
    k = DEFAULT_CHUNK
    while 2 * k <= CPP_MAX_CHUNK and 2 * k * lines <= CPP_CHUNK_LINES:
        k *= 2
    return k


def machine_run(fields: ProgramFields, config: MachineConfig, ip: torch.Tensor, reg: torch.Tensor,
                mem: torch.Tensor, max_steps: int, *, grad_mode: str = "checkpoint", chunk: int | None = None,
                backend: str | None = None, step_fn: Callable | None = None) -> RunResult:
    r"""Run the soft machine until every sample has halted (``ρ < halt_eps``) or ``max_steps``.

    .. math:: \hat R = \sum_{t=1}^{T} h_t\, R(\text{state}_t) + \rho_T\, R(\text{state}_T)

    Args:
        fields: the program's fields ``op (L, O)``, ``a, b, d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``, in
            the state's dtype.
        config: machine sizes.
        ip: ``(B, L)`` start distribution.
        reg: ``(B, K, n)`` registers.
        mem: ``(B, C, n)`` memory.
        max_steps: at most this many steps (``>= 0``).
        grad_mode: ``"full" | "checkpoint" | "truncated"`` (module docstring).
        chunk: ``k``, steps per chunk (checkpoint interval, and the truncation window); ``None``:
            :func:`checkpoint_chunk` for ``"checkpoint"``, :data:`DEFAULT_CHUNK` for ``"truncated"``.
        backend: force a kernel backend for every op; default: dispatch (``NCL_BACKEND``, then fastest).
        step_fn: a replacement for the step (:func:`ncl_kernels.machine.reference.advance_steps`).

    Returns:
        a :class:`RunResult`; the values do not depend on ``grad_mode`` or ``chunk``.
    """
    check_run_options(grad_mode, chunk)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    carry = initial_carry(ip, reg, mem, config.stack)
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (*fields, ip, reg, mem))
    if not needs_graph or grad_mode == "full":
        carry, steps = advance(carry, 0, max_steps, fields, config, backend, step_fn)
        return finish(carry, steps, backend)
    if grad_mode == "checkpoint":
        return _run_checkpointed(carry, fields, config, max_steps, chunk, backend, step_fn)
    return _run_truncated(carry, fields, config, max_steps, DEFAULT_CHUNK if chunk is None else chunk, backend,
                          step_fn)


def _run_checkpointed(carry: Carry, fields: ProgramFields, config: MachineConfig, max_steps: int,
                      chunk: int | None, backend: str | None, step_fn: Callable | None) -> RunResult:
    kernel = kernel_for(config, carry.state.ip, backend, step_fn)
    if chunk is None:
        chunk = checkpoint_chunk(kernel, fields.op.shape[0])
    if kernel is not None:
        *flat, total = CheckpointedRun.apply(config, max_steps, chunk, kernel, backend, *fields, *carry.flat())
        return finish(Carry.unflat(flat), int(total), backend, read_out=reads_out(kernel, max_steps))
    steps = 0
    while steps < max_steps:
        count = min(chunk, max_steps - steps)
        *flat, done = checkpoint(_checkpointed_chunk(fields, config, backend, steps, count, step_fn), *carry.flat(),
                                 use_reentrant=False)
        carry = Carry.unflat(flat)
        steps += int(done)
        if int(done) < count:  # every sample halted inside the chunk
            break
    return finish(carry, steps, backend)


def _run_truncated(carry: Carry, fields: ProgramFields, config: MachineConfig, max_steps: int, chunk: int,
                   backend: str | None, step_fn: Callable | None) -> RunResult:
    # Pass 1, no graph: find T, keeping the carries at the last three chunk boundaries. The last full chunk
    # starts at s <= T < s + k (T itself may be a boundary after a short last chunk), so s - k <= T - k:
    # one kept carry is always at or before the window's start.
    start = carry
    kept = [(0, carry)]
    steps = 0
    with torch.no_grad():
        while steps < max_steps:
            count = min(chunk, max_steps - steps)
            carry, done = advance(carry, steps, count, fields, config, backend, step_fn)
            steps += done
            if done < count:
                break
            kept = (kept + [(steps, carry)])[-3:]
    window_start = steps - chunk
    if window_start <= 0:
        # The whole run fits in the window: the same graph as "full".
        carry, again = advance(start, 0, steps, fields, config, backend, step_fn)
    else:
        origin, carry = max((kc for kc in kept if kc[0] <= window_start), key=lambda kc: kc[0])
        with torch.no_grad():
            carry, _ = advance(carry, origin, window_start - origin, fields, config, backend, step_fn)
        carry = Carry.unflat([t.detach() for t in carry.flat()])
        carry, again = advance(carry, window_start, chunk, fields, config, backend, step_fn)
        again += window_start
    if again != steps:  # the re-run makes the same halting decisions on the same values
        raise RuntimeError(f"machine_run: the truncated re-run took {again} steps, the first pass {steps}")
    return finish(carry, steps, backend)
