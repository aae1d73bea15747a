"""Triton kernels of ``soft_read``: the weighted read of a memory bank, forward and backward.

Rules, numerics and tiling: :mod:`ncl_kernels.memory.triton`. The forward splits ``N`` across programs when
the batch alone would leave the GPU idle (:func:`~ncl_kernels.memory.triton.tiling.n_splits`), and sums the
splits' fp32 partials on the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.memory.triton import tiling


@triton.jit
def _soft_read_fwd_kernel(bank_ptr, w_ptr, out_ptr, H, N, D, ROWS_PER_SPLIT,
                          BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # One program per (batch, N split, D tile), holding every head, so each bank element is read exactly
    # once. With one split, out_ptr is the output itself; with several, it is an fp32 (B, S, H, D)
    # workspace of partial sums (the same indexing, so the kernel does not care which).
    pid_b = tl.program_id(0).to(tl.int64)
    pid_s = tl.program_id(1)
    pid_d = tl.program_id(2)
    num_s = tl.num_programs(1)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_h = offs_h < H
    mask_d = offs_d < D
    bank_base = bank_ptr + pid_b * N * D
    w_base = w_ptr + pid_b * H * N
    n_start = pid_s * ROWS_PER_SPLIT
    n_end = tl.minimum(n_start + ROWS_PER_SPLIT, N)

    acc = tl.zeros((BLOCK_H, BLOCK_D), dtype=tl.float32)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_end
        m = tl.load(bank_base + offs_n[:, None] * D + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        w = tl.load(w_base + offs_h[:, None] * N + offs_n[None, :],
                    mask=mask_h[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(w[:, :, None] * m[None, :, :], axis=1)

    tl.store(out_ptr + ((pid_b * num_s + pid_s) * H + offs_h[:, None]) * D + offs_d[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=mask_h[:, None] & mask_d[None, :])


@triton.jit
def _soft_read_bwd_kernel(grad_ptr, bank_ptr, w_ptr, gbank_ptr, gw_ptr, H, N, D,
                          BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # One program per (batch, N tile): it sweeps D once, producing its rows of grad_bank tile by tile and
    # the complete grad_weights for its rows (the D reduction never leaves the program).
    pid_b = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    offs_h = tl.arange(0, BLOCK_H)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_n = offs_n < N
    mask_hn = mask_h[:, None] & mask_n[None, :]
    bank_base = bank_ptr + pid_b * N * D
    grad_base = grad_ptr + pid_b * H * D
    w_off = pid_b * H * N + offs_h[:, None] * N + offs_n[None, :]

    w = tl.load(w_ptr + w_off, mask=mask_hn, other=0.0).to(tl.float32)
    gw = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        mask_nd = mask_n[:, None] & mask_d[None, :]
        m = tl.load(bank_base + offs_n[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0).to(tl.float32)
        g = tl.load(grad_base + offs_h[:, None] * D + offs_d[None, :],
                    mask=mask_h[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        # grad_bank[i, d] = sum_h w[h, i] grad[h, d]
        gb = tl.sum(w[:, :, None] * g[:, None, :], axis=0)
        tl.store(gbank_ptr + pid_b * N * D + offs_n[:, None] * D + offs_d[None, :],
                 gb.to(gbank_ptr.dtype.element_ty), mask=mask_nd)
        # grad_weights[h, i] = <grad[h], bank[i]>
        gw += tl.sum(g[:, None, :] * m[None, :, :], axis=2)

    tl.store(gw_ptr + w_off, gw.to(gw_ptr.dtype.element_ty), mask=mask_hn)


def soft_read_fwd(bank: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Weighted read of a memory bank, fused.

    .. math:: \text{out}_{b,h} = \sum_i w_{b,h,i}\, \text{bank}_{b,i}

    Args:
        bank: ``(B, N, D)``
        weights: ``(B, H, N)``

    Returns:
        ``(B, H, D)`` in the inputs' dtype (accumulated in fp32).
    """
    bank, weights = bank.contiguous(), weights.contiguous()
    B, N, D = bank.shape
    H = weights.shape[1]
    if min(B, N, D, H) == 0:
        return bank.new_zeros((B, H, D))
    out = torch.empty((B, H, D), device=bank.device, dtype=bank.dtype)
    block_h, block_n, block_d = tiling.head_tiles(H, N, D)
    num_db = triton.cdiv(D, block_d)
    rows, splits = tiling.n_splits(N, block_n, B * num_db, bank.device)
    # Several splits: fp32 partials, summed here (a tensor N/rows times smaller than the bank).
    dest = out if splits == 1 else torch.empty((B, splits, H, D), device=bank.device, dtype=torch.float32)
    _soft_read_fwd_kernel[(B, splits, num_db)](bank, weights, dest, H, N, D, rows,
                                               BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
                                               num_warps=tiling.NUM_WARPS)
    if splits > 1:
        out = dest.sum(dim=1).to(bank.dtype)
    return out


def soft_read_bwd(grad: torch.Tensor, bank: torch.Tensor,
                  weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Backward of :func:`soft_read_fwd`, one pass over ``bank`` and ``grad``.

    .. math::
        \frac{\partial L}{\partial \text{bank}_{b,i}} = \sum_h w_{b,h,i}\, g_{b,h}, \qquad
        \frac{\partial L}{\partial w_{b,h,i}} = \langle g_{b,h}, \text{bank}_{b,i} \rangle

    Args:
        grad: ``(B, H, D)`` gradient of the output ``g``.
        bank: ``(B, N, D)``
        weights: ``(B, H, N)``

    Returns:
        ``(grad_bank (B, N, D), grad_weights (B, H, N))`` in the inputs' dtype.
    """
    grad, bank, weights = grad.contiguous(), bank.contiguous(), weights.contiguous()
    B, N, D = bank.shape
    H = weights.shape[1]
    if min(B, N, D, H) == 0:
        return bank.new_zeros((B, N, D)), weights.new_zeros((B, H, N))
    grad = grad.to(bank.dtype)
    gbank = torch.empty_like(bank)
    gw = torch.empty_like(weights)
    block_h, block_n, block_d = tiling.head_tiles(H, N, D)
    grid = (B, triton.cdiv(N, block_n))
    _soft_read_bwd_kernel[grid](grad, bank, weights, gbank, gw, H, N, D,
                                BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=tiling.NUM_WARPS)
    return gbank, gw


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py
# ---------------------------------------------------------------------------------------------------------


def _compile_specs() -> list[tuple]:
    H, N, D = (tiling.COMPILE_SIZES[k] for k in "HND")
    hb, hn, hd = tiling.head_tiles(H, N, D)
    head_tiles = {"BLOCK_H": hb, "BLOCK_N": hn, "BLOCK_D": hd}
    hnd = ["H", "N", "D"]
    return [
        ("", _soft_read_fwd_kernel, ["bank_ptr", "w_ptr", "out_ptr"], [], hnd + ["ROWS_PER_SPLIT"], head_tiles),
        ("", _soft_read_bwd_kernel, ["grad_ptr", "bank_ptr", "w_ptr", "gbank_ptr", "gw_ptr"], [], hnd, head_tiles),
    ]


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = tiling.compile_targets(_compile_specs())

__all__ = ["soft_read_fwd", "soft_read_bwd", "COMPILE_TARGETS"]
