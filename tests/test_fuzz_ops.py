"""Fuzzing the kernel ops: every op of the registry (``ncl_kernels._oplib.OPS``), through its public function
``spec.fn``, on its sample (``spec.sample``) perturbed: random sizes (zero included) of each axis, one argument
resized alone, dtypes (float16/bfloat16/float32/float64, integer, mixed), devices (cpu, meta, mixed), strided,
transposed and broadcast views, and NaN/±Inf values.

The contract: the result equals the float64 reference (outputs and gradients, within
``ncl_kernels.testing.TOLERANCES`` of the dtype), or a ``ValueError`` that starts with the op's name and names the
argument. Non-finite values are not scanned by default, and then the outputs are only promised their shapes and
dtypes (the fused kernels skip or clamp terms the reference multiplies through, so NaN may land elsewhere); with
``NCL_CHECK_FINITE=1`` they raise a ``ValueError`` naming the argument (docs/kernels.md, "Bad input").

An axis is found by its size in the sample (every sample gives each axis its own size), so resizing it resizes
it in every argument that has it. Examples per test scale with the hypothesis profile (``NCL_THOROUGH=1``: 10×).
"""

from __future__ import annotations

import contextlib
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ncl_kernels  # noqa: F401  (registers every op)
from ncl_kernels import _oplib
from ncl_kernels.testing import TOLERANCES, assert_close
from op_checks import arg_names, as_tuple, device_for, skip_unless_runnable

OPS = list(_oplib.OPS)
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SIZES = st.sampled_from([0, 1, 2, 3, 4, 5, 8])


def examples(n: int) -> int:
    """``n`` examples in CI; the profile's multiple of it under ``NCL_THOROUGH=1``."""
    return n * settings.default.max_examples // 100


def fuzz(n: int) -> settings:
    return settings(max_examples=examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def environ(**values: str | None):
    """Set (or, with None, unset) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def sample(name: str, seed: int = 0) -> list:
    return list(_oplib.OPS[name].sample(torch.Generator().manual_seed(seed)))


def axes(args) -> list[int]:
    return sorted({n for t in args if isinstance(t, torch.Tensor) for n in t.shape})


def resized(t: torch.Tensor, old: int, new: int, dims=None) -> torch.Tensor:
    """``t`` with every dim of size ``old`` (or those in ``dims``) cut or tiled to ``new``: the sample's values,
    repeated, so a resized input keeps the sample's kind of values (distributions stay near-distributions)."""
    for d, n in enumerate(t.shape):
        if n == old and (dims is None or d in dims):
            t = t.index_select(d, torch.arange(new) % max(old, 1))
    return t


def call(fn, args, **kw):
    """``("ok", outputs)`` or ``("error", ValueError)``; any other exception fails the test."""
    try:
        return "ok", as_tuple(fn(*args, **kw))
    except ValueError as exc:
        return "error", exc


def assert_names_an_argument(fn, exc: ValueError, name: str | None = None) -> None:
    text = str(exc)
    assert text.startswith(f"{fn.__name__}: "), text
    names = [name] if name else arg_names(fn)
    assert any(re.search(rf"\b{re.escape(n)}\b", text) for n in names), (names, text)


def check_matches_reference(fn, args, dtype: torch.dtype, backend: str, grads: bool = True) -> None:
    """``fn`` on ``backend`` in ``dtype`` equals the float64 reference on the CPU, outputs and (``grads``) the
    gradients of every floating-point input through a random combination of the outputs; or both raise one
    ValueError. The fused backend runs on its device (``device_for``)."""
    def prepared(dt, device):
        return [t.detach().to(device, dt).requires_grad_(grads) if isinstance(t, torch.Tensor)
                and t.is_floating_point() else t for t in args]

    ref_args, got_args = prepared(torch.float64, "cpu"), prepared(dtype, device_for(backend))
    ref_kind, ref = call(fn, ref_args, backend="reference")
    kind, got = call(fn, got_args, backend=backend)
    if ref_kind == "error" or kind == "error":
        assert (ref_kind, str(ref)) == (kind, str(got)), (ref, got)
        assert_names_an_argument(fn, got)
        return
    assert len(got) == len(ref)
    for i, (o, r) in enumerate(zip(got, ref)):
        assert o.dtype == dtype and o.shape == r.shape, (i, o.dtype, o.shape, r.shape)
        assert_close(o.detach().cpu(), r.detach(), dtype, f"{fn.__name__} output {i}")
    if not grads:
        return
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(r.shape, dtype=torch.float64, generator=g) for r in ref]
    diff = [i for i, t in enumerate(ref_args) if isinstance(t, torch.Tensor) and t.requires_grad]
    want = torch.autograd.grad(ref, [ref_args[i] for i in diff], upstream, allow_unused=True)
    have = torch.autograd.grad(got, [got_args[i] for i in diff], [u.to(o.device, dtype) for u, o in zip(upstream, got)],
                               allow_unused=True)
    for i, w, h in zip(diff, want, have):
        w = torch.zeros_like(ref_args[i]) if w is None else w
        h = torch.zeros_like(got_args[i]) if h is None else h
        assert_close(h.cpu(), w, dtype, f"{fn.__name__} grad of {arg_names(fn)[i]}")


