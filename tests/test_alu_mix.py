"""alu_mix: the fused table ALU mixture against the scatter-form reference, on every backend: what is particular
to it (the generic checks are in tests/test_op_conformance.py)."""

import pytest
import torch

from op_checks import (DTYPES, check_against_reference, check_bad_input, device_for, fused_backends,
                       skip_unless_runnable)
from ncl_kernels import alu_mix
from ncl_kernels.alu import NUM_OPS, SKIP_REL, SUPPORT_REL, op_names

SIZES = [(3, 8), (2, 16), (4, 13)]  # (B, n); 13 is odd on purpose, all tiny for the Triton interpreter


def make(B, n, seed=0):
    """Soft operands and dense weights: every op contributes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(B, n, generator=g), -1)
    y = torch.softmax(torch.randn(B, n, generator=g), -1)
    coeffs = torch.softmax(torch.randn(B, NUM_OPS, generator=g), -1)
    return x, y, coeffs


def one_hot(values, n):
    return torch.nn.functional.one_hot(torch.tensor(values), n).double()


def test_op_order_matches_opcodes():
    from ncl_kernels.isa import BINARY_OPS, UNARY_OPS

    from ncl_kernels import _ext
    from ncl_kernels.alu import triton as alu_triton

    assert op_names() == BINARY_OPS + UNARY_OPS and len(op_names()) == NUM_OPS
    assert [getattr(alu_triton, name) for name in op_names()] == list(range(NUM_OPS))
    ext = _ext.load()[0]
    if ext is None:
        pytest.skip("extension not built")
    assert tuple(ext.alu_op_names()) == op_names()
    assert ext.ALU_SKIP_REL == SKIP_REL
    assert ext.ALU_SUPPORT_REL == SUPPORT_REL  # the C++ float threshold at n = 1


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    check_against_reference(alu_mix, make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("n", [8, 13])
def test_each_op_on_hard_values_is_exact(backend, n):
    """One-hot operands and one-hot weights: every op gives the one-hot of its integer result, exactly.

    Also checks the kernels' op order: each row selects one op by position and is compared with
    ncl.machine.opcodes' integer semantics of the op with that name."""
    from ncl_kernels.isa import BINARY_FUNCS, UNARY_FUNCS

    skip_unless_runnable(backend)
    pairs = [(a, b) for a in (0, 1, 2, n - 1, n // 2) for b in (0, 1, 3, n - 1, n // 2)]
    rows_a, rows_b, rows_k, expected = [], [], [], []
    for k, name in enumerate(op_names()):
        for a, b in pairs:
            rows_a.append(a)
            rows_b.append(b)
            rows_k.append(k)
            expected.append(BINARY_FUNCS[name](a, b, n) if name in BINARY_FUNCS else UNARY_FUNCS[name](a, n))
    x, y, e = one_hot(rows_a, n), one_hot(rows_b, n), one_hot(rows_k, NUM_OPS)
    device = device_for(backend)
    for dtype in (torch.float32, torch.float64) if backend == "cpp" else (torch.float32,):
        out = alu_mix(*(t.to(device=device, dtype=dtype) for t in (x, y, e)), backend=backend)
        assert torch.equal(out.cpu().double(), one_hot(expected, n))
    assert torch.equal(alu_mix(x, y, e, backend="reference"), one_hot(expected, n))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES)
def test_supports_on_both_sides_of_the_dense_switch_match_reference(backend, dtype):
    """x with 15, 16 and 17 entries at n = 128: the CPU forward steps the pair targets along x's support up to
    n/8 = 16 entries and runs every i along the tables' structure above it (docs/alu.md, pair_column). Each row
    weighs one pair op (and all five in the last rows), and y has a few entries, some j = 0 (DIV, MOD by 0)."""
    B, n = 8, 128
    g = torch.Generator().manual_seed(5)
    x = torch.zeros(B, n)
    y = torch.zeros(B, n)
    for b, size in enumerate([15, 16, 17, 15, 16, 17, 17, 64]):
        x[b, torch.randperm(n, generator=g)[:size]] = torch.rand(size, generator=g) + 0.1
        y[b, torch.randperm(n, generator=g)[:3]] = torch.rand(3, generator=g) + 0.1
        y[b, 0] = 0.5 * (b % 2)
    coeffs = torch.full((B, NUM_OPS), 1e-13)
    coeffs[torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 2])] = 1.0
    coeffs[6:, :5] = torch.softmax(torch.randn(2, 5, generator=g), -1)
    check_against_reference(alu_mix, (x, y, coeffs), backend, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [12, 16, 36, 128])
def test_dense_mul_at_every_gcd_matches_reference(dtype, n):
    """Dense rows at n with many divisors: the CPU kernels' MUL gathers from x folded modulo n / gcd(j, n) in the
    forward and from the table i·j mod n in the backward (alu_row.h, PairTables), one case per gcd; at n = 16 and 128
    (powers of two) the forward runs through the units of Z/n instead (mul_units.h). Each row weighs MUL alone or all
    five pair ops, with j = 0 in y's support."""
    x, y, coeffs = make(4, n, seed=n)
    coeffs[:2] = 1e-13
    coeffs[:2, 2] = 1.0
    check_against_reference(alu_mix, (x, y, coeffs), "cpp", dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [13, 36, 64, 128])
