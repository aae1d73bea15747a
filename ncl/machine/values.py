"""Checks that an input holds values: distributions over ``Z_n`` (the encoding itself is :mod:`ncl_kernels.isa`)."""

from __future__ import annotations

import torch


def distribution_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row sum may be before it is not a distribution (stated once for all inputs)."""
    return 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4


def check_distribution(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x`` has ``shape`` and its last axis holds distributions.

    Args:
        name: the argument's name, for the message.
        x: the tensor to check.
        shape: the expected shape; ``-1`` matches any size.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape {_fmt(shape)}, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s != -1 and s != t for s, t in zip(shape, x.shape)):
        raise ValueError(f"{name} must have shape {_fmt(shape)}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.numel() == 0:
        return
    with torch.no_grad():
        tol = distribution_tolerance(x.dtype)
        xf = x.float()
        # Written so that NaN fails both tests (min propagates it). One reduction, where `(xf >= -1e-6).all()`
        # wrote a boolean tensor the size of the input first: every machine run checks its (B, C, n) memory.
        nonneg = bool(xf.min() >= -1e-6)
        sums_ok = bool(((xf.sum(-1) - 1).abs() <= tol).all())
    if not nonneg:
        raise ValueError(f"{name} must hold distributions on its last axis, but it has negative or NaN entries")
    if not sums_ok:
        raise ValueError(f"{name} must hold distributions on its last axis (rows summing to 1 within {tol})")


def _fmt(shape) -> str:
    letters = iter("BXYZ")
    return "(" + ", ".join(str(s) if s != -1 else next(letters) for s in shape) + ")"
