"""Input validation shared by every op: wrong rank, size, dtype or device raise a ``ValueError`` that names
the argument and the expected shape.

Values are not scanned by default (a pass over every input costs as much as a small op). With
``NCL_CHECK_FINITE=1`` in the environment, every op's tensor inputs are also checked for NaN and ±Inf, and a
non-finite value raises a ``ValueError`` naming the argument (docs/kernels.md, "Bad input").
"""

from __future__ import annotations

import os

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(op: str, *specs: tuple[str, object, str]) -> dict[str, int]:
    """Validate ``(name, tensor, "B N D")`` triples and return the bound sizes, e.g. ``{"B": 4, ...}``.

    Every tensor must be a floating tensor of the first one's dtype and device, with the named axes; an axis
    name shared by several tensors must have one size. With ``NCL_CHECK_FINITE=1``, every value must be finite
    (not checked on meta tensors, nor while ``torch.compile`` traces).
    """
    sizes: dict[str, tuple[int, str]] = {}
    first: tuple[str, torch.Tensor] | None = None
    for name, t, dims in specs:
        axes = dims.split()
        want = f"({', '.join(axes)})"
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a torch.Tensor of shape {want}, got {type(t).__name__}")
        if t.dim() != len(axes):
            raise ValueError(f"{op}: {name} must have shape {want}, got shape {tuple(t.shape)}")
        for axis, n in zip(axes, t.shape):
            bound = sizes.setdefault(axis, (n, name))
            if bound[0] != n:
                raise ValueError(f"{op}: {name} must have shape {want} with {axis}={bound[0]} "
                                 f"(as in {bound[1]}), got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
        if first is None:
            first = (name, t)
            continue
        if t.dtype != first[1].dtype:
            raise ValueError(f"{op}: {name} has dtype {t.dtype} but {first[0]} has {first[1].dtype}; "
                             "pass one dtype")
        if t.device != first[1].device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first[0]} is on {first[1].device}")
    if os.environ.get("NCL_CHECK_FINITE", "") not in ("", "0"):
        _check_finite(op, specs)
    return {axis: n for axis, (n, _) in sizes.items()}


def _check_finite(op: str, specs) -> None:
    if torch.compiler.is_compiling():
        return
    for name, t, _ in specs:
        if t.device.type == "meta" or t.numel() == 0:
            continue
        bad = ~torch.isfinite(t)
        if bad.any():
            where = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"{op}: {name} has {int(bad.sum())} non-finite value(s) (NaN or ±Inf), the first "
                             f"{t[where].item()} at index {where} (checked because NCL_CHECK_FINITE=1)")
