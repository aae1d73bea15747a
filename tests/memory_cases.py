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


def check_opcheck(name: str, inputs, backend: str) -> None:
    """torch.library.opcheck on the fused forward and backward kernel ops."""
    skip_unless_runnable(backend)
    from ncl_kernels import _oplib

    device = device_for(backend)
    xs = [t.to(device) for t in inputs]
    out = _oplib.kernel_op(name, "fwd", backend)(*xs)
    torch.library.opcheck(_oplib.kernel_op(name, "fwd", backend), tuple(xs))
    saved = ([out] if _oplib._OPS[name].saves_output else []) + xs
    torch.library.opcheck(_oplib.kernel_op(name, "bwd", backend), (torch.randn_like(out), *saved))


def check_noncontiguous(op, inputs) -> None:
    """Transposed (non-contiguous) views give the same result as contiguous copies."""
    views = [t.transpose(0, -1).contiguous().transpose(0, -1) if t.dim() > 1 else t for t in inputs]
    assert any(not v.is_contiguous() for v in views)
    torch.testing.assert_close(op(*views, backend="cpp"), op(*inputs, backend="reference"), rtol=2e-5, atol=2e-5)


def check_compile(op, inputs) -> None:
    """torch.compile(fullgraph=True) runs the fused op without a graph break, forward and backward."""
    xs = leaves(inputs, torch.float32, "cpu")
    eager = op(*xs)
    compiled = torch.compile(lambda *a: op(*a), fullgraph=True, backend="aot_eager")(*xs)
    torch.testing.assert_close(compiled, eager)
    compiled.sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in xs)


def check_bad_input(op, good, name: str, bad, match: str) -> None:
    """Replacing argument ``name`` by ``bad`` raises a ValueError that names it."""
    import inspect

    params = list(inspect.signature(op).parameters)
    args = list(good)
    args[params.index(name)] = bad
    with pytest.raises(ValueError, match=match):
        op(*args)


__all__ = ["ncl_kernels"]
