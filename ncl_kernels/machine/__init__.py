r"""The whole-run machine op: ``k`` machine steps (docs/design.md §3) per call, and the autograd Function that
checkpoints a run on it. Shaped like every op: :mod:`~ncl_kernels.machine.reference` is the loop of step ops
(:func:`~ncl_kernels.machine.reference.advance_steps`), and the fused kernels run each sample's steps in its
own loop or program:

* ``cpp`` (CPU): ``ncl::machine_run_fwd`` and its backward ``ncl::machine_run_bwd`` (``csrc/cpu/machine.cpp``,
  ``csrc/cpu/machine_bwd.cpp``), per-sample C++ loops; their schemas are defined here.
* ``triton`` (a GPU, with the ``cuda`` or ``triton`` backend): :func:`ncl_kernels.machine.triton.machine_run_fwd`,
  one Triton program per sample looping over the steps, and its backward
  :func:`ncl_kernels.machine.triton_bwd.machine_run_bwd` (the CPU backward's algorithm, one launch per chunk).
  There is no CUDA C++ whole-run kernel.

:func:`advance` calls a kernel instead of the loop when :func:`kernel_for` names one (table ALU; fp32/fp64 on
``cpp``, fp32 on ``triton``; no ``step_fn``) and no graph is needed (``torch.no_grad()``, or nothing requires
grad): inference, evaluation, and the graph-free passes of the ``"truncated"`` backward.

With a graph and ``grad_mode="checkpoint"`` (``ncl.machine.run``), :class:`CheckpointedRun` runs the forward on
the kernel too, keeping only the carry entering each chunk. Its backward, per chunk, last chunk first: on
``cpp`` the kernel's backward (per sample, it recomputes the chunk's steps from the kept carry and applies each
step's hand-written adjoint); on ``triton`` the same algorithm in one Triton kernel
(:mod:`~ncl_kernels.machine.triton_bwd`). :func:`_recomputed_chunk_grads` (the chunk run again with the fused
step ops under autograd) is kept as a reference for it.
Training memory is O(B·state·(T/k + k)): the kept carries, plus one chunk's recomputation (on ``cpp``, plus the
kept ALU rows, O(B·n·T): one carry's size every C + K + 2S steps or so).

The kernels compute the same formulas as the step ops, in a different order of some fp32 sums: values and
gradients agree to rounding (tested against the reference and against autograd through the step ops; the
Triton kernel under ``TRITON_INTERPRET=1``). Early exit is the batch's: a step runs unless every sample's
running mass is below ``halt_eps``.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from ncl_kernels import _ext, _oplib, dispatch
from ncl_kernels.machine.config import ALUS, NORM_EPS, MachineConfig
from ncl_kernels.machine.reference import advance_steps, halted
from ncl_kernels.machine.state import (CARRY_SIZE, FIRST_ACCUMULATOR, Carry, MachineState, ProgramFields, initial_carry,
                                       initial_state)
from ncl_kernels.machine.step import StepOutcome, step

__all__ = ["ALUS", "CARRY_SIZE", "Carry", "CheckpointedRun", "FIRST_ACCUMULATOR", "MachineConfig", "MachineState",
           "NORM_EPS", "ProgramFields", "READS_OUT", "RUN_CHUNK", "StepOutcome", "advance", "advance_steps", "halted",
           "initial_carry", "initial_state", "kernel_for", "needs_graph", "pass_accumulator_grads", "reads_out",
           "run_kernel", "run_steps", "step"]

_oplib.add_triton_module("ncl_kernels.machine.triton")
_oplib.add_triton_module("ncl_kernels.machine.triton_bwd")


def _fake_run(op, a, b, d, imm, tgt, carry, first, count, halt_eps, norm_eps, keep_tape=False, run_steps=-1):
    """Shapes of ``ncl::machine_run_fwd``: the carry's, then a 0-dim int64 step count (its value is data), then
    with ``keep_tape`` the backward's tape rows: ALU rows and LOAD rows ``(B, count, n)`` (the first ``done`` are
    the run's), and ``invertible`` ``(B,)`` (:data:`TAPE`). ``run_steps`` (the run's step limit, -1: none) changes
    values only: a call in which the run ends also reads out the mass still running (:func:`run_steps`)."""
    out = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in carry] + [
        torch.empty((), dtype=torch.int64, device=carry[0].device)]
    if keep_tape:
        batch, n = carry[1].shape[0], carry[1].shape[2]
        out += [carry[1].new_empty((batch, count, n)), carry[1].new_empty((batch, count, n)),
                carry[1].new_empty((batch,))]
    return out


#: The whole-run kernels whose :class:`CheckpointedRun` reads the run out itself (:func:`run_steps`'s
#: ``max_steps``): on them it saves :func:`ncl.machine.run.finish` a ``halting_accumulate`` op, a pass over the
#: batch's registers and memory each way.
READS_OUT = ("cpp",)


def reads_out(kernel: str, max_steps: int) -> bool:
    """Whether :class:`CheckpointedRun` on ``kernel`` returns the run's readouts as its accumulators: on a kernel
    in :data:`READS_OUT`, when the run takes a kernel call at all (``max_steps > 0``)."""
    return kernel in READS_OUT and max_steps > 0


#: What ``ncl::machine_run_fwd`` keeps with ``keep_tape`` for the backward's tape pass, after the carry and the step
#: count: each step's ALU mixture row and LOAD read ``(B, count, n)``, and per sample 1 where the backward inverts
#: every memory write of the steps (their ``|a| <= 1/32``), so that its tape pass takes the LOAD reads and leaves
#: the memory alone, its walk back starting from the memory after the steps (``csrc/cpu/machine_bwd.cpp``).
TAPE = ("alu", "load", "invertible")


def kernel_for(config: MachineConfig, ip: torch.Tensor, backend: str | None, step_fn) -> str | None:
    """The whole-run kernel that computes this run, ``"cpp"`` or ``"triton"``, or ``None`` (a loop of steps).

    ``cpp``: the dispatched backend is ``cpp`` (CPU), fp32 or fp64. ``triton``: fp32 with the ``cuda`` backend
    on a GPU, or the ``triton`` backend (a GPU, or CPU tensors under ``TRITON_INTERPRET=1``). Both need the
    table ALU and no ``step_fn``. ``NCL_WHOLE_RUN=0`` in the environment turns both off (the run is then a loop
    of fused step ops): a switch to compare the two, or to step around a kernel that misbehaves.
    """
    if os.environ.get("NCL_WHOLE_RUN", "1") == "0":
        return None
    if step_fn is not None or config.alu != "table" or ip.dtype not in (torch.float32, torch.float64):
        return None
    chosen = dispatch.select(ip.device, ip.dtype, backend)
    if chosen == "cpp":
        return "cpp" if _ext.load()[0] is not None else None
    if ip.dtype == torch.float32 and dispatch.unavailable_reason("triton") is None and (
            chosen == "triton" or (chosen == "cuda" and ip.device.type == "cuda")):
        dispatch.check_deterministic("machine_run", "triton", ip.device)
        return "triton"
    return None


def needs_graph(tensors) -> bool:
    """True when autograd records: grad mode is on and some input requires grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def run_steps(flat_carry: tuple[torch.Tensor, ...], first: int, count: int, fields: ProgramFields,
              config: MachineConfig, kernel: str = "cpp", tapes: list | None = None,
              max_steps: int = -1) -> tuple[tuple[torch.Tensor, ...], int]:
    """Steps ``first + 1 .. first + count`` on ``kernel``; returns the new flat carry and the steps run. Given
    ``tapes`` (``cpp`` only), the run's tape rows (:data:`TAPE`, the rows cut to the ``done`` steps run) are
    appended to it as one tuple. Given the run's ``max_steps`` (``cpp`` only), a call in which the run ends (the
    batch halts in it, or it reaches ``max_steps``) also reads out the mass still running after its last step,
    as :func:`ncl.machine.run.finish` does: the accumulators it returns are then the run's readouts."""
    if kernel == "cpp":
        op = torch.ops.ncl.machine_run_fwd
    elif tapes is not None or max_steps >= 0:
        raise ValueError(f"tapes, max_steps: only the cpp kernel keeps its tape rows and reads the run out, "
                         f"not {kernel!r}")
    else:
        # Imported at the first call: Triton costs about a second to import, and CPU runs never need it.
        from ncl_kernels.machine import triton as machine_triton

        op = machine_triton.machine_run_fwd
    cpp_args = (tapes is not None, max_steps) if kernel == "cpp" else ()
    out = op(*fields, list(flat_carry), first, count, config.halt_eps, NORM_EPS, *cpp_args)
    done = int(out[CARRY_SIZE])
    if tapes is not None:
        alu, load, invertible = out[CARRY_SIZE + 1:]
        tapes.append((alu[:, :done], load[:, :done], invertible))
    return tuple(out[:CARRY_SIZE]), done


