"""The checks every fused op must pass, written once.

``tests/test_op_conformance.py`` runs them on every op of the registry (``ncl_kernels._oplib.OPS``) with the
op's own sample inputs (``OpSpec.sample``); the per-op test files call them on the inputs particular to the
op (odd sizes, hard values, faults). Nothing here knows an op: an op is its public function ``fn`` (whose
signature names the arguments), its arguments (tensors, and Python numbers that pass through, such as
``halting_accumulate``'s step ``t``), and, for the kernel-level checks, its ``OpSpec``. Ops with several
outputs get one random upstream gradient per output.

Tolerances come from :mod:`ncl_kernels.testing` only.
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from ncl_kernels import _ext, _oplib, dispatch
from ncl_kernels.testing import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
#: Backends that run float64 (the GPU backends take fp32, fp16 and bf16).
FLOAT64_BACKENDS = ["reference", "cpp"]


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


def as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def arg_names(fn) -> list[str]:
    """The names of ``fn``'s positional arguments (``backend=`` is keyword-only)."""
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _is_float_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def leaves(args, dtype, device) -> list:
    """``args`` with every floating-point tensor made a fresh leaf in ``dtype`` on ``device`` that requires
    grad; anything else (a step number) unchanged."""
    return [t.to(device=device, dtype=dtype).detach().requires_grad_() if _is_float_tensor(t) else t for t in args]


def _differentiable(fn, args) -> tuple[list[str], list[torch.Tensor]]:
    pairs = [(n, t) for n, t in zip(arg_names(fn), args) if _is_float_tensor(t)]
    return [n for n, _ in pairs], [t for _, t in pairs]


def _upstream(outs, seed: int = 1) -> list[torch.Tensor]:
    """One random float64 upstream gradient per output (the same ones for every backend)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, dtype=torch.float64, generator=g) for o in outs]


def _run_with_grads(fn, args, backend, dtype, device, upstream):
    xs = leaves(args, dtype, device)
    outs = as_tuple(fn(*xs, backend=backend))
    _, diff = _differentiable(fn, xs)
    grads = torch.autograd.grad(outs, diff, [u.to(device=device, dtype=dtype) for u in upstream])
    return outs, grads


def check_against_reference(fn, args, backend: str, dtype: torch.dtype) -> None:
    """Every output of ``fn`` on ``backend`` in ``dtype``, and the gradient of every floating-point input
    (through a random combination of all outputs), equal the float64 reference within ``TOLERANCES[dtype]``."""
    skip_unless_runnable(backend)
    device = device_for(backend)
    names, _ = _differentiable(fn, args)
    ref_xs = leaves(args, torch.float64, "cpu")
    ref_out = as_tuple(fn(*ref_xs, backend="reference"))
    upstream = _upstream(ref_out)
    ref_grads = torch.autograd.grad(ref_out, _differentiable(fn, ref_xs)[1], upstream)
    out, grads = _run_with_grads(fn, args, backend, dtype, device, upstream)
    assert len(out) == len(ref_out)
    for i, (o, r) in enumerate(zip(out, ref_out)):
        assert o.dtype == dtype and o.device.type == device
        assert_close(o.cpu(), r, dtype, f"{fn.__name__} output {i}")
    for name, g, r in zip(names, grads, ref_grads, strict=True):
        assert g.dtype == dtype
        assert_close(g.cpu(), r, dtype, f"{fn.__name__} grad of {name}")


def check_gradcheck(fn, args, backend: str) -> None:
    """``torch.autograd.gradcheck`` in float64 through every floating-point input."""
    skip_unless_runnable(backend)
    xs = leaves(args, torch.float64, "cpu")
    slots = [i for i, x in enumerate(xs) if _is_float_tensor(x)]

    def call(*tensors):
        full = list(xs)
        for i, t in zip(slots, tensors):
            full[i] = t
        return fn(*full, backend=backend)

    assert torch.autograd.gradcheck(call, [xs[i] for i in slots])


def check_opcheck(spec: _oplib.OpSpec, args, backend: str, part: str) -> None:
    """``torch.library.opcheck`` (schema, fake kernel, autograd registration, AOT dispatch) on the forward
    (``part="fwd"``) or backward kernel op of ``backend``, on the kernel arguments of ``args``; the backward
    must return one gradient per differentiable input after the pass-through ones, shaped like it.

    The backward takes one gradient per output, then the outputs if the op keeps them, then the forward's
    arguments (non-tensor ones in their places).
    """
    skip_unless_runnable(backend)
    device = device_for(backend)
    xs = spec.kernel_args(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in args))
    fwd = _oplib.kernel_op(spec.name, "fwd", backend)
    if part == "fwd":
        torch.library.opcheck(fwd, tuple(xs))
        return
    outs = as_tuple(fwd(*xs))
    assert len(outs) == spec.num_outputs
    grads = [u.to(device=device, dtype=o.dtype) for u, o in zip(_upstream(outs, seed=2), outs)]
    bwd_args = (*grads, *(outs if spec.saves_output else ()), *xs)
    bwd = _oplib.kernel_op(spec.name, "bwd", backend)
    torch.library.opcheck(bwd, bwd_args)
    got = as_tuple(bwd(*bwd_args))
    want = [x for x in xs[spec.passthrough:] if _is_float_tensor(x)]
    assert len(got) == len(want)
    for g, x in zip(got, want):
        assert g.shape == x.shape and g.dtype == x.dtype and g.device == x.device


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` in a strided view (every stride doubled), a leaf if ``t`` is one."""
    view = torch.stack([t.detach(), t.detach()], dim=-1)[..., 0]
    return view.requires_grad_(t.requires_grad)


