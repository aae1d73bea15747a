"""stack_update (soft push/pop): fused vs eager reference vs torch.compile(reference), forward and
forward+backward, at the machine's sizes: B=32, S=32, W=128 (the data stack at n=128) and W=256 (a return
stack over a 256-line library image)."""

import pytest
import torch
from conftest import DEVICE, impl_names, implementation, measure

import ncl_kernels
from ncl_kernels.stack import reference

SIZES = [(32, 32, 128), (32, 32, 256)]  # (B, S, W)


def inputs(B, S, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(B, 3, generator=g), -1)
    xs = [torch.softmax(torch.randn(B, S, W, generator=g), -1), torch.softmax(torch.randn(B, S, generator=g), -1),
          w[:, 0].contiguous(), w[:, 1].contiguous(), torch.softmax(torch.randn(B, W, generator=g), -1)]
    return [x.to(DEVICE).requires_grad_() for x in xs]


def params():
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in SIZES for mode in ("fwd", "fwdbwd") for impl in impl_names()]


@pytest.mark.parametrize("size, mode, impl", params())
def test_stack_update(benchmark, size, mode, impl):
    fn = implementation(impl, reference.stack_update, ncl_kernels.stack_update)
    measure(benchmark, "stack_update", ",".join(map(str, size)), mode, impl, fn, inputs(*size),
            size=list(size))