#: Steps per kernel call in a graph-free run, and at most per call in :class:`CheckpointedRun`'s forward. Each
#: call runs every sample for all its steps and finds the batch's early exit afterwards, so a short call bounds
#: the steps wasted after the last sample halts (a run with ``max_steps`` = 20,000 whose samples halt after 100
#: steps must not run 20,000); each call also copies the carry once, which is cheap next to 32 steps.
RUN_CHUNK = 32


def run_kernel(flat_carry: tuple[torch.Tensor, ...], first: int, count: int, fields: ProgramFields,
               config: MachineConfig, kernel: str = "cpp", tapes: list | None = None,
               max_steps: int = -1) -> tuple[tuple[torch.Tensor, ...], int]:
    """Up to ``count`` steps in kernel calls of :data:`RUN_CHUNK`, stopping once every sample has halted.
    ``tapes`` and ``max_steps`` as in :func:`run_steps`; the calls' tape rows are appended as one tuple for all
    the steps run (:func:`_joined_tapes`)."""
    done = 0
    calls = [] if tapes is not None else None
    while done < count:
        size = min(RUN_CHUNK, count - done)
        flat_carry, ran = run_steps(flat_carry, first + done, size, fields, config, kernel, calls, max_steps)
        done += ran
        if ran < size:
            break
    if tapes is not None:
        tapes.append(_joined_tapes(calls))
    return flat_carry, done


