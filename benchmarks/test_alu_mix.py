"""alu_mix (table ALU mixture): fused vs eager reference vs torch.compile(reference), forward and
forward+backward, at B=32, n=128 with dense weights (every op) and sharp weights (one op ~1, others 1e-13)."""

import pytest
import torch
from conftest import DEVICE, fused_backends

from ncl_kernels import benchmarking


def alu_params():
    impls = ["eager", "compiled"] + [f"fused:{b}" for b in fused_backends()]
    return [pytest.param(size, coeffs, mode, impl, id=f"{','.join(map(str, size))}-{coeffs}-{mode}-{impl}")
            for size in benchmarking.ALU_SIZES for coeffs in benchmarking.ALU_COEFFS
            for mode in ("fwd", "fwdbwd") for impl in impls]


@pytest.mark.parametrize("size, coeffs, mode, impl", alu_params())
def test_alu_mix(benchmark, size, coeffs, mode, impl):
    backend = impl.split(":")[1] if impl.startswith("fused") else "reference"
    fn = benchmarking.implementations("alu_mix", backend)[impl.split(":")[0]]
    xs = benchmarking.alu_inputs(*size, coeffs, device=DEVICE)
    run = benchmarking.step(fn, xs, mode)
    for _ in range(3):  # warm-up, and torch.compile's compilation, outside the timing
        run()
    # The group names the weights, so conftest's ratio table compares like with like.
    benchmark.group = f"alu_mix {','.join(map(str, size))} {coeffs} {mode}"
    benchmark.extra_info.update(op="alu_mix", size=list(size), coeffs=coeffs, mode=mode, impl=impl, device=DEVICE)
    if DEVICE == "cuda":
        benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=50, warmup_rounds=2)
    else:
        benchmark(run)