def check_noncontiguous(fn, args, backend: str) -> None:
    """Strided inputs give the outputs and gradients of contiguous copies of them."""
    skip_unless_runnable(backend)
    device = device_for(backend)
    upstream = _upstream(as_tuple(fn(*args, backend="reference")))
    want_out, want_grads = _run_with_grads(fn, args, backend, torch.float32, device, upstream)
    views = [noncontiguous(t) if isinstance(t, torch.Tensor) else t for t in leaves(args, torch.float32, device)]
    assert any(isinstance(v, torch.Tensor) and not v.is_contiguous() for v in views)
    outs = as_tuple(fn(*views, backend=backend))
    grads = torch.autograd.grad(outs, _differentiable(fn, views)[1],
                                [u.to(device=device, dtype=torch.float32) for u in upstream])
    for i, (a, b) in enumerate(zip(outs, want_out, strict=True)):
        assert_close(a.cpu(), b.cpu(), torch.float32, f"{fn.__name__} output {i}")
    for name, a, b in zip(_differentiable(fn, args)[0], grads, want_grads, strict=True):
        assert_close(a.cpu(), b.cpu(), torch.float32, f"{fn.__name__} grad of {name}")


def check_compile(fn, args, backend: str) -> None:
    """``torch.compile(fullgraph=True, backend="aot_eager")`` traces the op on ``backend`` in one graph, with
    no graph break, and gives eager's outputs and gradients."""
    from torch._dynamo.testing import CompileCounterWithBackend

    skip_unless_runnable(backend)
    device = device_for(backend)
    upstream = _upstream(as_tuple(fn(*args, backend="reference")))
    want_out, want_grads = _run_with_grads(fn, args, backend, torch.float32, device, upstream)
    xs = leaves(args, torch.float32, device)
    torch._dynamo.reset()  # a fresh cache: the recompile limit must not send later ops back to eager
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(lambda *a: fn(*a, backend=backend), fullgraph=True, backend=counter)
    outs = as_tuple(compiled(*xs))
    assert counter.frame_count == 1
    grads = torch.autograd.grad(outs, _differentiable(fn, xs)[1],
                                [u.to(device=device, dtype=torch.float32) for u in upstream])
    for i, (a, b) in enumerate(zip(outs, want_out, strict=True)):
        assert_close(a.cpu(), b.cpu(), torch.float32, f"compiled {fn.__name__} output {i}")
    for name, a, b in zip(_differentiable(fn, args)[0], grads, want_grads, strict=True):
        assert torch.isfinite(a).all()
        assert_close(a.cpu(), b.cpu(), torch.float32, f"compiled {fn.__name__} grad of {name}")


