"""The conformance suite: every op of the registry (``ncl_kernels._oplib.OPS``) passes the same checks, on
its own sample inputs (``OpSpec.sample``). Registering an op enrols it; its test file keeps only what is
particular to it (docs/kernels.md, "Adding an op").

Per op:

* its kernels are registered: ``ncl::X_fwd``/``ncl::X_bwd`` on CPU (and CUDA when built with it), fake
  kernels, Triton twins; its Triton module exports ``X_fwd``, ``X_bwd`` and ``COMPILE_TARGETS`` (so the
  sm_90a compile check, ``scripts/compile_triton_sm90.py``, covers it);
* ``torch.library.opcheck`` of the forward and backward kernel ops on every fused backend (schema, fake
  kernel, autograd registration, AOT dispatch), and the backward's gradient count and shapes;
* ``torch.compile(fullgraph=True, backend="aot_eager")``, forward and backward, equal to eager;
* strided inputs equal contiguous ones, outputs and gradients;
* float64 ``gradcheck`` on every backend that runs float64;
* every output and every input gradient of each fused backend against the float64 reference, in fp32, fp16
  and bf16 (tolerances: ``ncl_kernels.testing``);
* an op with several outputs: each output alone in the loss, the others get zero gradients;
* a wrong-rank, integer or non-tensor tensor argument raises a ValueError naming it.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import ncl_kernels  # noqa: F401  (registers every op)
from ncl_kernels import _oplib
from op_checks import (DTYPES, FLOAT64_BACKENDS, check_against_reference, check_compile,
                       check_every_bad_tensor_argument, check_gradcheck, check_kernels_registered,
                       check_noncontiguous, check_opcheck, check_unused_outputs, fused_backends)

OPS = list(_oplib.OPS)
MULTI_OUTPUT = [(name, used) for name, spec in _oplib.OPS.items() if spec.num_outputs > 1
                for used in range(spec.num_outputs)]


def sample(name: str, seed: int = 0) -> tuple:
    return _oplib.OPS[name].sample(torch.Generator().manual_seed(seed))


#: Ops whose checks take seconds each: the circuit ALU's Triton kernels under the CPU interpreter (5 to 15 s).
SLOW_OPS = {"alu_circuit_mix"}


@pytest.fixture(params=[pytest.param(op, marks=pytest.mark.slow) if op in SLOW_OPS else op for op in OPS])
def name(request) -> str:
    return request.param


def test_the_registry_holds_every_public_op():
    assert set(OPS) >= {"soft_read", "soft_write", "content_address", "alu_mix", "alu_circuit_mix",
                        "stack_update", "control", "halting_accumulate"}
    assert all(spec.fn is getattr(ncl_kernels, spec.name) for spec in _oplib.OPS.values())


def test_sample_is_valid_and_reproducible(name):
    spec = _oplib.OPS[name]
    args, again = sample(name), sample(name)
    for a, b in zip(args, again, strict=True):
        if isinstance(a, torch.Tensor):
            assert a.dtype == torch.float32 and a.device.type == "cpu" and a.abs().sum() > 0
            assert torch.equal(a, b)
        else:
            assert a == b
    outs = spec.fn(*args, backend="reference")
    assert len(outs) == spec.num_outputs if spec.num_outputs > 1 else isinstance(outs, torch.Tensor)


def test_kernels_are_registered(name):
    check_kernels_registered(name)


def test_triton_module_exports_the_op_and_its_compile_targets(name):
    pytest.importorskip("triton")
    spec = _oplib.OPS[name]
    assert spec.triton_module in _oplib.TRITON_MODULES
    module = importlib.import_module(spec.triton_module)
    assert callable(getattr(module, f"{name}_fwd")) and callable(getattr(module, f"{name}_bwd"))
    assert module.COMPILE_TARGETS and all({"name", "fn", "signature", "constexprs"} <= set(entry)
                                          for entry in module.COMPILE_TARGETS)


@pytest.mark.parametrize("part", ["fwd", "bwd"])
@pytest.mark.parametrize("backend", fused_backends())
def test_opcheck(name, backend, part):
    check_opcheck(_oplib.OPS[name], sample(name), backend, part)


@pytest.mark.parametrize("backend", fused_backends())
def test_torch_compile_fullgraph(name, backend):
    check_compile(_oplib.OPS[name].fn, sample(name), backend)


@pytest.mark.parametrize("backend", fused_backends())
def test_noncontiguous_inputs(name, backend):
    check_noncontiguous(_oplib.OPS[name].fn, sample(name), backend)


@pytest.mark.parametrize("backend", FLOAT64_BACKENDS)
def test_gradcheck_float64(name, backend):
    check_gradcheck(_oplib.OPS[name].fn, sample(name), backend)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", fused_backends())
def test_matches_reference(name, backend, dtype):
    check_against_reference(_oplib.OPS[name].fn, sample(name), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("op, used", MULTI_OUTPUT, ids=[f"{n}-output{u}" for n, u in MULTI_OUTPUT])
def test_unused_outputs_get_zero_gradients(op, used, backend):
    check_unused_outputs(_oplib.OPS[op].fn, sample(op), backend, used)


@pytest.mark.parametrize("kind", ["rank", "dtype", "type"])
def test_bad_tensor_argument_is_named(name, kind):
    check_every_bad_tensor_argument(_oplib.OPS[name].fn, sample(name), kind)
