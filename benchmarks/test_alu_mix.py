"""alu_mix (table ALU mixture): fused vs eager reference vs torch.compile(reference), forward and
forward+backward, at B=32, n=128 with dense weights (every op) and sharp weights (one op ~1, others 1e-13)."""

import pytest
from conftest import DEVICE, impl_names, implementation, measure

import ncl_kernels
from ncl_kernels import benchmarking
from ncl_kernels.alu import reference


def alu_params():
    return [pytest.param(size, coeffs, mode, impl, id=f"{','.join(map(str, size))}-{coeffs}-{mode}-{impl}")
            for size in benchmarking.ALU_SIZES for coeffs in benchmarking.ALU_COEFFS
            for mode in ("fwd", "fwdbwd") for impl in impl_names()]


@pytest.mark.parametrize("size, coeffs, mode, impl", alu_params())
def test_alu_mix(benchmark, size, coeffs, mode, impl):
    fn = implementation(impl, reference.alu_mix, ncl_kernels.alu_mix)
    # The group names the weights, so conftest's ratio table compares like with like.
    measure(benchmark, "alu_mix", f"{','.join(map(str, size))} {coeffs}", mode, impl, fn,
            benchmarking.alu_inputs(*size, coeffs, device=DEVICE), size=list(size), coeffs=coeffs)
