"""alu_circuit_mix (circuit ALU mixture): fused vs eager reference (the per-op circuits of
ncl_kernels.alu_circuit.circuits and an einsum) vs torch.compile(reference), forward and forward+backward, at B=32,
n=128 with dense weights (every op contributes; the fused kernels skip nothing, so sharp weights time the same)."""

import pytest
from conftest import DEVICE, impl_names, implementation, measure

import ncl_kernels
from ncl_kernels import benchmarking
from ncl_kernels.alu_circuit import reference


def circuit_params():
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in benchmarking.ALU_SIZES for mode in ("fwd", "fwdbwd") for impl in impl_names()]


@pytest.mark.parametrize("size, mode, impl", circuit_params())
def test_alu_circuit_mix(benchmark, size, mode, impl):
    fn = implementation(impl, reference.alu_circuit_mix, ncl_kernels.alu_circuit_mix)
    measure(benchmark, "alu_circuit_mix", f"{','.join(map(str, size))} dense", mode, impl, fn,
            benchmarking.alu_inputs(*size, "dense", device=DEVICE), size=list(size), coeffs="dense")