def _joined_tapes(calls: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Consecutive calls' tape rows (:data:`TAPE`) as one call's: the rows joined along the steps, and a sample
    invertible (1) only where it is in every call."""
    if len(calls) == 1:
        return calls[0]
    alu, load, invertible = zip(*calls)
    return torch.cat(alu, dim=1), torch.cat(load, dim=1), torch.stack(invertible).amin(0)


def _fake_bwd(op, a, b, d, imm, tgt, carry, grad, first, count, norm_eps, field_grads=True, alu=None, load=None,
              invertible=None, mem_after=None, finish=False):
    """Shapes of ``ncl::machine_run_bwd``: the six fields' gradients (empty without ``field_grads``), then the
    carry's, the accumulators' empty (:func:`pass_accumulator_grads`)."""
    fields = [torch.empty_like(t, memory_format=torch.contiguous_format) if field_grads else t.new_empty(0)
              for t in (op, a, b, d, imm, tgt)]
    return fields + [torch.empty_like(t, memory_format=torch.contiguous_format) if i < FIRST_ACCUMULATOR
                     else t.new_empty(0) for i, t in enumerate(carry)]


def pass_accumulator_grads(carry_grads: list[torch.Tensor], grad: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradient of a chunk's entering carry from ``machine_run_bwd``'s 11 ``carry_grads`` and the ``grad`` it
    was given: the accumulators (acc_reg, acc_mem, expected, faults, from ``FIRST_ACCUMULATOR`` on) pass through
    every step unchanged, so the backward ops return them as empty tensors instead of a copy of ``grad``'s (a
    fresh ``(B, C, n)`` tensor a chunk: 10-20 % of the sharp CPU run's forward+backward)."""
    return [*carry_grads[:FIRST_ACCUMULATOR], *grad[FIRST_ACCUMULATOR:]]


_oplib.define("machine_run_fwd", "(Tensor op, Tensor a, Tensor b, Tensor d, Tensor imm, Tensor tgt, Tensor[] carry,"
              " int first, int count, float halt_eps, float norm_eps, bool keep_tape=False, int run_steps=-1)"
              " -> Tensor[]", _fake_run)
_oplib.define("machine_run_bwd", "(Tensor op, Tensor a, Tensor b, Tensor d, Tensor imm, Tensor tgt, Tensor[] carry,"
              " Tensor[] grad, int first, int count, float norm_eps, bool field_grads=True, Tensor? alu=None,"
              " Tensor? load=None, Tensor? invertible=None, Tensor? mem_after=None, bool finish=False)"
              " -> Tensor[]", _fake_bwd)


def _recomputed_chunk_grads(fields, carry_in, grads, first: int, count: int, config: MachineConfig,
                            backend: str | None, field_grads: bool = True):
    """Gradients of one chunk by running it again with the fused step ops under autograd: the six fields'
    gradients (None without ``field_grads``), then the entering carry's. The reference for the ``triton``
    kernel's backward (:func:`ncl_kernels.machine.triton_bwd.machine_run_bwd`, which :class:`CheckpointedRun`
    calls), compared with it in tests/test_machine_triton_bwd.py."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(field_grads or i >= 6) for i, t in enumerate((*fields, *carry_in))]
        out, _ = advance_steps(Carry.unflat(leaves[6:]), first, count, ProgramFields(*leaves[:6]), config, backend)
        pairs = [(o, g) for o, g in zip(out.flat(), grads) if o.requires_grad]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return [t.grad if t.grad is not None else torch.zeros_like(t) if t.requires_grad else None for t in leaves]


class CheckpointedRun(torch.autograd.Function):
    """The ``"checkpoint"`` run on a whole-run kernel, forward and backward.

    ``forward(ctx, config, max_steps, chunk, kernel, backend, *fields, *carry)`` returns the final carry
    (11 tensors) and the step count (a 0-dim int64 tensor, not differentiable), keeping the carry entering
    each chunk, and on ``cpp`` the chunk's tape rows (:data:`TAPE`) and the memory leaving the run. It runs a
    chunk in kernel calls of at most :data:`RUN_CHUNK` steps (:func:`run_kernel`), so that the batch's early
    exit wastes at most one call's steps however long the chunk; only the chunk's first carry is kept. The backward
    handles one chunk at a time, last chunk first: on ``cpp``, ``ncl::machine_run_bwd`` recomputes the chunk's
    steps from the kept carry, with the kept ALU rows instead of computing them again (on dense rows they were
    most of that recomputation) and, for a sample whose memory writes it can invert, the kept LOAD reads instead
    of the memory's pass (its walk back starts from the memory leaving the chunk: the next chunk's kept carry's,
    or the run's), and applies each step's hand-written adjoint (``csrc/cpu/machine_bwd.cpp``); on ``triton``,
    the same algorithm in one Triton launch per chunk
    (:func:`ncl_kernels.machine.triton_bwd.machine_run_bwd`: a tape pass, then the walk back, one program per
    sample; its fields' gradients are summed with atomics, so their fp32 rounding varies from run to run).
    ``backend`` is kept for :func:`_recomputed_chunk_grads`, the step ops' reference for that kernel.

    Where :func:`reads_out` says so, the run also ends with its readout of the mass still running
    (:func:`ncl.machine.run.finish`), done by its last kernel call on each sample's state in cache (and its adjoint
    by the last chunk's backward call): the accumulators returned are then the run's readouts.
    """

    @staticmethod
    def forward(ctx, config, max_steps, chunk, kernel, backend, *tensors):
        fields, carry = ProgramFields(*tensors[:6]), tuple(tensors[6:])
        starts, counts, kept, tapes = [], [], [], []
        steps = 0
        ctx.reads_out = reads_out(kernel, max_steps)
        with torch.no_grad():
            while steps < max_steps:
                count = min(chunk, max_steps - steps)
                kept.extend(carry)
                carry, done = run_kernel(carry, steps, count, fields, config, kernel,
                                         tapes if kernel == "cpp" else None,
                                         max_steps if ctx.reads_out else -1)
                starts.append(steps)
                counts.append(done)
                steps += done
                if done < count:
                    break
        ctx.starts, ctx.counts, ctx.config, ctx.kernel, ctx.backend = starts, counts, config, kernel, backend
        ends = (carry[2],) if tapes else ()  # the memory leaving the last chunk
        ctx.save_for_backward(*fields, *kept, *(t for tape in tapes for t in tape), *ends)
        total = torch.tensor(steps)
        ctx.mark_non_differentiable(total)
        return (*carry, total)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        chunks = len(ctx.starts)
        fields, kept = saved[:6], saved[6:6 + chunks * CARRY_SIZE]
        tapes = saved[6 + chunks * CARRY_SIZE:]
        # The memory leaving chunk i: the one entering chunk i + 1, or the run's.
        mem_after = [kept[(i + 1) * CARRY_SIZE + 2] for i in range(chunks - 1)] + list(tapes[len(TAPE) * chunks:])
        grads = [torch.zeros_like(t) if g is None else g.contiguous()
                 for g, t in zip(grads[:CARRY_SIZE], kept[:CARRY_SIZE])]
        # A fixed library (training's default) needs no field gradients: its (L, L) jump-target gradient alone is
        # megabytes a chunk to zero and add.
        want = any(ctx.needs_input_grad[5:11])
        field_grads = [torch.zeros_like(f) for f in fields] if want else [None] * 6
        for i in reversed(range(len(ctx.starts))):
            # The last chunk read the run out (reads_out), even with no step of its own.
            finish = ctx.reads_out and i == chunks - 1
            if ctx.counts[i] == 0 and not finish:
                continue
            carry_in = list(kept[i * CARRY_SIZE:(i + 1) * CARRY_SIZE])
            if ctx.kernel == "cpp":
                out = torch.ops.ncl.machine_run_bwd(*fields, carry_in, grads, ctx.starts[i], ctx.counts[i],
                                                    NORM_EPS, want, *tapes[len(TAPE) * i:len(TAPE) * (i + 1)],
                                                    mem_after[i], finish)
            else:
                # Imported at the first call, as in run_steps.
                from ncl_kernels.machine import triton_bwd

                out = triton_bwd.machine_run_bwd(*fields, carry_in, grads, ctx.starts[i], ctx.counts[i], NORM_EPS,
                                                 want)
            if want:
                for j in range(6):
                    field_grads[j] += out[j]
            grads = pass_accumulator_grads(list(out[6:]), grads)
        return (None, None, None, None, None, *field_grads, *grads)


def advance(carry: Carry, first: int, count: int, fields: ProgramFields, config: MachineConfig,
            backend: str | None, step_fn: Callable | None = None) -> tuple[Carry, int]:
    """Steps ``first + 1 .. first + count`` on a whole-run kernel when one applies and no graph is needed,
    else :func:`~ncl_kernels.machine.reference.advance_steps` (same arguments and result)."""
    kernel = kernel_for(config, carry.state.ip, backend, step_fn)
    if kernel is not None and not needs_graph((*fields, *carry.flat())):
        flat, done = run_kernel(carry.flat(), first, count, fields, config, kernel)
        return Carry.unflat(flat), done
    return advance_steps(carry, first, count, fields, config, backend, step_fn)
