"""Pure-PyTorch reference for the memory ops: the executable spec.

Every function here is differentiable by autograd, works on any device and in float64, and is the
ground truth that the ``cpp``, ``triton`` and ``cuda`` backends are tested against.
"""

from __future__ import annotations

import torch

#: Added to every vector norm in :func:`content_address` so that a zero key or cell is harmless.
NORM_EPS = 1e-6


def soft_read(bank: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Weighted read of a memory bank.

    .. math:: \text{out}_{b,h} = \sum_i w_{b,h,i}\, \text{bank}_{b,i}

    Args:
        bank: ``(B, N, D)`` memory rows.
        weights: ``(B, H, N)`` read weights, one distribution (or any weighting) per head.

    Returns:
        ``(B, H, D)``
    """
    return torch.bmm(weights, bank)


def soft_write(bank: torch.Tensor, weights: torch.Tensor, values: torch.Tensor,
               gate: torch.Tensor) -> torch.Tensor:
    r"""Gated, weighted overwrite of a memory bank (functional).

    .. math:: \text{bank}'_{b,i} = \text{bank}_{b,i} + g_b\, w_{b,i}\, (v_b - \text{bank}_{b,i})

    Args:
        bank: ``(B, N, D)``
        weights: ``(B, N)`` write weights.
        values: ``(B, D)`` the value written.
        gate: ``(B,)`` write strength.

    Returns:
        ``(B, N, D)``, a new tensor.
    """
    a = (gate[:, None] * weights)[:, :, None]
    return bank + a * (values[:, None, :] - bank)


def content_address(bank: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    r"""Content-based addressing: a softmax over cosine similarity.

    .. math:: \text{out}_{b,h,i} = \operatorname{softmax}_i\Big(\beta_{b,h}
              \frac{\langle k_{b,h}, m_{b,i}\rangle}{(\lVert k_{b,h}\rVert + \epsilon)(\lVert m_{b,i}\rVert + \epsilon)}\Big),
              \quad \epsilon = 10^{-6}

    Args:
        bank: ``(B, N, D)`` memory rows ``m``.
        keys: ``(B, H, D)`` one key per head.
        strength: ``(B, H)`` sharpness ``β``.

    Returns:
        ``(B, H, N)``; each row sums to 1.
    """
    kn = torch.linalg.vector_norm(keys, dim=-1, keepdim=True) + NORM_EPS
    mn = torch.linalg.vector_norm(bank, dim=-1, keepdim=True) + NORM_EPS
    cos = torch.bmm(keys / kn, (bank / mn).transpose(1, 2))
    return torch.softmax(strength[:, :, None] * cos, dim=-1)
