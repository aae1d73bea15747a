r"""``machine_run``: the adaptive-depth run loop over fused steps, with a choice of backward.

The forward runs in chunks of ``k`` steps. With the table ALU on the fused backends (``cpp`` on CPU; ``cuda``
or ``triton`` on a GPU, fp32), a chunk is one call of a whole-run kernel (:mod:`ncl.machine.fused_run`)
whenever no graph is needed, and the ``"checkpoint"`` mode runs its forward on it; otherwise a chunk is a
loop of :func:`~ncl.machine.interpreter.step` calls, each made of the dispatched kernel ops (``cpp`` on CPU,
``cuda``/``triton`` on a GPU, ``reference`` when forced).
What the backward keeps is the choice of ``grad_mode``:

* ``"full"``: plain backpropagation through time; autograd keeps every step's activations,
  O(B·state·T) memory.
* ``"checkpoint"``: on a kernel, :class:`~ncl.machine.fused_run.CheckpointedRun` (on ``cpp`` the kernel's own
  backward, on ``triton`` the step ops under autograd, recomputing one chunk at a time); otherwise each
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

The carry is the machine state plus the halting accumulators of DESIGN §3 step 8:
``acc_reg = Σ_t h_t reg_t``, ``acc_mem = Σ_t h_t mem_t``, ``expected = Σ_t t·h_t`` and the fault mass.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from ncl.machine import fused_run
from ncl.machine._ops import halting_accumulate
from ncl.machine.config import MachineConfig
from ncl.machine.interpreter import RunResult, step
from ncl.machine.state import MachineState, ProgramFields, initial_state

#: The backward choices of :func:`machine_run`.
GRAD_MODES = ("full", "checkpoint", "truncated")
#: Default chunk length ``k``: at B=32, n=128 one chunk's activations are about 16× a carry, a fair split of
#: the O(T/k + k) memory for runs of a few hundred steps.
DEFAULT_CHUNK = 16


class Carry(NamedTuple):
    """What one chunk hands to the next: the machine state and the halting accumulators.

    Shapes: ``state`` as in :class:`~ncl.machine.state.MachineState`; ``acc_reg (B, K, n)``,
    ``acc_mem (B, C, n)``, ``expected (B,)``, ``faults (B,)``.
    """

    state: MachineState
    acc_reg: torch.Tensor
    acc_mem: torch.Tensor
    expected: torch.Tensor
    faults: torch.Tensor


def _flat(carry: Carry) -> tuple[torch.Tensor, ...]:
    return (*carry.state, carry.acc_reg, carry.acc_mem, carry.expected, carry.faults)


def _unflat(tensors) -> Carry:
    return Carry(MachineState(*tensors[:7]), *tensors[7:])


def _halted(state: MachineState, config: MachineConfig) -> bool:
    """True once every sample's running mass is below ``halt_eps`` (the early exit of DESIGN §3 step 8)."""
    return bool(state.ip.sum(-1).max() < config.halt_eps)


def advance(carry: Carry, first: int, count: int, fields: ProgramFields, config: MachineConfig,
            backend: str | None, step_fn: Callable | None = None) -> tuple[Carry, int]:
    r"""Run steps ``first + 1 .. first + count``, stopping before a step once every sample has halted.

    .. math:: \text{acc}_R \mathrel{+}= h_t\, R(\text{state}_t),\qquad
              \text{expected} \mathrel{+}= t\, h_t,\qquad \text{faults} \mathrel{+}= f_t

    Args:
        carry: the carry after step ``first``.
        first: steps already run.
        count: at most this many steps.
        fields, config, backend: as in :func:`~ncl.machine.interpreter.step`.
        step_fn: a replacement for :func:`~ncl.machine.interpreter.step` with its signature (the benchmark
            passes ``torch.compile`` of the reference step); default ``step``.

    Returns:
        ``(carry', done)``: the carry after the last step run, and how many steps ran (``< count`` only when
        every sample halted).
    """
    kernel = fused_run.kernel_for(config, carry.state.ip, backend, step_fn)
    if kernel is not None and not fused_run.needs_graph((*fields, *_flat(carry))):
        flat, done = fused_run.run(_flat(carry), first, count, fields, config, kernel)
        return _unflat(flat), done
    step_fn = step if step_fn is None else step_fn
    state, acc_reg, acc_mem, expected, faults = carry
    done = 0
    for t in range(first + 1, first + count + 1):
        if _halted(state, config):
            break
        state, outcome = step_fn(state, fields, config, backend=backend)
        acc_reg, acc_mem, expected = halting_accumulate(acc_reg, acc_mem, expected, state.reg, state.mem,
                                                        outcome.halted, t, backend=backend)
        faults = faults + outcome.faults
        done += 1
    return Carry(state, acc_reg, acc_mem, expected, faults), done


