"""stack_update (soft push/pop): fused vs eager reference vs torch.compile(reference), forward and
forward+backward, at the machine's sizes: B=32, S=32, W=128 (the data stack at n=128) and W=256 (a return
stack over a 256-line library image)."""

import pytest
import torch
from conftest import DEVICE, fused_backends

import ncl_kernels
from ncl_kernels.stack import reference

SIZES = [(32, 32, 128), (32, 32, 256)]  # (B, S, W)


def inputs(B, S, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(B, 3, generator=g), -1)
    xs = [torch.softmax(torch.randn(B, S, W, generator=g), -1), torch.softmax(torch.randn(B, S, generator=g), -1),
          w[:, 0].contiguous(), w[:, 1].contiguous(), torch.softmax(torch.randn(B, W, generator=g), -1)]
    return [x.to(DEVICE).requires_grad_() for x in xs]


def implementation(impl):
    if impl == "eager":
        return reference.stack_update
    if impl == "compiled":
        return torch.compile(reference.stack_update, dynamic=False)
    backend = impl.split(":")[1]
    return lambda *xs: ncl_kernels.stack_update(*xs, backend=backend)


def params():
    impls = ["eager", "compiled"] + [f"fused:{b}" for b in fused_backends()]
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in SIZES for mode in ("fwd", "fwdbwd") for impl in impls]


@pytest.mark.parametrize("size, mode, impl", params())
def test_stack_update(benchmark, size, mode, impl):
    fn, xs = implementation(impl), inputs(*size)
    # Every output reaches the loss, as in the machine (the fault masses feed RunResult.overflow).
    upstream = [torch.ones_like(o) for o in fn(*xs)]

    def run():
        if mode == "fwd":
            with torch.no_grad():
                fn(*xs)
        else:
            torch.autograd.grad(fn(*xs), xs, upstream)

    for _ in range(3):  # warm-up, and torch.compile's compilation, outside the timing
        run()
    benchmark.group = f"stack_update {','.join(map(str, size))} {mode}"
    benchmark.extra_info.update(op="stack_update", size=list(size), mode=mode, impl=impl, device=DEVICE)
    if DEVICE == "cuda":
        benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=50, warmup_rounds=2)
    else:
        benchmark(run)
