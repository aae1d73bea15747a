"""Triton kernels of ``soft_write``: the gated, weighted overwrite of a memory bank, forward and backward.

Rules and numerics: :mod:`ncl_kernels.memory.triton`. The forward is elementwise over ``(N, D)`` tiles; the
backward sweeps ``D`` once per ``(batch, N tile)`` and leaves the ``N``-reductions (value and gate gradients)
as fp32 partials for the host to sum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.memory.triton import tiling


def _elementwise_tiles(N: int, D: int) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_D)`` for ``soft_write``: a wide D tile for coalescing, rows to fill the tile."""
    block_d = min(tiling.p2(D), 256)
    block_n = max(1, min(tiling.p2(N), tiling.ELEMWISE_TILE // block_d))
    return block_n, block_d


def _soft_write_bwd_tiles(N: int, D: int) -> tuple[int, int]:
    # Two (BLOCK_N, BLOCK_D) tiles (grad and bank) are live at once, plus the products: half the budget.
    block_d = min(tiling.p2(D), tiling.MAX_BLOCK_D)
    block_n = max(1, min(tiling.p2(N), tiling.TILE_BUDGET // (2 * block_d)))
    return block_n, block_d


@triton.jit
def _soft_write_fwd_kernel(bank_ptr, w_ptr, v_ptr, gate_ptr, out_ptr, N, D,
                           BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # Elementwise over (N, D) tiles: one read and one write of the bank, nothing else of size N*D.
    pid_b = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    pid_d = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_n = offs_n < N
    mask_d = offs_d < D
    mask = mask_n[:, None] & mask_d[None, :]

    g = tl.load(gate_ptr + pid_b).to(tl.float32)
    w = tl.load(w_ptr + pid_b * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + pid_b * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    off = pid_b * N * D + offs_n[:, None] * D + offs_d[None, :]
    m = tl.load(bank_ptr + off, mask=mask, other=0.0).to(tl.float32)
    a = g * w
    out = m + a[:, None] * (v[None, :] - m)
    tl.store(out_ptr + off, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _soft_write_bwd_kernel(grad_ptr, bank_ptr, w_ptr, v_ptr, gate_ptr,
                           gbank_ptr, gw_ptr, ws_v_ptr, ws_g_ptr, N, D,
                           BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # One program per (batch, N tile), sweeping D once: grad_bank is elementwise, grad_weights is a
    # D-reduction that stays in the program, and grad_values / grad_gate are N-reductions that leave one
    # fp32 partial per program in a workspace (summed on the host, a tensor N/BLOCK_N times smaller than
    # the bank).
    pid_b = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    num_nb = tl.num_programs(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N

    g = tl.load(gate_ptr + pid_b).to(tl.float32)
    w = tl.load(w_ptr + pid_b * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    a = g * w
    ga = tl.zeros((BLOCK_N,), dtype=tl.float32)  # dL/da_i = sum_d grad[i, d] (v_d - bank[i, d])
    ws_row = (pid_b * num_nb + pid_n) * D
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        mask = mask_n[:, None] & mask_d[None, :]
        off = pid_b * N * D + offs_n[:, None] * D + offs_d[None, :]
        go = tl.load(grad_ptr + off, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(bank_ptr + off, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + pid_b * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        # out = (1 - a_i) bank + a_i v
        tl.store(gbank_ptr + off, (go * (1.0 - a[:, None])).to(gbank_ptr.dtype.element_ty), mask=mask)
        ga += tl.sum(go * (v[None, :] - m), axis=1)
        tl.store(ws_v_ptr + ws_row + offs_d, tl.sum(a[:, None] * go, axis=0), mask=mask_d)

    tl.store(gw_ptr + pid_b * N + offs_n, (g * ga).to(gw_ptr.dtype.element_ty), mask=mask_n)
    tl.store(ws_g_ptr + pid_b * num_nb + pid_n, tl.sum(w * ga, axis=0))


def soft_write_fwd(bank: torch.Tensor, weights: torch.Tensor, values: torch.Tensor,
                   gate: torch.Tensor) -> torch.Tensor:
    r"""Gated, weighted overwrite of a memory bank, fused into one pass (functional).

    .. math:: \text{bank}'_{b,i} = \text{bank}_{b,i} + g_b\, w_{b,i}\, (v_b - \text{bank}_{b,i})

    Args:
        bank: ``(B, N, D)``
        weights: ``(B, N)``
        values: ``(B, D)``
        gate: ``(B,)``

    Returns:
        ``(B, N, D)``, a new tensor in the inputs' dtype.
    """
    bank, weights = bank.contiguous(), weights.contiguous()
    values, gate = values.contiguous(), gate.contiguous()
    B, N, D = bank.shape
    out = torch.empty_like(bank)
    if out.numel() == 0:
        return out
    block_n, block_d = _elementwise_tiles(N, D)
    grid = (B, triton.cdiv(N, block_n), triton.cdiv(D, block_d))
    _soft_write_fwd_kernel[grid](bank, weights, values, gate, out, N, D,
                                 BLOCK_N=block_n, BLOCK_D=block_d, num_warps=tiling.NUM_WARPS)
    return out


def soft_write_bwd(grad: torch.Tensor, bank: torch.Tensor, weights: torch.Tensor, values: torch.Tensor,
                   gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Backward of :func:`soft_write_fwd`: all four gradients from one pass over ``bank`` and ``grad``.

    With :math:`a_{b,i} = g_b w_{b,i}` and upstream gradient :math:`G`:

    .. math::
        \partial\text{bank}_{b,i} = (1 - a_{b,i})\, G_{b,i}, \qquad
        s_{b,i} = \langle G_{b,i}, v_b - \text{bank}_{b,i} \rangle,

        \partial w_{b,i} = g_b\, s_{b,i}, \qquad
        \partial v_b = \sum_i a_{b,i}\, G_{b,i}, \qquad
        \partial g_b = \sum_i w_{b,i}\, s_{b,i}

    Args:
        grad: ``(B, N, D)`` gradient of the output ``G``.
        bank: ``(B, N, D)``
        weights: ``(B, N)``
        values: ``(B, D)``
        gate: ``(B,)``

    Returns:
        ``(grad_bank (B, N, D), grad_weights (B, N), grad_values (B, D), grad_gate (B,))`` in the inputs'
        dtype.
    """
    grad, bank, weights = grad.contiguous(), bank.contiguous(), weights.contiguous()
    values, gate = values.contiguous(), gate.contiguous()
    B, N, D = bank.shape
    if min(B, N, D) == 0:
        # Every non-empty gradient is then a sum over an empty set.
        return (torch.zeros_like(bank), torch.zeros_like(weights), torch.zeros_like(values),
                torch.zeros_like(gate))
    grad = grad.to(bank.dtype)
    block_n, block_d = _soft_write_bwd_tiles(N, D)
    num_nb = triton.cdiv(N, block_n)
    gbank = torch.empty_like(bank)
    gw = torch.empty_like(weights)
    ws_v = torch.empty((B, num_nb, D), device=bank.device, dtype=torch.float32)
    ws_g = torch.empty((B, num_nb), device=bank.device, dtype=torch.float32)
    _soft_write_bwd_kernel[(B, num_nb)](grad, bank, weights, values, gate, gbank, gw, ws_v, ws_g, N, D,
                                        BLOCK_N=block_n, BLOCK_D=block_d, num_warps=tiling.NUM_WARPS)
    gv = ws_v.sum(dim=1).to(values.dtype)
    gg = ws_g.sum(dim=1).to(gate.dtype)
    return gbank, gw, gv, gg


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py
# ---------------------------------------------------------------------------------------------------------


def _compile_specs() -> list[tuple]:
    N, D = tiling.COMPILE_SIZES["N"], tiling.COMPILE_SIZES["D"]
    en, ed = _elementwise_tiles(N, D)
    wn, wd = _soft_write_bwd_tiles(N, D)
    return [
        ("", _soft_write_fwd_kernel, ["bank_ptr", "w_ptr", "v_ptr", "gate_ptr", "out_ptr"], [], ["N", "D"],
         {"BLOCK_N": en, "BLOCK_D": ed}),
        ("", _soft_write_bwd_kernel, ["grad_ptr", "bank_ptr", "w_ptr", "v_ptr", "gate_ptr", "gbank_ptr", "gw_ptr"],
         ["ws_v_ptr", "ws_g_ptr"], ["N", "D"], {"BLOCK_N": wn, "BLOCK_D": wd}),
    ]


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = tiling.compile_targets(_compile_specs())

__all__ = ["soft_write_fwd", "soft_write_bwd", "COMPILE_TARGETS"]
