"""halting_accumulate (halting mixtures + ponder cost): fused vs eager reference vs torch.compile(reference),
forward and forward+backward, at the machine's sizes B=32, K=8, C=128, n=128."""

import pytest
import torch
from conftest import DEVICE, fused_backends

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


def implementation(impl):
    if impl == "eager":
        fn = reference.halting_accumulate
    elif impl == "compiled":
        fn = torch.compile(reference.halting_accumulate, dynamic=False)
    else:
        backend = impl.split(":")[1]
        fn = lambda *xs, t: ncl_kernels.halting_accumulate(*xs, t, backend=backend)  # noqa: E731
        return lambda *xs: fn(*xs, t=STEP)
    return lambda *xs: fn(*xs, STEP)


def params():
    impls = ["eager", "compiled"] + [f"fused:{b}" for b in fused_backends()]
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in SIZES for mode in ("fwd", "fwdbwd") for impl in impls]


@pytest.mark.parametrize("size, mode, impl", params())
def test_halting(benchmark, size, mode, impl):
    fn, xs = implementation(impl), inputs(*size)
    upstream = [torch.ones_like(o) for o in fn(*xs)]

    def run():
        if mode == "fwd":
            with torch.no_grad():
                fn(*xs)
        else:
            torch.autograd.grad(fn(*xs), xs, upstream)

    for _ in range(3):  # warm-up, and torch.compile's compilation, outside the timing
        run()
    benchmark.group = f"halting_accumulate {','.join(map(str, size))} {mode}"
    benchmark.extra_info.update(op="halting_accumulate", size=list(size), mode=mode, impl=impl, device=DEVICE)
    if DEVICE == "cuda":
        benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=50, warmup_rounds=2)
    else:
        benchmark(run)