def check_unused_outputs(fn, args, backend: str, used: int) -> None:
    """Only output ``used`` in the loss: the other outputs get zero gradients (autograd materialises them)
    and the input gradients equal the reference's."""
    skip_unless_runnable(backend)
    device = device_for(backend)
    ref_xs = leaves(args, torch.float64, "cpu")
    ref_diff = _differentiable(fn, ref_xs)[1]
    ref = torch.autograd.grad(as_tuple(fn(*ref_xs, backend="reference"))[used].sum(), ref_diff,
                              materialize_grads=True)
    xs = leaves(args, torch.float32, device)
    got = torch.autograd.grad(as_tuple(fn(*xs, backend=backend))[used].sum(), _differentiable(fn, xs)[1])
    for name, a, b in zip(_differentiable(fn, args)[0], got, ref, strict=True):
        assert_close(a.cpu(), b, torch.float32, f"{fn.__name__} grad of {name} (output {used} alone)")


def has_kernel(op: str, key: str) -> bool:
    """Whether the dispatcher op ``op`` ("ncl::name") has a kernel for dispatch key ``key``."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
    except RuntimeError as exc:  # the op is not defined at all
        raise AssertionError(f"{op} is not defined: {exc}") from exc


def check_kernels_registered(name: str) -> None:
    """``ncl::name_fwd`` and ``ncl::name_bwd`` have a CPU kernel (and a CUDA kernel when the extension was
    built with CUDA) from the extension, a fake (Meta) kernel, and Triton twins."""
    if _ext.load()[0] is None:
        pytest.skip("extension not built")
    for part in ("fwd", "bwd"):
        op = f"ncl::{name}_{part}"
        assert has_kernel(op, "CPU"), f"{op} has no CPU kernel: add its m.impl line to csrc/bindings.cpp"
        if _ext.cuda_compiled():
            assert has_kernel(op, "CUDA"), f"{op} has no CUDA kernel: add its m.impl line to csrc/bindings.cpp"
        assert has_kernel(op, "Meta"), f"{op} has no fake kernel"
        assert has_kernel(f"{op}_triton", "CompositeExplicitAutograd") and has_kernel(f"{op}_triton", "Meta")


def bad_variants(t: torch.Tensor) -> dict[str, tuple[object, str]]:
    """Bad replacements of a tensor argument (named by the message regex's ``{name}``): kind -> (value, regex)."""
    return {
        "rank": (t[None], r"{name} must have shape \(.*\), got shape " + re.escape(str((1, *t.shape)))),
        "dtype": (t.to(torch.int64), r"{name} must be float16, bfloat16, float32 or float64, got torch.int64"),
        "type": (t.tolist(), r"{name} must be a torch.Tensor"),
    }


def check_bad_input(fn, good, name: str, bad, match: str) -> None:
    """Replacing argument ``name`` by ``bad`` raises a ValueError that matches ``match`` (and names it)."""
    args = list(good)
    args[arg_names(fn).index(name)] = bad
    with pytest.raises(ValueError, match=match):
        fn(*args)


def check_every_bad_tensor_argument(fn, good, kind: str) -> None:
    """Each tensor argument of ``fn`` in turn replaced by its ``kind`` of bad value (:func:`bad_variants`)
    raises a ValueError that names that argument, prefixed by the op's name."""
    for name, t in zip(arg_names(fn), good):
        if isinstance(t, torch.Tensor):
            bad, match = bad_variants(t)[kind]
            check_bad_input(fn, good, name, bad, rf"^{fn.__name__}: " + match.format(name=re.escape(name)))
