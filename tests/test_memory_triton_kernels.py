"""Direct tests of the Triton memory kernels (``ncl_kernels.memory.triton``: one module per op, shared
``tiling``) against ``reference.py``.

These call the raw forward/backward host functions, below the public API, so a failure points at a
kernel rather than at the autograd or dispatch wiring. On CPU they run under ``TRITON_INTERPRET=1``; it
must be set before Triton kernels are defined, so it is set here before the import (``conftest.py`` does
the same for the whole suite). Shapes are tiny because the interpreter is slow; a ``small_tiles`` variant
shrinks the tile budget so that the N and D loops, the masks and the cross-program workspaces are all
exercised at those sizes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")

from ncl_kernels.memory import reference as R  # noqa: E402
from ncl_kernels.memory.triton import content_address as TA  # noqa: E402
from ncl_kernels.memory.triton import soft_read as TR  # noqa: E402
from ncl_kernels.memory.triton import soft_write as TW  # noqa: E402
from ncl_kernels.memory.triton import tiling  # noqa: E402

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("Triton needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)

# The interpreter runs on numpy: a RuntimeWarning means an inf/NaN was computed somewhere, even on padding
# lanes that are never stored; on a GPU such lanes are harmless, but here they would hide real bugs.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") else "cpu"

# (B, N, D, H) and tiling: odd sizes, the all-ones corner, and a size that spans several default tiles
# (N and D loops, several N blocks in the backward workspaces). "small" shrinks the tile budget so the
# tiny shapes loop too; it is kept off the large shape, where the interpreter would take minutes. At these
# batch sizes the forward reductions split N across programs (as on a GPU with few batches);
# "nosplit" forbids that, to test the one-program-per-row path (fused softmax normalisation).
CASES = [((5, 7, 13, 3), "default"), ((1, 1, 1, 1), "default"), ((2, 130, 70, 5), "default"),
         ((5, 7, 13, 3), "small"), ((3, 19, 10, 5), "small"),
         ((2, 130, 70, 5), "nosplit"), ((3, 19, 10, 5), "small-nosplit")]
CASE_IDS = [f"{tiles}-{shape}" for shape, tiles in CASES]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture
def use_tiles(monkeypatch):
    def apply(tiles):
        if "nosplit" in tiles:
            monkeypatch.setattr(tiling, "TARGET_PROGRAMS", 1)
        if "small" in tiles:
            monkeypatch.setattr(tiling, "TILE_BUDGET", 32)
            monkeypatch.setattr(tiling, "ELEMWISE_TILE", 16)
            monkeypatch.setattr(tiling, "MAX_BLOCK_D", 4)
    return apply


def _inputs(B, N, D, H, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, positive=False):
        x = torch.rand(*shape, generator=g) + 0.1 if positive else torch.randn(*shape, generator=g)
        return (x * scale).to(device=DEVICE, dtype=dtype)

    return {
        "bank": rnd(B, N, D),
        "read_w": rnd(B, H, N),
        "write_w": rnd(B, N, positive=True),
        "values": rnd(B, D),
        "gate": rnd(B, positive=True),
        "keys": rnd(B, H, D),
        "strength": rnd(B, H, scale=4.0, positive=True),
    }


def _check(name, got, want, dtype):
    """fp32: elementwise 1e-5 against a float64 reference. fp16/bf16: error within 1e-2 of the tensor's
    scale (max |want|), against the fp32 reference on the same (rounded) inputs."""
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    got64, want64 = got.double().cpu(), want.double().cpu()
    assert torch.isfinite(got64).all(), f"{name}: non-finite values"
    if dtype == torch.float32:
        torch.testing.assert_close(got64, want64, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    else:
        err = (got64 - want64).abs().max().item()
        scale = max(want64.abs().max().item(), 1e-3)
        assert err <= 1e-2 * scale, f"{name}: max error {err:.3g} > 1e-2 * {scale:.3g}"


def _reference(fn, tensors, dtype, grad_out_seed=1):
    """Forward and autograd gradients of the reference in float64 (fp32 case) or fp32 (low precision)."""
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    leaves = [t.detach().to(ref_dtype).requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_out_seed)).to(DEVICE)
    grads = torch.autograd.grad(out, leaves, g.to(ref_dtype))
    return out.detach(), g.to(dtype), grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,tiles", CASES, ids=CASE_IDS)
def test_soft_read(shape, tiles, dtype, use_tiles):
    use_tiles(tiles)
    B, N, D, H = shape
    x = _inputs(B, N, D, H, dtype)
    want, g, (gb_want, gw_want) = _reference(R.soft_read, [x["bank"], x["read_w"]], dtype)
    _check("out", TR.soft_read_fwd(x["bank"], x["read_w"]), want, dtype)
    gb, gw = TR.soft_read_bwd(g, x["bank"], x["read_w"])
    _check("grad_bank", gb, gb_want, dtype)
    _check("grad_weights", gw, gw_want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,tiles", CASES, ids=CASE_IDS)
def test_soft_write(shape, tiles, dtype, use_tiles):
    use_tiles(tiles)
    B, N, D, H = shape
    x = _inputs(B, N, D, H, dtype)
    args = [x["bank"], x["write_w"], x["values"], x["gate"]]
    want, g, grads_want = _reference(R.soft_write, args, dtype)
    _check("out", TW.soft_write_fwd(*args), want, dtype)
    grads = TW.soft_write_bwd(g, *args)
    for name, got, exp in zip(["grad_bank", "grad_weights", "grad_values", "grad_gate"], grads, grads_want):
        _check(name, got, exp, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,tiles", CASES, ids=CASE_IDS)
def test_content_address(shape, tiles, dtype, use_tiles):
    use_tiles(tiles)
    B, N, D, H = shape
    x = _inputs(B, N, D, H, dtype)
    args = [x["bank"], x["keys"], x["strength"]]
    want, g, grads_want = _reference(R.content_address, args, dtype)
    out = TA.content_address_fwd(*args)
    _check("out", out, want, dtype)
    grads = TA.content_address_bwd(g, out, *args)
    for name, got, exp in zip(["grad_bank", "grad_keys", "grad_strength"], grads, grads_want):
        _check(name, got, exp, dtype)


def test_content_address_zero_rows():
    """A zero key and a zero bank row: finite results equal to the reference (norm + eps, and the norm's
    gradient taken as 0 at 0 as torch does)."""
    x = _inputs(3, 6, 5, 2, torch.float32, seed=3)
    x["bank"][1, 2] = 0.0
    x["keys"][2, 1] = 0.0
    args = [x["bank"], x["keys"], x["strength"]]
    want, g, grads_want = _reference(R.content_address, args, torch.float32)
    out = TA.content_address_fwd(*args)
    _check("out", out, want, torch.float32)
    for name, got, exp in zip(["grad_bank", "grad_keys", "grad_strength"],
                              TA.content_address_bwd(g, out, *args), grads_want):
        _check(name, got, exp, torch.float32)


def test_content_address_sharp_softmax():
    """A large strength: the online max keeps the softmax finite and exact."""
    x = _inputs(2, 9, 4, 3, torch.float32, seed=4)
    strength = x["strength"] * 200.0
    out = TA.content_address_fwd(x["bank"], x["keys"], strength)
    _check("out", out, R.content_address(x["bank"].double(), x["keys"].double(), strength.double()),
           torch.float32)


def test_noncontiguous_inputs():
    x = _inputs(4, 6, 5, 2, torch.float32, seed=5)
    bank_t = x["bank"].transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    assert not bank_t.is_contiguous()
    _check("soft_read", TR.soft_read_fwd(bank_t, x["read_w"]), R.soft_read(x["bank"], x["read_w"]),
           torch.float32)
    _check("soft_write", TW.soft_write_fwd(bank_t, x["write_w"], x["values"], x["gate"]),
           R.soft_write(x["bank"], x["write_w"], x["values"], x["gate"]), torch.float32)


@pytest.mark.parametrize("shape", [(0, 3, 4, 2), (2, 0, 4, 2), (2, 3, 0, 2), (2, 3, 4, 0)], ids=str)
def test_empty_sizes(shape):
    B, N, D, H = shape
    bank = torch.randn(B, N, D, device=DEVICE)
    w, v, gate = torch.rand(B, H, N, device=DEVICE), torch.randn(B, D, device=DEVICE), torch.rand(B, device=DEVICE)
    ww, keys, s = torch.rand(B, N, device=DEVICE), torch.randn(B, H, D, device=DEVICE), torch.rand(B, H, device=DEVICE)
    _check("soft_read", TR.soft_read_fwd(bank, w), R.soft_read(bank, w), torch.float32)
    _check("soft_write", TW.soft_write_fwd(bank, ww, v, gate), R.soft_write(bank, ww, v, gate), torch.float32)
    _check("content_address", TA.content_address_fwd(bank, keys, s), R.content_address(bank, keys, s),
           torch.float32)


def test_tile_choice_bounds():
    """Tiles are powers of two, within the budget, and loop (rather than grow) at large sizes."""
    for B, N, D, H in [(64, 128, 128, 2), (64, 1024, 256, 4), (1, 7, 13, 3), (2, 5, 3, 300)]:
        bh, bn, bd = tiling.head_tiles(H, N, D)
        for b in (bh, bn, bd):
            assert b >= 1 and b & (b - 1) == 0
        assert bh >= H and bd <= tiling.MAX_BLOCK_D
        assert bh * bn * bd <= max(tiling.TILE_BUDGET, bh)
        en, ed = TW._elementwise_tiles(N, D)
        assert en * ed <= max(tiling.ELEMWISE_TILE, ed)
    assert tiling.head_tiles(4, 1024, 256)[1] < 1024


@pytest.mark.parametrize("module", [TR, TW, TA], ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_compile_targets_describe_every_kernel(module):
    kernels = {name for name in dir(module) if name.startswith("_") and name.endswith("_kernel")}
    described = {entry["fn"].__name__ for entry in module.COMPILE_TARGETS}
    assert kernels == described
    for entry in module.COMPILE_TARGETS:
        assert list(entry["signature"]) == list(entry["fn"].arg_names)
        for name, value in entry["constexprs"].items():
            assert entry["signature"][name] == "constexpr"