# --- sizes ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPS)
@fuzz(20)
@given(data=st.data())
def test_random_sizes_match_the_reference(name, data):
    """Every axis resized at once (zero-size included), in a random float dtype, forward and backward on cpp."""
    args = sample(name)
    for n in axes(args):
        new = data.draw(st.one_of(st.just(n), SIZES), label=f"axis of size {n}")
        args = [resized(t, n, new) if isinstance(t, torch.Tensor) else t for t in args]
    dtype = data.draw(st.sampled_from(FLOATS), label="dtype")
    check_matches_reference(_oplib.OPS[name].fn, args, dtype, "cpp")


@pytest.mark.parametrize("name", OPS)
@fuzz(20)
@given(data=st.data())
def test_one_argument_resized_alone(name, data):
    """One dim of one argument resized, or a dim added or dropped: a ValueError naming that argument, or (an
    axis only that argument has) the reference's result."""
    fn = _oplib.OPS[name].fn
    args = sample(name)
    tensors = [i for i, t in enumerate(args) if isinstance(t, torch.Tensor)]
    i = data.draw(st.sampled_from(tensors), label="argument")
    t = args[i]
    how = data.draw(st.sampled_from(["resize", "add dim", "drop dim"]), label="how")
    if how == "resize" and t.dim():
        d = data.draw(st.integers(0, t.dim() - 1), label="dim")
        args[i] = resized(t, t.shape[d], data.draw(SIZES.filter(lambda s: s != t.shape[d])), dims={d})
    elif how == "add dim" or not t.dim():
        args[i] = t.unsqueeze(data.draw(st.integers(0, t.dim()), label="where"))
    else:
        args[i] = t.select(data.draw(st.integers(0, t.dim() - 1), label="dim"), 0)
    kind, result = call(fn, args)
    if kind == "error":
        assert_names_an_argument(fn, result, arg_names(fn)[i])
    else:
            check_matches_reference(fn, args, torch.float32, "cpp", grads=False)


# --- dtypes and devices ---------------------------------------------------------------------------------------

ODD_DTYPES = [*FLOATS, torch.int32, torch.int64, torch.bool, torch.complex64]


@pytest.mark.parametrize("name", OPS)
@fuzz(15)
@given(data=st.data())
def test_dtypes_and_devices(name, data):
    """Each tensor argument in its own dtype and on cpu or meta: one float dtype and one device run (meta gives
    the reference's shapes and dtype), anything else is a ValueError naming an argument."""
    fn = _oplib.OPS[name].fn
    args = sample(name)
    same = data.draw(st.booleans(), label="one dtype and device for all")
    dtype, device = data.draw(st.sampled_from(FLOATS)), data.draw(st.sampled_from(["cpu", "meta"]))
    for i, t in enumerate(args):
        if isinstance(t, torch.Tensor):
            if not same:
                dtype, device = data.draw(st.sampled_from(ODD_DTYPES)), data.draw(st.sampled_from(["cpu", "meta"]))
            args[i] = t.to(dtype=dtype, device=device)
    tensors = [t for t in args if isinstance(t, torch.Tensor)]
    uniform = len({(t.dtype, t.device) for t in tensors}) == 1 and tensors[0].is_floating_point()
    kind, result = call(fn, args)
    if not uniform:
        assert kind == "error", "mixed or non-float dtypes, or mixed devices, ran"
        assert_names_an_argument(fn, result)
        return
    assert kind == "ok", result
    _, ref = call(fn, [t.double() if isinstance(t, torch.Tensor) else t for t in sample(name)], backend="reference")
    for o, r in zip(result, ref, strict=True):
        assert (o.shape, o.dtype, o.device) == (r.shape, tensors[0].dtype, tensors[0].device)
        if o.device.type == "cpu":
            assert_close(o, r, o.dtype, fn.__name__)


# --- views ----------------------------------------------------------------------------------------------------

def view_of(t: torch.Tensor, how: str) -> torch.Tensor:
    """The values of ``t`` (or, for ``broadcast``, of its first slice) in a non-contiguous view."""
    if how == "strided":
        return torch.stack([t, t], dim=-1)[..., 0]
    if how == "transposed" and t.dim() >= 2:
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    if how == "broadcast" and t.dim() >= 1 and t.shape[0] > 0:
        return t[:1].expand_as(t)
    if how == "offset":
        return torch.cat([t.reshape(-1)[:1], t.reshape(-1)]).narrow(0, 1, t.numel()).view(t.shape)
    return t


