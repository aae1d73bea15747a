"""Triton kernels of ``content_address``: softmax over the ε-cosine of keys and bank rows, forward and backward.

Rules, numerics and tiling: :mod:`ncl_kernels.memory.triton`. The forward is one fused kernel per batch row
(norms, dots, an online softmax); when ``N`` is split across programs to fill the GPU
(:func:`~ncl_kernels.memory.triton.tiling.n_splits`), a second small kernel merges the splits' (max, sum-exp)
statistics. The backward recomputes the cosines and leaves the ``N``-reductions (key and strength gradients)
as fp32 partials for the host to sum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.memory.reference import NORM_EPS
from ncl_kernels.memory.triton import tiling


@triton.jit
def _content_address_fwd_kernel(bank_ptr, k_ptr, beta_ptr, out_ptr, ws_ptr, stats_ptr, H, N, D, ROWS_PER_SPLIT,
                                EPS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
                                BLOCK_D: tl.constexpr, NORMALIZE: tl.constexpr):
    # One program per (batch, N split), all heads: key norms, then for each N tile the dots and bank-row
    # norms over D tiles, giving the logits and an online (max, sum-exp) per head. The fp32 logits go to a
    # workspace (H*N, D/H times smaller than the bank) so the bank is read once.
    # NORMALIZE (a single split: the program owns whole rows): a second sweep over the workspace writes
    # the softmax here. Otherwise the split's (max, sum) go to stats_ptr, (B, S, 2, H), and
    # _softmax_normalize_kernel combines the splits.
    pid_b = tl.program_id(0).to(tl.int64)
    pid_s = tl.program_id(1)
    num_s = tl.num_programs(1)
    offs_h = tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    k_base = k_ptr + pid_b * H * D
    bank_base = bank_ptr + pid_b * N * D
    row_off = pid_b * H * N + offs_h[:, None] * N
    n_start = pid_s * ROWS_PER_SPLIT
    n_end = tl.minimum(n_start + ROWS_PER_SPLIT, N)

    ksq = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        k = tl.load(k_base + offs_h[:, None] * D + offs_d[None, :],
                    mask=mask_h[:, None] & (offs_d < D)[None, :], other=0.0).to(tl.float32)
        ksq += tl.sum(k * k, axis=1)
    beta = tl.load(beta_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    # Padding heads get beta = 0, hence finite logits: no inf - inf below.
    scale = beta / (tl.sqrt(ksq) + EPS)

    run_max = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_end
        dots = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
        msq = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = offs_d < D
            m = tl.load(bank_base + offs_n[:, None] * D + offs_d[None, :],
                        mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
            k = tl.load(k_base + offs_h[:, None] * D + offs_d[None, :],
                        mask=mask_h[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
            dots += tl.sum(k[:, None, :] * m[None, :, :], axis=2)
            msq += tl.sum(m * m, axis=1)
        logits = dots * scale[:, None] / (tl.sqrt(msq) + EPS)[None, :]
        # Every tile holds at least one real row, so the tile max stays finite.
        logits = tl.where(mask_n[None, :], logits, float("-inf"))
        tl.store(ws_ptr + row_off + offs_n[None, :], logits, mask=mask_h[:, None] & mask_n[None, :])
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        run_max = new_max

    if NORMALIZE:
        # The workspace was written by other threads of this program; make those writes visible.
        tl.debug_barrier()
        inv_sum = 1.0 / run_sum
        for n0 in range(0, N, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask = mask_h[:, None] & (offs_n < N)[None, :]
            logits = tl.load(ws_ptr + row_off + offs_n[None, :], mask=mask, other=float("-inf"))
            p = tl.exp(logits - run_max[:, None]) * inv_sum[:, None]
            tl.store(out_ptr + row_off + offs_n[None, :], p.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        stats = stats_ptr + (pid_b * num_s + pid_s) * 2 * H + offs_h
        tl.store(stats, run_max, mask=mask_h)
        tl.store(stats + H, run_sum, mask=mask_h)


@triton.jit
def _softmax_normalize_kernel(ws_ptr, stats_ptr, out_ptr, H, N, ROWS_PER_SPLIT,
                              BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr):
    # Second half of a split content_address forward: one program per (batch, N split) merges the (max,
    # sum-exp) of every split of its rows (a few numbers per head) and writes its own rows' softmax.
    pid_b = tl.program_id(0).to(tl.int64)
    pid_s = tl.program_id(1)
    num_s = tl.num_programs(1)
    offs_h = tl.arange(0, BLOCK_H)
    offs_s = tl.arange(0, BLOCK_S)
    mask_h = offs_h < H
    mask_sh = (offs_s < num_s)[:, None] & mask_h[None, :]
    st = stats_ptr + pid_b * num_s * 2 * H + offs_s[:, None] * 2 * H + offs_h[None, :]
    maxes = tl.load(st, mask=mask_sh, other=float("-inf"))
    sums = tl.load(st + H, mask=mask_sh, other=0.0)
    # Padding heads have no finite max and a zero sum; pin both so that they stay finite (they are never
    # stored, but inf * 0 would still be computed).
    row_max = tl.where(mask_h, tl.max(maxes, axis=0), 0.0)
    inv_sum = 1.0 / tl.where(mask_h, tl.sum(sums * tl.exp(maxes - row_max[None, :]), axis=0), 1.0)

    row_off = pid_b * H * N + offs_h[:, None] * N
    n_start = pid_s * ROWS_PER_SPLIT
    n_end = tl.minimum(n_start + ROWS_PER_SPLIT, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask = mask_h[:, None] & (offs_n < n_end)[None, :]
        logits = tl.load(ws_ptr + row_off + offs_n[None, :], mask=mask, other=float("-inf"))
        p = tl.exp(logits - row_max[:, None]) * inv_sum[:, None]
        tl.store(out_ptr + row_off + offs_n[None, :], p.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _content_address_bwd_kernel(grad_ptr, out_ptr, bank_ptr, k_ptr, beta_ptr, pg_ptr,
                                gbank_ptr, ws_k_ptr, ws_beta_ptr, ws_t_ptr, H, N, D,
                                EPS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
                                BLOCK_D: tl.constexpr):
    # One program per (batch, N tile), all heads. First sweep over D: cosines c[h, i] (recomputed: cheaper
    # and more accurate than recovering them from the saved softmax). Second sweep over the same bank tile
    # (an L1/L2 hit): grad_bank for the tile, and this tile's partial of the key gradient. Reductions over
    # N (key gradient, strength gradient) leave fp32 partials in workspaces for the host to sum.
    pid_b = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    num_nb = tl.num_programs(1)
    offs_h = tl.arange(0, BLOCK_H)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask_n = offs_n < N
    mask_hn = mask_h[:, None] & mask_n[None, :]
    k_base = k_ptr + pid_b * H * D
    bank_base = bank_ptr + pid_b * N * D

    ksq = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        k = tl.load(k_base + offs_h[:, None] * D + offs_d[None, :],
                    mask=mask_h[:, None] & (offs_d < D)[None, :], other=0.0).to(tl.float32)
        ksq += tl.sum(k * k, axis=1)
    kn = tl.sqrt(ksq) + EPS
    beta = tl.load(beta_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    pg = tl.load(pg_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0)

    hn_off = pid_b * H * N + offs_h[:, None] * N + offs_n[None, :]
    p = tl.load(out_ptr + hn_off, mask=mask_hn, other=0.0).to(tl.float32)
    g = tl.load(grad_ptr + hn_off, mask=mask_hn, other=0.0).to(tl.float32)

    dots = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    msq = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        m = tl.load(bank_base + offs_n[:, None] * D + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        k = tl.load(k_base + offs_h[:, None] * D + offs_d[None, :],
                    mask=mask_h[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        dots += tl.sum(k[:, None, :] * m[None, :, :], axis=2)
        msq += tl.sum(m * m, axis=1)
    mnorm = tl.sqrt(msq)
    mn = mnorm + EPS
    inv_kn_mn = 1.0 / (kn[:, None] * mn[None, :])
    c = dots * inv_kn_mn
    gs = p * (g - pg[:, None])          # dL/dlogit (softmax backward); 0 on padding
    gc = beta[:, None] * gs             # dL/dc
    gcc = gc * c
    tl.store(ws_beta_ptr + (pid_b * num_nb + pid_n) * H + offs_h, tl.sum(gs * c, axis=1), mask=mask_h)
    tl.store(ws_t_ptr + (pid_b * num_nb + pid_n) * H + offs_h, tl.sum(gcc, axis=1), mask=mask_h)
    coef = gc * inv_kn_mn               # weight of k_h in dc/dm_i and of m_i in dc/dk_h
    # d||m|| / dm = m / ||m||, taken as 0 at m = 0 like torch's norm backward.
    safe_mnorm = tl.where(mnorm > 0.0, mnorm, 1.0)
    mcoef = tl.where(mnorm > 0.0, tl.sum(gcc, axis=0) / (safe_mnorm * mn), 0.0)

    ws_k_base = ws_k_ptr + (pid_b * num_nb + pid_n) * H * D
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        mask_nd = mask_n[:, None] & mask_d[None, :]
        m = tl.load(bank_base + offs_n[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0).to(tl.float32)
        k = tl.load(k_base + offs_h[:, None] * D + offs_d[None, :],
                    mask=mask_h[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        gm = tl.sum(coef[:, :, None] * k[:, None, :], axis=0) - mcoef[:, None] * m
        tl.store(gbank_ptr + pid_b * N * D + offs_n[:, None] * D + offs_d[None, :],
                 gm.to(gbank_ptr.dtype.element_ty), mask=mask_nd)
        gk = tl.sum(coef[:, :, None] * m[None, :, :], axis=1)
        tl.store(ws_k_base + offs_h[:, None] * D + offs_d[None, :], gk, mask=mask_h[:, None] & mask_d[None, :])


def content_address_fwd(bank: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    r"""Content-based addressing, fused: norms, dots and the softmax in one kernel per batch row (plus a
    small merge kernel when N is split across programs to fill the GPU).

    .. math:: \text{out}_{b,h,i} = \operatorname{softmax}_i\Big(\beta_{b,h}
              \frac{\langle k_{b,h}, m_{b,i}\rangle}{(\lVert k_{b,h}\rVert + \epsilon)(\lVert m_{b,i}\rVert + \epsilon)}\Big)

    with :math:`\epsilon` = ``reference.NORM_EPS``.

    Args:
        bank: ``(B, N, D)`` memory rows ``m``.
        keys: ``(B, H, D)``
        strength: ``(B, H)`` sharpness ``β``.

    Returns:
        ``(B, H, N)`` in the inputs' dtype; each row sums to 1.
    """
    bank, keys, strength = bank.contiguous(), keys.contiguous(), strength.contiguous()
    B, N, D = bank.shape
    H = keys.shape[1]
    out = torch.empty((B, H, N), device=bank.device, dtype=bank.dtype)
    if out.numel() == 0:
        return out
    ws = torch.empty((B, H, N), device=bank.device, dtype=torch.float32)
    block_h, block_n, block_d = tiling.head_tiles(H, N, D)
    rows, splits = tiling.n_splits(N, block_n, B, bank.device)
    # Enough batches to fill the GPU: one fused kernel per batch row. Otherwise split N and merge the
    # per-split softmax statistics in a second, small kernel (it touches only the (B, H, N) logits).
    stats = torch.empty((B, splits, 2, H), device=bank.device, dtype=torch.float32)
    _content_address_fwd_kernel[(B, splits)](bank, keys, strength, out, ws, stats, H, N, D, rows, EPS=NORM_EPS,
                                             BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
                                             NORMALIZE=splits == 1, num_warps=tiling.NUM_WARPS)
    if splits > 1:
        norm_n = max(1, min(tiling.p2(rows), tiling.TILE_BUDGET // block_h))
        _softmax_normalize_kernel[(B, splits)](ws, stats, out, H, N, rows,
                                               BLOCK_H=block_h, BLOCK_N=norm_n, BLOCK_S=tiling.p2(splits),
                                               num_warps=tiling.NUM_WARPS)
    return out


def content_address_bwd(grad: torch.Tensor, out: torch.Tensor, bank: torch.Tensor, keys: torch.Tensor,
                        strength: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Backward of :func:`content_address_fwd`, given its output ``p``.

    With :math:`c_{hi}` the cosine, :math:`\kappa_h = \lVert k_h\rVert + \epsilon`,
    :math:`\mu_i = \lVert m_i\rVert + \epsilon` and upstream gradient :math:`G`:

    .. math::
        s_{hi} = p_{hi}\big(G_{hi} - \textstyle\sum_j p_{hj} G_{hj}\big), \qquad
        \partial\beta_h = \sum_i s_{hi} c_{hi}, \qquad \gamma_{hi} = \beta_h s_{hi},

        \partial k_h = \sum_i \frac{\gamma_{hi}}{\kappa_h \mu_i} m_i
                      - \Big(\sum_i \gamma_{hi} c_{hi}\Big) \frac{k_h}{\lVert k_h\rVert \kappa_h}, \qquad
        \partial m_i = \sum_h \frac{\gamma_{hi}}{\kappa_h \mu_i} k_h
                      - \Big(\sum_h \gamma_{hi} c_{hi}\Big) \frac{m_i}{\lVert m_i\rVert \mu_i}

    (the norm terms are 0 for a zero vector, as in torch's norm backward).

    Args:
        grad: ``(B, H, N)`` gradient of the output ``G``.
        out: ``(B, H, N)`` the forward's result ``p``.
        bank: ``(B, N, D)``
        keys: ``(B, H, D)``
        strength: ``(B, H)``

    Returns:
        ``(grad_bank (B, N, D), grad_keys (B, H, D), grad_strength (B, H))`` in the inputs' dtype.
    """
    grad, out = grad.contiguous(), out.contiguous()
    bank, keys, strength = bank.contiguous(), keys.contiguous(), strength.contiguous()
    B, N, D = bank.shape
    H = keys.shape[1]
    if min(B, N, H) == 0:
        return torch.zeros_like(bank), torch.zeros_like(keys), torch.zeros_like(strength)
    grad = grad.to(bank.dtype)
    block_h, block_n, block_d = tiling.head_tiles(H, N, D)
    num_nb = triton.cdiv(N, block_n)
    # <p, G> per row: a small (B, H, N) reduction that every N tile needs whole.
    pg = (out.float() * grad.float()).sum(dim=-1).contiguous()
    gbank = torch.empty_like(bank)
    f32 = dict(device=bank.device, dtype=torch.float32)
    ws_k = torch.empty((B, num_nb, H, D), **f32)
    ws_beta = torch.empty((B, num_nb, H), **f32)
    ws_t = torch.empty((B, num_nb, H), **f32)
    _content_address_bwd_kernel[(B, num_nb)](grad, out, bank, keys, strength, pg, gbank, ws_k, ws_beta, ws_t,
                                             H, N, D, EPS=NORM_EPS,
                                             BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
                                             num_warps=tiling.NUM_WARPS)
    k32 = keys.float()
    knorm = torch.linalg.vector_norm(k32, dim=-1)
    inv = torch.where(knorm > 0, 1.0 / (knorm.clamp_min(torch.finfo(torch.float32).tiny) * (knorm + NORM_EPS)),
                      torch.zeros_like(knorm))
    gk = ws_k.sum(dim=1) - (ws_t.sum(dim=1) * inv)[..., None] * k32
    return gbank, gk.to(keys.dtype), ws_beta.sum(dim=1).to(strength.dtype)


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py
# ---------------------------------------------------------------------------------------------------------


