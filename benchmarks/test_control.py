"""control (ip update + halting mass): fused vs eager reference vs torch.compile(reference), forward and
forward+backward, at B=32, S=32 and L=256 lines (a library image), for a soft program (every field dense) and
a β=30-sharp one (what a compiled program gives)."""

import pytest
import torch
from conftest import DEVICE, impl_names, implementation, measure

import ncl_kernels
from ncl_kernels.control import NUM_OPS, reference

SIZES = [(32, 256, 32)]  # (B, L, S)
PROGRAMS = ("soft", "sharp")


def inputs(B, L, S, program, seed=0):
    g = torch.Generator().manual_seed(seed)
    beta = 30.0 if program == "sharp" else 1.0
    one_hot_logits = lambda rows, cols: beta * torch.nn.functional.one_hot(  # noqa: E731
        torch.randint(0, cols, (rows,), generator=g), cols).float() + torch.randn(rows, cols, generator=g) * 0.1
    xs = [torch.softmax(torch.randn(B, L, generator=g), -1), torch.softmax(one_hot_logits(L, NUM_OPS), -1),
          torch.rand(B, generator=g), torch.softmax(one_hot_logits(L, L), -1),
          torch.softmax(torch.randn(B, S, L, generator=g), -1), torch.softmax(torch.randn(B, S, generator=g), -1)]
    return [x.to(DEVICE).requires_grad_() for x in xs]


def params():
    return [pytest.param(size, program, mode, impl, id=f"{','.join(map(str, size))}-{program}-{mode}-{impl}")
            for size in SIZES for program in PROGRAMS for mode in ("fwd", "fwdbwd") for impl in impl_names()]


@pytest.mark.parametrize("size, program, mode, impl", params())
def test_control(benchmark, size, program, mode, impl):
    fn = implementation(impl, reference.control, ncl_kernels.control)
    measure(benchmark, "control", f"{','.join(map(str, size))} {program}", mode, impl, fn, inputs(*size, program),
            size=list(size), program=program)