@pytest.mark.parametrize("name", OPS)
@fuzz(10)
@given(data=st.data())
def test_non_contiguous_views(name, data):
    """Strided, transposed, stride-0 (expanded) and offset views give the reference's result on their values."""
    args = sample(name)
    hows = data.draw(st.lists(st.sampled_from(["strided", "transposed", "broadcast", "offset", "none"]),
                              min_size=len(args), max_size=len(args)), label="views")
    args = [view_of(t, how) if isinstance(t, torch.Tensor) else t for t, how in zip(args, hows)]
    check_matches_reference(_oplib.OPS[name].fn, args, torch.float32, "cpp")


# --- NaN and Inf ----------------------------------------------------------------------------------------------

@st.composite
def non_finite(draw, name: str):
    """The sample with NaN, +Inf or -Inf at random places of random tensor arguments; the arguments hit."""
    args = sample(name)
    hit = []
    for i, t in enumerate(args):
        if isinstance(t, torch.Tensor) and draw(st.booleans()):
            t = t.clone()
            for _ in range(draw(st.integers(1, 3))):
                t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([
                    float("nan"), float("inf"), -float("inf")]))
            args[i] = t
            hit.append(i)
    assume(hit)
    return args, hit


@pytest.mark.parametrize("name", OPS)
@fuzz(8)
@given(data=st.data())
def test_non_finite_values(name, data):
    """Default: no scan, the outputs have the reference's shapes and dtype. NCL_CHECK_FINITE=1: a ValueError
    naming the first argument hit."""
    fn = _oplib.OPS[name].fn
    args, hit = data.draw(non_finite(name))
    backend = data.draw(st.sampled_from(["reference", "cpp"]), label="backend")
    with environ(NCL_CHECK_FINITE=None):
        kind, outs = call(fn, args, backend=backend)
        assert kind == "ok", outs
        _, ref = call(fn, args, backend="reference")
        assert [(o.shape, o.dtype) for o in outs] == [(r.shape, r.dtype) for r in ref]
    with environ(NCL_CHECK_FINITE="1"):
        with pytest.raises(ValueError, match=rf"^{name}: {arg_names(fn)[hit[0]]} has \d+ non-finite value"):
            fn(*args, backend=backend)
        # Finite inputs pass the scan; meta tensors are not scanned.
        check_matches_reference(fn, sample(name), torch.float32, backend, grads=False)
        fn(*[t.to("meta") if isinstance(t, torch.Tensor) else t for t in args])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the Triton interpreter's NumPy
def test_content_address_infinite_strength_is_a_nan_row():
    """strength=inf: the softmax of ±inf logits is undefined, so that (b, h) row is NaN on every backend and the
    others are untouched (docs/kernels.md); NCL_CHECK_FINITE=1 names strength."""
    bank, keys, strength = sample("content_address")
    strength = strength.clone()
    strength[1, 0] = float("inf")
    ref = ncl_kernels.content_address(bank, keys, strength, backend="reference")
    assert ref[1, 0].isnan().all() and not ref.isnan().sum() - ref[1, 0].numel()
    for backend in ("cpp", "triton"):
        if backend == "triton":
            skip_unless_runnable(backend)
        got = ncl_kernels.content_address(bank, keys, strength, backend=backend)
        torch.testing.assert_close(got, ref, equal_nan=True, rtol=2e-5, atol=2e-5)
    with environ(NCL_CHECK_FINITE="1"), pytest.raises(ValueError, match="^content_address: strength has 1 non"):
        ncl_kernels.content_address(bank, keys, strength)


# --- Triton (under the interpreter on CPU: one tiny case an op) and CUDA ---------------------------------------

def tiny_sizes(name: str, data, sizes) -> list:
    args = sample(name)
    for n in axes(args):
        new = data.draw(st.one_of(st.just(n), sizes), label=f"axis of size {n}")
        args = [resized(t, n, new) if isinstance(t, torch.Tensor) else t for t in args]
    return args


@pytest.mark.parametrize("name", OPS)
@fuzz(1)
@given(data=st.data())
def test_triton_random_sizes(name, data):
    skip_unless_runnable("triton")
    check_matches_reference(_oplib.OPS[name].fn, tiny_sizes(name, data, st.sampled_from([0, 1, 2])),
                            torch.float32, "triton")


@pytest.mark.cuda
@pytest.mark.parametrize("name", OPS)
@fuzz(20)
@given(data=st.data())
def test_cuda_random_sizes(name, data):
    skip_unless_runnable("cuda")
    dtype = data.draw(st.sampled_from(FLOATS[:1] + FLOATS[2:]), label="dtype")
    check_matches_reference(_oplib.OPS[name].fn, tiny_sizes(name, data, SIZES), dtype, "cuda")


# --- what the fuzzers found -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["alu_mix", "control"])
def test_empty_batch_and_empty_program_match_the_reference(name):
    """Found by the fuzzers: the references of alu_mix (B = 0) and control (L = 0) raised where the fused kernels
    return empty results; both now agree."""
    args = sample(name)
    size = args[0].shape[0] if name == "alu_mix" else args[0].shape[1]
    args = [resized(t, size, 0) if isinstance(t, torch.Tensor) else t for t in args]
    check_matches_reference(_oplib.OPS[name].fn, args, torch.float32, "cpp")
