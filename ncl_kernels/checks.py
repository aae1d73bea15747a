"""Input validation shared by every op: wrong rank, size, dtype or device raise a ``ValueError`` that names
the argument and the expected shape."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(op: str, *specs: tuple[str, object, str]) -> dict[str, int]:
    """Validate ``(name, tensor, "B N D")`` triples and return the bound sizes, e.g. ``{"B": 4, ...}``.

    Every tensor must be a floating tensor of the first one's dtype and device, with the named axes; an axis
    name shared by several tensors must have one size.
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
    return {axis: n for axis, (n, _) in sizes.items()}
