"""halting_accumulate (halting mixtures + ponder cost): fused vs eager reference vs torch.compile(reference),
forward and forward+backward, at the machine's sizes B=32, K=8, C=128, n=128."""

import pytest
import torch
from conftest import DEVICE, impl_names, implementation, measure

import ncl_kernels
from ncl_kernels.halting import reference

SIZES = [(32, 8, 128, 128)]  # (B, K, C, n)
STEP = 17


def inputs(B, K, C, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(B, K, n, generator=g), torch.rand(B, C, n, generator=g), torch.rand(B, generator=g),
          torch.softmax(torch.randn(B, K, n, generator=g), -1), torch.softmax(torch.randn(B, C, n, generator=g), -1),
          torch.rand(B, generator=g)]
    return [x.to(DEVICE).requires_grad_() for x in xs]


def params():
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in SIZES for mode in ("fwd", "fwdbwd") for impl in impl_names()]


@pytest.mark.parametrize("size, mode, impl", params())
def test_halting(benchmark, size, mode, impl):
    fn = implementation(impl, reference.halting_accumulate, ncl_kernels.halting_accumulate, STEP)
    measure(benchmark, "halting_accumulate", ",".join(map(str, size)), mode, impl, fn, inputs(*size),
            size=list(size))
