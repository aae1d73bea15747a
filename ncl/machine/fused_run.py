r"""The whole-run kernel ``ncl::machine_run_fwd``: ``k`` machine steps per call, each sample in its own C++ loop.

:func:`ncl.machine.run.advance` calls it instead of ``k`` :func:`~ncl.machine.interpreter.step` calls when

* the chosen backend is ``cpp`` (CPU; the default there) and the ALU is ``"table"``,
* the state is float32 or float64, no ``step_fn`` replaces the step,
* and no graph is needed (``torch.no_grad()``, or nothing requires grad): inference, evaluation, and the
  graph-free passes of the ``"truncated"`` backward.

With a graph and ``grad_mode="checkpoint"``, :class:`CheckpointedRun` runs the forward on the kernel too,
keeping only the carry entering each chunk, and its backward is the kernel's backward
(``ncl::machine_run_bwd``): per chunk, per sample, it recomputes the chunk's steps from the kept carry and
applies each step's hand-written adjoint. Training memory is O(B·state·(T/k + k)): the kept carries, plus
one chunk's states per sample while its backward runs.

The kernel computes the same formulas as the step ops (``csrc/cpu/machine.cpp``), in a different order of
some fp32 sums: values and gradients agree to rounding (tested against the reference and against autograd
through the step ops). Early exit is the batch's, as in ``advance``: a step runs unless every sample's running
mass is below ``halt_eps``. On a GPU the run stays a loop of fused step ops (no whole-run CUDA or Triton
kernel yet).
"""

from __future__ import annotations

import torch

from ncl.machine.config import NORM_EPS, MachineConfig
from ncl.machine.state import ProgramFields
from ncl_kernels import _ext, dispatch

#: Carry tensors, in the kernel's order (``ncl.machine.run.Carry`` flattened).
CARRY_SIZE = 11


def _fake_run(op, a, b, d, imm, tgt, carry, first, count, halt_eps, norm_eps):
    """Shapes of ``ncl::machine_run_fwd``: the carry's, then a 0-dim int64 step count (its value is data)."""
    return [torch.empty_like(t, memory_format=torch.contiguous_format) for t in carry] + [
        torch.empty((), dtype=torch.int64, device=carry[0].device)]


def eligible(config: MachineConfig, ip: torch.Tensor, backend: str | None, step_fn) -> bool:
    """True when the kernel computes this run: backend ``cpp``, table ALU, fp32/fp64, no ``step_fn``."""
    if step_fn is not None or config.alu != "table" or ip.dtype not in (torch.float32, torch.float64):
        return False
    return dispatch.select(ip.device, ip.dtype, backend) == "cpp" and _ext.load()[0] is not None


def needs_graph(tensors) -> bool:
    """True when autograd records: grad mode is on and some input requires grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def run_steps(flat_carry: tuple[torch.Tensor, ...], first: int, count: int, fields: ProgramFields,
              config: MachineConfig) -> tuple[tuple[torch.Tensor, ...], int]:
    """Steps ``first + 1 .. first + count`` on the kernel; returns the new flat carry and the steps run."""
    out = torch.ops.ncl.machine_run_fwd(*fields, list(flat_carry), first, count, config.halt_eps, NORM_EPS)
    return tuple(out[:CARRY_SIZE]), int(out[CARRY_SIZE])


#: Steps per kernel call in a graph-free run. Each call runs every sample for all its steps and finds the
#: batch's early exit afterwards, so a short chunk bounds the steps wasted after the last sample halts (a
#: run with ``max_steps`` = 20,000 whose samples halt after 100 steps must not run 20,000); each call also
#: copies the carry once, which is cheap next to 32 steps.
RUN_CHUNK = 32


def run(flat_carry: tuple[torch.Tensor, ...], first: int, count: int, fields: ProgramFields,
        config: MachineConfig) -> tuple[tuple[torch.Tensor, ...], int]:
    """Up to ``count`` steps in kernel calls of :data:`RUN_CHUNK`, stopping once every sample has halted."""
    done = 0
    while done < count:
        size = min(RUN_CHUNK, count - done)
        flat_carry, ran = run_steps(flat_carry, first + done, size, fields, config)
        done += ran
        if ran < size:
            break
    return flat_carry, done


def _fake_bwd(op, a, b, d, imm, tgt, carry, grad, first, count, norm_eps):
    """Shapes of ``ncl::machine_run_bwd``: the six fields' gradients, then the carry's."""
    return [torch.empty_like(t, memory_format=torch.contiguous_format) for t in (op, a, b, d, imm, tgt, *carry)]


if _ext.load()[0] is not None:
    torch.library.register_fake("ncl::machine_run_fwd", _fake_run)
    torch.library.register_fake("ncl::machine_run_bwd", _fake_bwd)


class CheckpointedRun(torch.autograd.Function):
    """The ``"checkpoint"`` run on the kernel, forward and backward.

    ``forward(ctx, config, max_steps, chunk, *fields, *carry)`` returns the final carry (11 tensors) and the
    step count (a 0-dim int64 tensor, not differentiable), keeping the carry entering each chunk. The
    backward calls ``ncl::machine_run_bwd`` once per chunk, last chunk first: it recomputes the chunk's
    steps from the kept carry and applies each step's hand-written adjoint (``csrc/cpu/machine_bwd.cpp``).
    """

    @staticmethod
    def forward(ctx, config, max_steps, chunk, *tensors):
        fields, carry = ProgramFields(*tensors[:6]), tuple(tensors[6:])
        starts, counts, kept = [], [], []
        steps = 0
        with torch.no_grad():
            while steps < max_steps:
                count = min(chunk, max_steps - steps)
                kept.extend(carry)
                carry, done = run_steps(carry, steps, count, fields, config)
                starts.append(steps)
                counts.append(done)
                steps += done
                if done < count:
                    break
        ctx.starts, ctx.counts = starts, counts
        ctx.save_for_backward(*fields, *kept)
        total = torch.tensor(steps)
        ctx.mark_non_differentiable(total)
        return (*carry, total)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        fields, kept = saved[:6], saved[6:]
        grads = [torch.zeros_like(t) if g is None else g.contiguous()
                 for g, t in zip(grads[:CARRY_SIZE], kept[:CARRY_SIZE])]
        field_grads = [torch.zeros_like(f) for f in fields]
        for i in reversed(range(len(ctx.starts))):
            if ctx.counts[i] == 0:
                continue
            carry_in = list(kept[i * CARRY_SIZE:(i + 1) * CARRY_SIZE])
            out = torch.ops.ncl.machine_run_bwd(*fields, carry_in, grads, ctx.starts[i], ctx.counts[i], NORM_EPS)
            for j in range(6):
                field_grads[j] += out[j]
            grads = list(out[6:])
        return (None, None, None, *field_grads, *grads)
