"""The machinery every fused op shares: kernel-op registration, fake kernels, and one autograd.Function.

Each op ``X`` of a family is a pair of dispatcher ops, ``ncl::X_fwd`` and ``ncl::X_bwd``:

* the C++ extension defines them (``csrc/bindings.cpp``) with CPU (``cpp``) and CUDA (``cuda``) kernels;
* the Triton backend defines ``ncl::X_fwd_triton`` and ``ncl::X_bwd_triton`` here, from the same schemas;
* all of them get fake (meta) kernels here, so ``torch.library.opcheck`` passes and ``torch.compile`` sees
  through them without a graph break.

``X_bwd(grad, *saved)`` returns one gradient for each differentiable input, in order, where ``saved`` is the
forward's output (if the op keeps it) followed by the inputs.

An op with several outputs (``num_outputs > 1``, e.g. ``stack_update``) returns them as a tuple, and its
backward takes one gradient per output, ``X_bwd(*grads, *saved)``; an output that the loss does not use
gets a zero gradient (autograd materialises it). A non-tensor input (a ``float`` in the schema) is passed
through unchanged, is given to the backward in its place among ``saved``, and gets no gradient: the
backward returns gradients for the tensor inputs only. An integer tensor input (e.g. ``alu_circuit_mix``'s
netlist) is saved like any tensor but gets no gradient either: the backward returns gradients for the
floating-point tensor inputs only. An op whose first outputs accumulate its first inputs (``OpSpec.passthrough``,
e.g. ``halting_accumulate``) hands those gradients on itself; its backward returns the others only.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from ncl_kernels import _ext

_LIB = torch.library.Library("ncl", "FRAGMENT")


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One fused op: its schemas (without the name), its forward fake, and where its Triton code lives."""

    fwd_schema: str
    bwd_schema: str
    fwd_fake: Callable[..., torch.Tensor]
    triton_module: str
    saves_output: bool = False
    num_outputs: int = 1
    #: The first ``passthrough`` inputs are accumulators (output ``i`` = input ``i`` + ...): their gradients are
    #: the outputs' gradients, handed on by the autograd Function, and the backward op does not return them.
    passthrough: int = 0


_OPS: dict[str, OpSpec] = {}


def _differentiable(t) -> bool:
    """Whether an op input gets a gradient from the backward: floating-point tensors only."""
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _bwd_fake(spec: OpSpec):
    skip = spec.num_outputs + (spec.num_outputs if spec.saves_output else 0)

    def fake(*args):
        return tuple(torch.empty_like(t) for t in args[skip + spec.passthrough:] if _differentiable(t))

    return fake


def _triton_impl(module: str, fn: str):
    def impl(*args):
        return getattr(importlib.import_module(module), fn)(*args)

    return impl


def register(name: str, spec: OpSpec) -> None:
    """Define ``name``'s Triton ops and the fake kernels of its native and Triton ops."""
    _OPS[name] = spec
    fakes = {"fwd": spec.fwd_fake, "bwd": _bwd_fake(spec)}
    schemas = {"fwd": spec.fwd_schema, "bwd": spec.bwd_schema}
    for part in ("fwd", "bwd"):
        triton_op = f"{name}_{part}_triton"
        _LIB.define(triton_op + schemas[part])
        _LIB.impl(triton_op, _triton_impl(spec.triton_module, f"{name}_{part}"), "CompositeExplicitAutograd")
        torch.library.register_fake(f"ncl::{triton_op}", fakes[part], lib=_LIB)
        if _ext.load()[0] is not None:
            torch.library.register_fake(f"ncl::{name}_{part}", fakes[part], lib=_LIB)


def kernel_op(name: str, part: str, backend: str):
    """The dispatcher op that runs ``part`` ("fwd" or "bwd") of ``name`` on ``backend``."""
    suffix = "_triton" if backend == "triton" else ""
    return getattr(torch.ops.ncl, f"{name}_{part}{suffix}").default


def schema(name: str, part: str) -> str:
    """The schema of ``name``'s ``part`` as text, for checking the C++ registration against it."""
    spec = _OPS[name]
    return f"ncl::{name}_{part}" + (spec.fwd_schema if part == "fwd" else spec.bwd_schema)


class FusedFunction(torch.autograd.Function):
    """Runs a registered op's fused forward, and its hand-written fused backward."""

    @staticmethod
    def forward(ctx, name: str, backend: str, *inputs):
        inputs = tuple(t.contiguous() if isinstance(t, torch.Tensor) else t for t in inputs)
        out = kernel_op(name, "fwd", backend)(*inputs)
        ctx.name, ctx.backend = name, backend
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        # Non-tensor inputs cannot go through save_for_backward: keep them, and where they sit.
        ctx.scalars = [(i, t) for i, t in enumerate(inputs) if not isinstance(t, torch.Tensor)]
        ctx.no_grad = {i for i, t in enumerate(inputs) if not _differentiable(t)}
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        ctx.save_for_backward(*(outs if _OPS[name].saves_output else ()), *tensors)
        return tuple(outs) if len(outs) > 1 else out

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        saved = list(ctx.saved_tensors)
        skip = len(grads) if _OPS[ctx.name].saves_output else 0
        for i, value in ctx.scalars:
            saved.insert(skip + i, value)
        tensor_grads = iter(kernel_op(ctx.name, "bwd", ctx.backend)(*(g.contiguous() for g in grads), *saved))
        n_inputs = len(saved) - skip
        passed = _OPS[ctx.name].passthrough
        return (None, None, *grads[:passed],
                *(None if i in ctx.no_grad else next(tensor_grads) for i in range(passed, n_inputs)))


def apply(name: str, backend: str, *inputs):
    """Run op ``name`` on a fused ``backend`` with autograd (a tuple for an op with several outputs)."""
    return FusedFunction.apply(name, backend, *inputs)
