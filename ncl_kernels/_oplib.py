"""The op registry: every fused op's schemas, fake kernels and Triton module, stated once, and the one
``autograd.Function`` that runs them.

Each op ``X`` is a pair of dispatcher ops, ``ncl::X_fwd`` and ``ncl::X_bwd``, defined here from the
schemas in its :class:`OpSpec`:

* the C++ extension only implements them (``csrc/bindings.cpp``: ``TORCH_LIBRARY_IMPL`` for CPU, the ``cpp``
  backend, and CUDA, the ``cuda`` backend); it declares no schema of its own;
* the Triton backend gets ``ncl::X_fwd_triton`` and ``ncl::X_bwd_triton`` from the same schemas, implemented
  by ``X_fwd``/``X_bwd`` of the op's Triton module;
* all of them get fake (meta) kernels, so ``torch.library.opcheck`` passes and ``torch.compile`` sees
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

Registering an op also enrols it in the conformance suite (``tests/test_op_conformance.py``): its public
function (``OpSpec.fn``) and random inputs (``OpSpec.sample``) are all the suite needs.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from ncl_kernels import dispatch

# Every ncl:: op is defined by this library; the extension (ncl_kernels._C) adds kernels to them.
_LIB = torch.library.Library("ncl", "DEF")


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One fused op.

    Args:
        name: the op's name ``X``; the dispatcher ops are ``ncl::X_fwd`` and ``ncl::X_bwd``.
        fn: the public function (checks its inputs, picks a backend, takes ``backend=``).
        fwd_schema, bwd_schema: the schemas without the name, e.g. ``"(Tensor bank, Tensor weights) -> Tensor"``.
        fwd_fake: the forward's fake kernel (shapes only).
        triton_module: the module holding ``X_fwd``, ``X_bwd`` and ``COMPILE_TARGETS``.
        sample: ``sample(generator) -> args``: small random valid arguments of ``fn`` (float32, CPU), never
            zeros, for the conformance suite.
        kernel_args: maps ``fn``'s arguments to the forward kernel's (default: the same), e.g. adding a
            netlist.
        saves_output: the backward takes the forward's output(s) before the inputs.
        num_outputs: outputs of the forward (a tuple when > 1).
        passthrough: the first ``passthrough`` inputs are accumulators (output ``i`` = input ``i`` + ...): their
            gradients are the outputs' gradients, handed on by the autograd Function, and the backward op
            does not return them.
    """

    name: str
    fn: Callable
    fwd_schema: str
    bwd_schema: str
    fwd_fake: Callable[..., torch.Tensor]
    triton_module: str
    sample: Callable[[torch.Generator], tuple]
    kernel_args: Callable[..., tuple] = lambda *args: args
    saves_output: bool = False
    num_outputs: int = 1
    passthrough: int = 0


#: Every registered op, by name, in registration order.
OPS: dict[str, OpSpec] = {}
#: Every module with Triton kernels to compile ahead of time (``scripts/compile_triton_sm90.py``): the ops'
#: and the whole-run machine kernel's.
TRITON_MODULES: list[str] = []


def _differentiable(t) -> bool:
    """Whether an op input gets a gradient from the backward: floating-point tensors only."""
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _bwd_fake(spec: OpSpec):
    skip = spec.num_outputs + (spec.num_outputs if spec.saves_output else 0)

    def fake(*args):
        return tuple(torch.empty_like(t) for t in args[skip + spec.passthrough:] if _differentiable(t))

    return fake


def _triton_impl(module: str, fn: str):
    # The Triton module is imported at the first call: importing Triton costs about a second.
    def impl(*args):
        return getattr(importlib.import_module(module), fn)(*args)

    return impl


def define(name: str, schema: str, fake: Callable) -> None:
    """Define the dispatcher op ``ncl::name`` from ``schema`` (without the name), with its fake kernel."""
    _LIB.define(name + schema)
    torch.library.register_fake(f"ncl::{name}", fake, lib=_LIB)


def add_triton_module(module: str) -> None:
    """Add ``module`` (which exports ``COMPILE_TARGETS``) to the ahead-of-time compile check."""
    if module not in TRITON_MODULES:
        TRITON_MODULES.append(module)


def register(spec: OpSpec) -> None:
    """Define ``spec``'s native and Triton dispatcher ops with their fake kernels, and enrol the op."""
    if spec.name in OPS:
        raise ValueError(f"op {spec.name!r} is already registered")
    OPS[spec.name] = spec
    add_triton_module(spec.triton_module)
    fakes = {"fwd": spec.fwd_fake, "bwd": _bwd_fake(spec)}
    schemas = {"fwd": spec.fwd_schema, "bwd": spec.bwd_schema}
    for part in ("fwd", "bwd"):
        define(f"{spec.name}_{part}", schemas[part], fakes[part])
        triton_op = f"{spec.name}_{part}_triton"
        define(triton_op, schemas[part], fakes[part])
        _LIB.impl(triton_op, _triton_impl(spec.triton_module, f"{spec.name}_{part}"), "CompositeExplicitAutograd")


def kernel_op(name: str, part: str, backend: str):
    """The dispatcher op that runs ``part`` ("fwd" or "bwd") of ``name`` on ``backend``."""
    suffix = "_triton" if backend == "triton" else ""
    return getattr(torch.ops.ncl, f"{name}_{part}{suffix}").default


class FusedFunction(torch.autograd.Function):
    """Runs a registered op's fused forward, and its hand-written fused backward."""

    @staticmethod
    def forward(ctx, name: str, backend: str, *inputs):
        inputs = tuple(t.contiguous() if isinstance(t, torch.Tensor) else t for t in inputs)
        ctx.device = next(t.device for t in inputs if isinstance(t, torch.Tensor))
        # Under torch.use_deterministic_algorithms(True), a kernel that adds with atomics refuses (or warns), as
        # PyTorch's own do: the forward here, the backward when it runs.
        dispatch.check_deterministic(name, backend, ctx.device, "fwd")
        out = kernel_op(name, "fwd", backend)(*inputs)
        ctx.name, ctx.backend = name, backend
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        # Non-tensor inputs cannot go through save_for_backward: keep them, and where they sit.
        ctx.scalars = [(i, t) for i, t in enumerate(inputs) if not isinstance(t, torch.Tensor)]
        ctx.no_grad = {i for i, t in enumerate(inputs) if not _differentiable(t)}
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        ctx.save_for_backward(*(outs if OPS[name].saves_output else ()), *tensors)
        return tuple(outs) if len(outs) > 1 else out

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        dispatch.check_deterministic(ctx.name, ctx.backend, ctx.device, "bwd")
        saved = list(ctx.saved_tensors)
        skip = len(grads) if OPS[ctx.name].saves_output else 0
        for i, value in ctx.scalars:
            saved.insert(skip + i, value)
        tensor_grads = iter(kernel_op(ctx.name, "bwd", ctx.backend)(*(g.contiguous() for g in grads), *saved))
        n_inputs = len(saved) - skip
        passed = OPS[ctx.name].passthrough
        return (None, None, *grads[:passed],
                *(None if i in ctx.no_grad else next(tensor_grads) for i in range(passed, n_inputs)))


def apply(name: str, backend: str, *inputs):
    """Run op ``name`` on a fused ``backend`` with autograd (a tuple for an op with several outputs)."""
    return FusedFunction.apply(name, backend, *inputs)
