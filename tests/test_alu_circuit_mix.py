"""alu_circuit_mix: the fused circuit ALU mixture against the per-op circuits of ncl_kernels.alu_circuit.circuits
(the reference), on every backend; its netlist against the circuits; hard values against the table ALU. What is
particular to it: the generic checks are in tests/test_op_conformance.py."""

import pytest
import torch

from op_checks import (DTYPES, FLOAT64_BACKENDS, check_against_reference, check_bad_input, check_gradcheck,
                       device_for, fused_backends, skip_unless_runnable)
from ncl_kernels import alu_circuit_mix
from ncl_kernels.alu import op_names
from ncl_kernels.alu import reference as table_reference
from ncl_kernels.alu_circuit import NUM_OPS, netlist

#: (B, n): odd batch sizes, n from 2 to the machine's default 128. The Triton interpreter gets the small ones.
SIZES = [(3, 2), (5, 8), (3, 32), (7, 128)]
TRITON_SIZES = [(3, 2), (5, 8)]


def make(B, n, seed=0):
    """Soft operands and dense weights: every op contributes, every bit marginal is strictly inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(B, n, generator=g), -1)
    y = torch.softmax(torch.randn(B, n, generator=g), -1)
    coeffs = torch.softmax(torch.randn(B, NUM_OPS, generator=g), -1)
    return x, y, coeffs


def one_hot(values, n):
    return torch.nn.functional.one_hot(torch.tensor(values), n).double()


def _interpreted(backend):
    """Whether ``backend`` runs under the (slow) Triton interpreter: keep its sizes tiny there."""
    return backend == "triton" and not torch.cuda.is_available()


def _sizes_for(backend):
    return TRITON_SIZES if _interpreted(backend) else SIZES


def test_op_order_matches_opcodes():
    from ncl_kernels.isa import BINARY_OPS, UNARY_OPS

    assert op_names() == BINARY_OPS + UNARY_OPS and len(op_names()) == NUM_OPS
    assert netlist.record(3)[1].__len__() == NUM_OPS


def _evaluate(gates, outputs, a, b):
    """The netlist run by plain Python on tensors of bits: every gate in order."""
    w = list(a) + list(b) + [None] * len(gates)
    for op, in0, in1, out in gates:
        if op == netlist.CONST:
            w[out] = torch.full_like(a[0], float(in0))
        else:
            u, v = w[in0], w[in1]
            w[out] = u + v if op == netlist.ADD else u - v if op == netlist.SUB else u * v
    return [[w[i] for i in bits] for bits in outputs]


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7])
def test_netlist_equals_the_circuits(m):
    """The recorded netlist computes exactly the circuits of ncl_kernels.alu_circuit.circuits, on soft bits."""
    from ncl_kernels.alu_circuit.circuits import binary_bits, unary_bits
    from ncl_kernels.isa import BINARY_OPS, UNARY_OPS

    g = torch.Generator().manual_seed(m)
    a = list(torch.rand(m, 6, generator=g, dtype=torch.float64))
    b = list(torch.rand(m, 6, generator=g, dtype=torch.float64))
    gates, outputs, num_wires = netlist.record(m)
    got = _evaluate(gates, outputs, a, b)
    want = [binary_bits(op, a, b) for op in BINARY_OPS] + [unary_bits(op, a) for op in UNARY_OPS]
    for name, got_bits, want_bits in zip(op_names(), got, want, strict=True):
        for i, (u, v) in enumerate(zip(got_bits, want_bits, strict=True)):
            # Exact: sharing gates and folding x·1, x·0, x±0 and constants changes no float result.
            torch.testing.assert_close(u, torch.as_tensor(v, dtype=torch.float64).expand_as(u), rtol=0, atol=0,
                                       msg=lambda s, name=name, i=i: f"{name} bit {i}: {s}")


@pytest.mark.parametrize("m", [1, 4, 7])
def test_netlist_wiring(m):
    """Wires 0..2m-1 are the operand bits, gate g writes wire 2m + g from earlier wires (the kernels rely
    on it), every gate reaches an output, and the tensors match the tuples."""
    gates, outputs, num_wires = netlist.record(m)
    assert num_wires == 2 * m + len(gates)
    used = {w for bits in outputs for w in bits}
    for g, (op, in0, in1, out) in enumerate(gates):
        assert out == 2 * m + g
        assert op in (netlist.ADD, netlist.SUB, netlist.MUL, netlist.CONST)
        if op != netlist.CONST:
            assert 0 <= in0 < out and 0 <= in1 < out
            used.update((in0, in1))
    assert all(2 * m + g in used for g in range(len(gates)))
    t_gates, t_outputs = netlist.tensors(m, torch.device("cpu"))
    assert t_gates.dtype == torch.int32 and t_gates.tolist() == [list(g) for g in gates]
    assert t_outputs.shape == (NUM_OPS, m) and t_outputs.tolist() == [list(o) for o in outputs]


def test_netlist_rejects_other_operations():
    rec = netlist._Recorder(1)
    w = netlist.Wire(rec, 0)
    with pytest.raises(ValueError, match="integer constants"):
        w * 0.5
    with pytest.raises(TypeError, match="records"):
        torch.exp(w)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(backend, dtype, size):
    if size not in _sizes_for(backend):
        pytest.skip("the Triton interpreter runs the small sizes only")
    check_against_reference(alu_circuit_mix, make(*size), backend, dtype)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("n", [2, 8, 32])
def test_each_op_on_hard_values_is_exact(backend, n):
    """One-hot operands and one-hot weights: every op gives the one-hot of its integer result, exactly, on
    every backend, as the table ALU does (and so does the reference)."""
    from ncl_kernels.isa import BINARY_FUNCS, UNARY_FUNCS

    skip_unless_runnable(backend)
    if _interpreted(backend) and n > 8:
        pytest.skip("the Triton interpreter runs the small sizes only")
    values = sorted({0, 1, 2 % n, 3 % n, n // 2, n - 1})
    rows_a, rows_b, rows_k, expected = [], [], [], []
    for k, name in enumerate(op_names()):
        for a in values:
            for b in values:
                rows_a.append(a)
                rows_b.append(b)
                rows_k.append(k)
                expected.append(BINARY_FUNCS[name](a, b, n) if name in BINARY_FUNCS else UNARY_FUNCS[name](a, n))
    x, y, e = one_hot(rows_a, n), one_hot(rows_b, n), one_hot(rows_k, NUM_OPS)
    device = device_for(backend)
    for dtype in (torch.float32, torch.float64) if backend == "cpp" else (torch.float32,):
        out = alu_circuit_mix(*(t.to(device=device, dtype=dtype) for t in (x, y, e)), backend=backend)
        assert torch.equal(out.cpu().double(), one_hot(expected, n))
    assert torch.equal(alu_circuit_mix(x, y, e, backend="reference"), one_hot(expected, n))
    assert torch.equal(table_reference.alu_mix(x, y, e), one_hot(expected, n))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("n", [8, 128])
def test_hard_operands_soft_weights(backend, n):
    """One-hot operands with dense weights: values equal the table ALU's, values and gradients the reference's."""
    skip_unless_runnable(backend)
    if _interpreted(backend) and n > 8:
        pytest.skip("the Triton interpreter runs the small sizes only")
    g = torch.Generator().manual_seed(n)
    B = 5
    x = one_hot(torch.randint(0, n, (B,), generator=g).tolist(), n).float()
    y = one_hot(torch.randint(0, n, (B,), generator=g).tolist(), n).float()
    coeffs = torch.softmax(torch.randn(B, NUM_OPS, generator=g), -1)
    check_against_reference(alu_circuit_mix, (x, y, coeffs), backend, torch.float32)
    out = alu_circuit_mix(*(t.to(device_for(backend)) for t in (x, y, coeffs)), backend=backend).cpu()
    torch.testing.assert_close(out.double(), table_reference.alu_mix(x.double(), y.double(), coeffs.double()),
                               rtol=2e-6, atol=2e-6)


def test_unnormalised_operands():
    """Nothing assumes distributions: operands of mass below 1 and signed weights. (Operands far outside
    the simplex make the degree-~m² circuit polynomials overflow, in the reference as much as here.)"""
    g = torch.Generator().manual_seed(5)
    x, y, _ = make(3, 8, seed=5)
    xs = [x * torch.rand(3, 1, generator=g), y * torch.rand(3, 1, generator=g),
          torch.randn(3, NUM_OPS, generator=g)]
    check_against_reference(alu_circuit_mix, xs, "cpp", torch.float32)
    check_against_reference(alu_circuit_mix, xs, "triton", torch.float32)


@pytest.mark.parametrize("backend", FLOAT64_BACKENDS)
def test_gradcheck_float64_one_bit(backend):
    """n = 2, one bit: the smallest circuits (the conformance suite's sample has n = 8)."""
    check_gradcheck(alu_circuit_mix, make(2, 2), backend)


def test_no_gradient_to_the_netlist():
    """The netlist is an integer input of the kernel ops: the autograd wrapper gives it no gradient."""
    from ncl_kernels import _oplib

    x, y, c = (t.requires_grad_() for t in make(2, 4))
    out = _oplib.apply("alu_circuit_mix", "cpp", x, y, c, *netlist.tensors(2, torch.device("cpu")))
    out.sum().backward()
    assert all(t.grad is not None for t in (x, y, c))


# Wrong rank (one more axis), integer dtype and non-tensor arguments: tests/test_op_conformance.py.
@pytest.mark.parametrize("name, bad, match", [
    ("x", torch.rand(3), r"x must have shape \(B, n\)"),
    ("y", torch.rand(3, 4), r"y must have shape \(B, n\) with n=8"),
    ("coeffs", torch.rand(3, 15), r"coeffs must have shape \(B, K\) with K=16"),
    ("coeffs", torch.rand(2, 16), r"coeffs must have shape \(B, K\) with B=3"),
    ("y", torch.rand(3, 8, dtype=torch.float64), r"y has dtype torch.float64"),
])
def test_bad_input(name, bad, match):
    check_bad_input(alu_circuit_mix, make(3, 8), name, bad, match)


@pytest.mark.parametrize("n", [1, 6, 12])
def test_n_must_be_a_power_of_two(n):
    with pytest.raises(ValueError, match=r"x must have shape \(B, n\) with n a power of two >= 2"):
        alu_circuit_mix(torch.ones(2, n), torch.ones(2, n), torch.ones(2, NUM_OPS))
