"""Shared test logic for the memory ops: each op's test file supplies its inputs and calls these."""

from __future__ import annotations

import pytest
import torch

import ncl_kernels
from ncl_kernels import dispatch
from ncl_kernels.testing import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def fused_backends():
    """cpp and triton on the machine at hand, cuda marked (skipped without a GPU)."""
    return [
        pytest.param("cpp", id="cpp"),
        pytest.param("triton", id="triton"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
    ]


def device_for(backend: str) -> str:
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def skip_unless_runnable(backend: str) -> None:
    reason = dispatch.unavailable_reason(backend)
    if reason:
        pytest.skip(f"{backend}: {reason}")


def leaves(tensors, dtype, device):
    return [t.to(device=device, dtype=dtype).detach().requires_grad_() for t in tensors]


def check_against_reference(op, inputs, backend: str, dtype: torch.dtype) -> None:
    """Forward and every input gradient of ``op`` on ``backend`` in ``dtype`` equal the float64 reference."""
    skip_unless_runnable(backend)
    device = device_for(backend)
    ref_in = leaves(inputs, torch.float64, "cpu")
    ref_out = op(*ref_in, backend="reference")
    upstream = torch.randn(ref_out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_grads = torch.autograd.grad(ref_out, ref_in, upstream)

    fused_in = leaves(inputs, dtype, device)
    out = op(*fused_in, backend=backend)
    assert out.dtype == dtype and out.device.type == device
    grads = torch.autograd.grad(out, fused_in, upstream.to(device=device, dtype=dtype))
    assert_close(out.cpu(), ref_out, dtype, f"{op.__name__} forward")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert g.dtype == dtype
        assert_close(g.cpu(), r, dtype, f"{op.__name__} grad of input {i}")


def check_gradcheck(op, inputs, backend: str) -> None:
    skip_unless_runnable(backend)
    leaves64 = leaves(inputs, torch.float64, "cpu")
    assert torch.autograd.gradcheck(lambda *xs: op(*xs, backend=backend), leaves64)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_opcheck(name: str, inputs, backend: str, extra=()) -> None:
    """torch.library.opcheck on the fused forward and backward kernel ops.

    ``extra`` holds trailing non-tensor arguments (e.g. a step number). The backward takes one gradient per
    output, then the saved tensors (the outputs if the op keeps them, then the inputs), then ``extra``.
    """
    skip_unless_runnable(backend)
    from ncl_kernels import _oplib

    device = device_for(backend)
    xs = [t.to(device) for t in inputs]
    fwd, bwd = _oplib.kernel_op(name, "fwd", backend), _oplib.kernel_op(name, "bwd", backend)
    outs = _as_tuple(fwd(*xs, *extra))
    torch.library.opcheck(fwd, (*xs, *extra))
    saved = (list(outs) if _oplib._OPS[name].saves_output else []) + xs
    torch.library.opcheck(bwd, (*(torch.randn_like(o) for o in outs), *saved, *extra))


def check_noncontiguous(op, inputs, extra=()) -> None:
    """Transposed (non-contiguous) views give the same result as contiguous copies."""
    views = [t.transpose(0, -1).contiguous().transpose(0, -1) if t.dim() > 1 else t for t in inputs]
    assert any(not v.is_contiguous() for v in views)
    fused = _as_tuple(op(*views, *extra, backend="cpp"))
    ref = _as_tuple(op(*inputs, *extra, backend="reference"))
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)


def check_compile(op, inputs, extra=()) -> None:
    """torch.compile(fullgraph=True) runs the fused op without a graph break, forward and backward."""
    xs = leaves(inputs, torch.float32, "cpu")
    eager = _as_tuple(op(*xs, *extra))
    compiled = _as_tuple(torch.compile(lambda *a: op(*a, *extra), fullgraph=True, backend="aot_eager")(*xs))
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in compiled).backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in xs)


def check_schema(name: str) -> None:
    """The C++ extension's schemas of ``name`` equal the Python specs the Triton ops are defined from."""
    from ncl_kernels import _ext, _oplib

    if _ext.load()[0] is None:
        pytest.skip("extension not built")
    for part in ("fwd", "bwd"):
        assert str(getattr(torch.ops.ncl, f"{name}_{part}").default._schema) == _oplib.schema(name, part)


def check_bad_input(op, good, name: str, bad, match: str) -> None:
    """Replacing argument ``name`` by ``bad`` raises a ValueError that names it."""
    import inspect

    params = list(inspect.signature(op).parameters)
    args = list(good)
    args[params.index(name)] = bad
    with pytest.raises(ValueError, match=match):
        op(*args)


__all__ = ["ncl_kernels"]
