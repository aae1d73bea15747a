r"""The whole run as a loop of steps: the reference of the whole-run kernels.

:func:`advance_steps` runs :func:`~ncl_kernels.machine.step.step` ``count`` times and adds each step's
readouts to the halting accumulators (``halting_accumulate``). Its ops dispatch like any op, so with
``backend="reference"`` it is the pure-PyTorch statement of the semantics, and on a fused backend it is the
loop of fused step ops that the whole-run kernels (``csrc/cpu/machine.cpp``, :mod:`ncl_kernels.machine.triton`)
compute in one call. Autograd runs through it.
"""

from __future__ import annotations

from typing import Callable

import torch

from ncl_kernels.halting import halting_accumulate
from ncl_kernels.machine.config import MachineConfig
from ncl_kernels.machine.state import Carry, MachineState, ProgramFields
from ncl_kernels.machine.step import step


def halted(state: MachineState, config: MachineConfig) -> bool:
    """True once every sample's running mass is below ``halt_eps`` (the batch's early exit)."""
    return bool(state.ip.sum(-1).max() < config.halt_eps)


def advance_steps(carry: Carry, first: int, count: int, fields: ProgramFields, config: MachineConfig,
                  backend: str | None, step_fn: Callable | None = None) -> tuple[Carry, int]:
    r"""Run steps ``first + 1 .. first + count``, stopping before a step once every sample has halted.

    .. math:: \text{acc}_R \mathrel{+}= h_t\, R(\text{state}_t),\qquad
              \text{expected} \mathrel{+}= t\, h_t,\qquad \text{faults} \mathrel{+}= f_t

    Args:
        carry: the carry after step ``first`` (shapes in :class:`~ncl_kernels.machine.state.Carry`).
        first: steps already run.
        count: at most this many steps.
        fields: the program's fields, in the state's dtype.
        config: machine sizes.
        backend: force a kernel backend for every op; default: dispatch.
        step_fn: a replacement for :func:`~ncl_kernels.machine.step.step` with its signature (the benchmark
            passes ``torch.compile`` of the reference step); default ``step``.

    Returns:
        ``(carry', done)``: the carry after the last step run, and how many steps ran (``< count`` only when
        every sample halted).
    """
    step_fn = step if step_fn is None else step_fn
    state, acc_reg, acc_mem, expected, faults = carry
    done = 0
    for t in range(first + 1, first + count + 1):
        if halted(state, config):
            break
        state, outcome = step_fn(state, fields, config, backend=backend)
        acc_reg, acc_mem, expected = halting_accumulate(acc_reg, acc_mem, expected, state.reg, state.mem,
                                                        outcome.halted, t, backend=backend)
        faults = faults + outcome.faults
        done += 1
    return Carry(state, acc_reg, acc_mem, expected, faults), done
