"""Tolerances and comparison helpers for testing fused backends against the reference.

The one place tolerances live. A fused backend run in ``dtype`` is compared with the reference run in
float64 on the same values, so the tolerance is the fused path's own rounding error (storage in ``dtype``,
accumulation in fp32) on O(1) inputs, not slack between two approximations.
"""

from __future__ import annotations

import torch

#: (rtol, atol) per input dtype.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """Assert ``actual`` (computed in ``dtype``) matches ``expected`` within ``TOLERANCES[dtype]``."""
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")