def _compile_specs() -> list[tuple]:
    H, N, D, rows = (tiling.COMPILE_SIZES[k] for k in ("H", "N", "D", "ROWS_PER_SPLIT"))
    hb, hn, hd = tiling.head_tiles(H, N, D)
    head_tiles = {"BLOCK_H": hb, "BLOCK_N": hn, "BLOCK_D": hd}
    eps = {"EPS": NORM_EPS}
    hnd = ["H", "N", "D"]
    return [
        (",fused", _content_address_fwd_kernel, ["bank_ptr", "k_ptr", "beta_ptr", "out_ptr"],
         ["ws_ptr", "stats_ptr"], hnd + ["ROWS_PER_SPLIT"], {**eps, **head_tiles, "NORMALIZE": True}),
        (",split", _content_address_fwd_kernel, ["bank_ptr", "k_ptr", "beta_ptr", "out_ptr"],
         ["ws_ptr", "stats_ptr"], hnd + ["ROWS_PER_SPLIT"], {**eps, **head_tiles, "NORMALIZE": False}),
        ("", _softmax_normalize_kernel, ["out_ptr"], ["ws_ptr", "stats_ptr"], ["H", "N", "ROWS_PER_SPLIT"],
         {"BLOCK_H": hb, "BLOCK_N": min(rows, tiling.TILE_BUDGET // hb),
          "BLOCK_S": tiling.p2(triton.cdiv(N, rows))}),
        ("", _content_address_bwd_kernel, ["grad_ptr", "out_ptr", "bank_ptr", "k_ptr", "beta_ptr", "gbank_ptr"],
         ["pg_ptr", "ws_k_ptr", "ws_beta_ptr", "ws_t_ptr"], hnd, {**eps, **head_tiles}),
    ]


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = tiling.compile_targets(_compile_specs())

__all__ = ["content_address_fwd", "content_address_bwd", "COMPILE_TARGETS"]