def test_dense_x_with_part_of_y_matches_reference(dtype, n):
    """Dense x and y on about half the values. The CPU forward runs ADD and SUB as one circulant over the j where
    either weighs, MOD's runs folded (alu_row.h); its backward runs each j with its partner n - j in one pass when
    both are in y's support, alone otherwise. The rows hold j = 0 and n // 2 (their own partners), 1 without its
    partner, and pairs. At n = 64 and 128 the forward runs MUL through the units of Z/n (mul_units.h), with y's
    zeros in its convolutions."""
    g = torch.Generator().manual_seed(n + 1)
    x, y, coeffs = make(4, n, seed=n)
    keep = torch.rand(4, n, generator=g) < 0.5
    keep[:, [0, 1, n // 2]] = True
    keep[:, n - 1] = False
    y = y * keep
    y = y / y.sum(-1, keepdim=True)
    check_against_reference(alu_mix, (x, y, coeffs), "cpp", dtype)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("op, target", [(0, lambda i, j, n: (i + j) % n), (2, lambda i, j, n: i * j % n)])
def test_pair_ops_sum_over_the_supports(backend, op, target):
    """The fp32 fused forwards drop an operand's entries at or below SUPPORT_REL / n of its largest (the CPU
    kernels' alu::support, mirrored by the Triton ones): an entry at four times that floor reaches its ADD or MUL
    target, one at a quarter of it does not (exactly 0 there, where the reference has it), and the rest agrees."""
    skip_unless_runnable(backend)
    n = 128
    floor = SUPPORT_REL / n
    x = torch.zeros(2, n)
    x[:, 0], x[:, 5], x[:, 9] = 1.0, 4 * floor, floor / 4
    y = one_hot([3, 7], n).float()
    coeffs = torch.full((2, NUM_OPS), 1e-13)
    coeffs[:, op] = 1.0
    out = alu_mix(*(t.to(device_for(backend)) for t in (x, y, coeffs)), backend=backend).cpu()
    ref = alu_mix(x, y, coeffs, backend="reference")
    for row, j in enumerate((3, 7)):
        kept, dropped = target(5, j, n), target(9, j, n)
        assert ref[row, dropped] > 0 and out[row, dropped] == 0
        assert out[row, kept] == pytest.approx(4 * floor, rel=1e-5)
        rest = torch.ones(n, dtype=torch.bool)
        rest[dropped] = False
        torch.testing.assert_close(out[row, rest], ref[row, rest], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("backend", fused_backends())
def test_sharp_weights_match_reference(backend):
    """A sharp program's weights (one op ~1, the rest ~e^-30) on soft operands: skipping is invisible."""
    x, y, _ = make(5, 16, seed=3)
    coeffs = torch.full((5, NUM_OPS), 1e-13)
    coeffs[torch.arange(5), torch.tensor([2, 4, 0, 9, 13])] = 1.0
    check_against_reference(alu_mix, (x, y, coeffs), backend, torch.float32)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dense_weights", [False, True])
def test_near_one_hot_operands_match_reference(backend, dense_weights):
    """Registers of a sharp machine: one-hot up to ~1e-13 leaks (some entries exactly 0), a few rows soft.

    The fused CPU kernels sum the pair ops (ADD..MOD) over the operands' supports (docs/alu.md); the
    gradients at indices outside the support (mass the operand does not have) must still be exact."""
    B, n = 6, 128
    g = torch.Generator().manual_seed(11)
    x = torch.rand(B, n, generator=g) * 1e-13
    y = torch.rand(B, n, generator=g) * 1e-13
    x[:, ::3] = 0.0
    x[torch.arange(B), torch.randint(0, n, (B,), generator=g)] = 1.0
    y[torch.arange(B), torch.randint(0, n, (B,), generator=g)] = 1.0
    x[0] = torch.softmax(torch.randn(n, generator=g), -1)  # one dense row beside the sparse ones
    y[1] = torch.softmax(torch.randn(n, generator=g), -1)
    if dense_weights:
        coeffs = torch.softmax(torch.randn(B, NUM_OPS, generator=g), -1)
    else:
        coeffs = torch.full((B, NUM_OPS), 1e-13)
        coeffs[torch.arange(B), torch.tensor([0, 1, 2, 3, 4, 9])] = 1.0
    check_against_reference(alu_mix, (x, y, coeffs), backend, torch.float32)


def test_unnormalised_operands():
    """Nothing assumes distributions: arbitrary signed operands and weights."""
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(3, 9, generator=g), torch.randn(3, 9, generator=g), torch.randn(3, NUM_OPS, generator=g)]
    check_against_reference(alu_mix, xs, "cpp", torch.float32)
    check_against_reference(alu_mix, xs, "triton", torch.float32)


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("x", torch.rand(3), r"x must have shape \(B, n\)"),
    ("y", torch.rand(3, 7), r"y must have shape \(B, n\) with n=8"),
    ("coeffs", torch.rand(3, 15), r"coeffs must have shape \(B, K\) with K=16"),
    ("coeffs", torch.rand(2, 16), r"coeffs must have shape \(B, K\) with B=3"),
    ("y", torch.rand(3, 8, dtype=torch.float64), r"y has dtype torch.float64"),
])
def test_bad_input(name, bad, match):
    check_bad_input(alu_mix, make(3, 8), name, bad, match)


def test_n_of_one_is_rejected():
    with pytest.raises(ValueError, match=r"x must have shape \(B, n\) with n >= 2"):
        alu_mix(torch.ones(2, 1), torch.ones(2, 1), torch.ones(2, NUM_OPS))
