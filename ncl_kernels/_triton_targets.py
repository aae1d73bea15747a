"""Describing ``@triton.jit`` kernels for the ahead-of-time sm_90a compile check
(``scripts/compile_triton_sm90.py``). Each family's ``triton.py`` lists its kernels in ``COMPILE_TARGETS``
with :func:`compile_target`."""

from __future__ import annotations

import torch

#: Triton's name for each storage dtype.
TL_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def compile_target(fn, dtype: torch.dtype, typed_ptrs, f32_ptrs=(), ints=(), constexprs=None, *,
                   divisible=None, suffix: str = "", num_warps: int = 4, i32_ptrs=()) -> dict:
    """One compile target: every argument of ``fn`` typed, as ``triton.compiler.ASTSource`` wants it.

    Args:
        fn: the ``@triton.jit`` kernel.
        dtype: storage dtype of the ``typed_ptrs``.
        typed_ptrs: pointer arguments in ``dtype``.
        f32_ptrs: pointer arguments to fp32 workspaces.
        ints: int32 scalar arguments.
        constexprs: ``{name: value}`` of the ``tl.constexpr`` arguments.
        divisible: arguments to hint as divisible by 16 (default: every pointer).
        suffix: appended to the target's label, to tell variants apart.
        i32_ptrs: pointer arguments to int32 tensors (e.g. a netlist).
    """
    constexprs = dict(constexprs or {})
    kinds = {**{n: "constexpr" for n in constexprs}, **{n: "*" + TL_DTYPE[dtype] for n in typed_ptrs},
             **{n: "*fp32" for n in f32_ptrs}, **{n: "i32" for n in ints}, **{n: "*i32" for n in i32_ptrs}}
    missing = [n for n in fn.arg_names if n not in kinds]
    if missing:
        raise AssertionError(f"{fn.__name__}: arguments {missing} have no type")
    return {"name": f"{fn.__name__}[{TL_DTYPE[dtype]}{suffix}]", "fn": fn,
            "signature": {n: kinds[n] for n in fn.arg_names}, "constexprs": constexprs,
            "divisible": (list(divisible) if divisible is not None
                          else list(typed_ptrs) + list(f32_ptrs) + list(i32_ptrs)),
            "num_warps": num_warps}