def _checkpointed_chunk(fields: ProgramFields, config: MachineConfig, backend: str | None, first: int, count: int,
                        step_fn: Callable | None):
    """A function of the flat carry for :func:`checkpoint`: tensors in, tensors out (plus the step count)."""

    def chunk(*flat: torch.Tensor):
        carry, done = advance(_unflat(flat), first, count, fields, config, backend, step_fn)
        return (*_flat(carry), torch.tensor(done))

    return chunk


def _finish(carry: Carry, steps: int, backend: str | None = None) -> RunResult:
    r"""Readouts :math:`\hat R = \sum_t h_t R(\text{state}_t) + \rho_T R(\text{state}_T)` and the ponder cost."""
    state = carry.state
    rho = state.ip.sum(-1)
    # The mass still running is read out at the end, as if it halted at step T.
    regs, mem, expected = halting_accumulate(carry.acc_reg, carry.acc_mem, carry.expected, state.reg, state.mem,
                                             rho, steps, backend=backend)
    return RunResult(regs[:, 0], regs, mem, rho, expected, steps, carry.faults)


def check_run_options(grad_mode: str, chunk: int) -> None:
    """Raise ``ValueError`` naming the argument unless ``grad_mode`` and ``chunk`` are valid."""
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")


def machine_run(fields: ProgramFields, config: MachineConfig, ip: torch.Tensor, reg: torch.Tensor,
                mem: torch.Tensor, max_steps: int, *, grad_mode: str = "checkpoint", chunk: int = DEFAULT_CHUNK,
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
        chunk: ``k``, steps per chunk (checkpoint interval, and the truncation window).
        backend: force a kernel backend for every op; default: dispatch (``NCL_BACKEND``, then fastest).
        step_fn: as in :func:`advance`.

    Returns:
        a :class:`~ncl.machine.interpreter.RunResult`; the values do not depend on ``grad_mode`` or ``chunk``.
    """
    check_run_options(grad_mode, chunk)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    state = initial_state(ip, reg, mem, config.stack)
    zero = reg.new_zeros(reg.shape[0])
    carry = Carry(state, torch.zeros_like(reg), torch.zeros_like(mem), zero, zero.clone())
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (*fields, ip, reg, mem))
    if not needs_graph or grad_mode == "full":
        carry, steps = advance(carry, 0, max_steps, fields, config, backend, step_fn)
        return _finish(carry, steps, backend)
    if grad_mode == "checkpoint":
        return _run_checkpointed(carry, fields, config, max_steps, chunk, backend, step_fn)
    return _run_truncated(carry, fields, config, max_steps, chunk, backend, step_fn)


def _run_checkpointed(carry: Carry, fields: ProgramFields, config: MachineConfig, max_steps: int, chunk: int,
                      backend: str | None, step_fn: Callable | None) -> RunResult:
    kernel = fused_run.kernel_for(config, carry.state.ip, backend, step_fn)
    if kernel is not None:
        *flat, total = fused_run.CheckpointedRun.apply(config, max_steps, chunk, kernel, backend, *fields,
                                                       *_flat(carry))
        return _finish(_unflat(flat), int(total), backend)
    steps = 0
    while steps < max_steps:
        count = min(chunk, max_steps - steps)
        *flat, done = checkpoint(_checkpointed_chunk(fields, config, backend, steps, count, step_fn), *_flat(carry),
                                 use_reentrant=False)
        carry = _unflat(flat)
        steps += int(done)
        if int(done) < count:  # every sample halted inside the chunk
            break
    return _finish(carry, steps, backend)


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
        carry = Carry(MachineState(*(t.detach() for t in carry.state)), *(t.detach() for t in _flat(carry)[7:]))
        carry, again = advance(carry, window_start, chunk, fields, config, backend, step_fn)
        again += window_start
    if again != steps:  # the re-run makes the same halting decisions on the same values
        raise RuntimeError(f"machine_run: the truncated re-run took {again} steps, the first pass {steps}")
    return _finish(carry, steps, backend)
