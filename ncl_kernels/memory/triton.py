"""Triton kernels for the memory ops (``soft_read``, ``soft_write``, ``content_address``).

These are plain host functions: forward and hand-written backward for each op. The autograd wiring, the
``torch.library`` registration and the input validation live in :mod:`ncl_kernels.memory`; the functions
here assume inputs that already passed those checks (same device, same dtype in fp32/fp16/bf16), but call
``.contiguous()`` anyway, which costs nothing on contiguous tensors and keeps a strided input correct.

Numerics: every kernel loads in the input dtype, upcasts to fp32, accumulates in fp32 and casts once on
store. Cross-program partial sums (the "small reductions" of the backward passes) go through fp32
workspaces and are summed by PyTorch in fp32 before the final cast.

Triton rules followed here (see docs/building.md): the 3.6 API with plain pointer arithmetic (no block
pointers, no libdevice, no inline asm), every load masked, no ``tl.dot`` (the products are formed by
broadcasting in fp32, which is exact under the interpreter and leaves the memory-bound kernels bound by
memory on the GPU), no autotuning. The kernels run on CUDA tensors, or on CPU tensors when
``TRITON_INTERPRET=1`` was set before this module was imported.

Tiling: the head dimension ``H`` (a handful of heads) is held whole in every program as a
``next_power_of_2(H)`` block; ``N`` and ``D`` are looped over in tiles whose sizes are picked from the shapes
so that the largest 3-D temporary (``BLOCK_H x BLOCK_N x BLOCK_D``) stays within :data:`TILE_BUDGET`
elements. Large ``H`` therefore still runs correctly, with smaller ``N``/``D`` tiles.

Parallelism: the forward reductions over ``N`` (``soft_read``, ``content_address``) would have only
``B`` (times a few ``D`` tiles) programs, too few to stream the bank at full bandwidth on a GPU with a small
batch. When that is the case, ``N`` is cut into splits (a whole number of tiles each, see
:func:`_n_splits`) whose partial results are merged afterwards: fp32 partial sums for ``soft_read``, and
per-split softmax (max, sum-exp) statistics merged by a second small kernel for ``content_address``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.memory.reference import NORM_EPS
from ncl_kernels._triton_targets import compile_target

#: Elements in the largest fp32 temporary a program builds (3-D broadcast products). With 4 warps this is
#: 16 fp32 values per thread: at 4096 the soft_read and soft_write backward kernels reached 127 and 187
#: registers on sm_90a; at 2048 every kernel stays at or below 72, with no spills (see
#: ``scripts/compile_triton_sm90.py``).
TILE_BUDGET = 2048
#: Elements per program for the purely elementwise ``soft_write`` forward.
ELEMWISE_TILE = 4096
#: Widest ``D`` tile: 64 fp32 (or 128 bytes of bf16) per row is enough for coalesced loads, and narrower
#: tiles give more programs for the per-batch grids.
MAX_BLOCK_D = 64
NUM_WARPS = 4
#: Programs per SM that the N-split reductions (soft_read and content_address forward) aim for.
PROGRAMS_PER_SM = 8
#: Overrides the program-count target (tests set it to force or prevent N splits); ``None``: automatic.
TARGET_PROGRAMS: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Tile choice
# ---------------------------------------------------------------------------------------------------------

def _p2(x: int) -> int:
    """The next power of two >= ``x`` (and >= 1, since ``tl.arange`` needs a positive power of two)."""
    return triton.next_power_of_2(max(int(x), 1))


def _head_tiles(H: int, N: int, D: int) -> tuple[int, int, int]:
    """``(BLOCK_H, BLOCK_N, BLOCK_D)`` for the kernels that broadcast over heads x rows x columns."""
    block_h = _p2(H)
    block_d = min(_p2(D), MAX_BLOCK_D)
    # Many heads: narrow the D tile before the N tile, so one row tile is still several rows.
    while block_h * block_d > TILE_BUDGET // 2 and block_d > 1:
        block_d //= 2
    block_n = max(1, min(_p2(N), TILE_BUDGET // (block_h * block_d)))
    return block_h, block_n, block_d


def _elementwise_tiles(N: int, D: int) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_D)`` for ``soft_write``: a wide D tile for coalescing, rows to fill the tile."""
    block_d = min(_p2(D), 256)
    block_n = max(1, min(_p2(N), ELEMWISE_TILE // block_d))
    return block_n, block_d


def _soft_write_bwd_tiles(N: int, D: int) -> tuple[int, int]:
    # Two (BLOCK_N, BLOCK_D) tiles (grad and bank) are live at once, plus the products: half the budget.
    block_d = min(_p2(D), MAX_BLOCK_D)
    block_n = max(1, min(_p2(N), TILE_BUDGET // (2 * block_d)))
    return block_n, block_d


def _target_programs(device: torch.device) -> int:
    """How many programs a launch should have to fill the machine: several per SM on a GPU."""
    if TARGET_PROGRAMS is not None:
        return TARGET_PROGRAMS
    if device.type == "cuda":
        return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    return 1024


def _n_splits(N: int, block_n: int, base_programs: int, device: torch.device) -> tuple[int, int]:
    """``(rows_per_split, num_splits)``: cut the N loop of a per-batch reduction into splits (each a
    whole number of ``block_n`` tiles) when ``base_programs`` alone would leave the GPU idle, so that a
    small batch still streams the bank from many SMs. The partial results are combined afterwards."""
    n_tiles = triton.cdiv(N, block_n)
    want = max(1, triton.cdiv(_target_programs(device), max(base_programs, 1)))
    tiles_per_split = triton.cdiv(n_tiles, min(want, n_tiles))
    rows = tiles_per_split * block_n
    return rows, triton.cdiv(N, rows)


# ---------------------------------------------------------------------------------------------------------
# soft_read
# ---------------------------------------------------------------------------------------------------------

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
    block_h, block_n, block_d = _head_tiles(H, N, D)
    num_db = triton.cdiv(D, block_d)
    rows, splits = _n_splits(N, block_n, B * num_db, bank.device)
    # Several splits: fp32 partials, summed here (a tensor N/rows times smaller than the bank).
    dest = out if splits == 1 else torch.empty((B, splits, H, D), device=bank.device, dtype=torch.float32)
    _soft_read_fwd_kernel[(B, splits, num_db)](bank, weights, dest, H, N, D, rows,
                                               BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
                                               num_warps=NUM_WARPS)
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
    block_h, block_n, block_d = _head_tiles(H, N, D)
    grid = (B, triton.cdiv(N, block_n))
    _soft_read_bwd_kernel[grid](grad, bank, weights, gbank, gw, H, N, D,
                                BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=NUM_WARPS)
    return gbank, gw


# ---------------------------------------------------------------------------------------------------------
# soft_write
# ---------------------------------------------------------------------------------------------------------

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
                                 BLOCK_N=block_n, BLOCK_D=block_d, num_warps=NUM_WARPS)
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
                                        BLOCK_N=block_n, BLOCK_D=block_d, num_warps=NUM_WARPS)
    gv = ws_v.sum(dim=1).to(values.dtype)
    gg = ws_g.sum(dim=1).to(gate.dtype)
    return gbank, gw, gv, gg


# ---------------------------------------------------------------------------------------------------------
# content_address
# ---------------------------------------------------------------------------------------------------------

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
    block_h, block_n, block_d = _head_tiles(H, N, D)
    rows, splits = _n_splits(N, block_n, B, bank.device)
    # Enough batches to fill the GPU: one fused kernel per batch row. Otherwise split N and merge the
    # per-split softmax statistics in a second, small kernel (it touches only the (B, H, N) logits).
    stats = torch.empty((B, splits, 2, H), device=bank.device, dtype=torch.float32)
    _content_address_fwd_kernel[(B, splits)](bank, keys, strength, out, ws, stats, H, N, D, rows, EPS=NORM_EPS,
                                             BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d,
                                             NORMALIZE=splits == 1, num_warps=NUM_WARPS)
    if splits > 1:
        norm_n = max(1, min(_p2(rows), TILE_BUDGET // block_h))
        _softmax_normalize_kernel[(B, splits)](ws, stats, out, H, N, rows,
                                               BLOCK_H=block_h, BLOCK_N=norm_n, BLOCK_S=_p2(splits),
                                               num_warps=NUM_WARPS)
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
    block_h, block_n, block_d = _head_tiles(H, N, D)
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
                                             num_warps=NUM_WARPS)
    k32 = keys.float()
    knorm = torch.linalg.vector_norm(k32, dim=-1)
    inv = torch.where(knorm > 0, 1.0 / (knorm.clamp_min(torch.finfo(torch.float32).tiny) * (knorm + NORM_EPS)),
                      torch.zeros_like(knorm))
    gk = ws_k.sum(dim=1) - (ws_t.sum(dim=1) * inv)[..., None] * k32
    return gbank, gk.to(keys.dtype), ws_beta.sum(dim=1).to(strength.dtype)


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py
# ---------------------------------------------------------------------------------------------------------


def _compile_targets() -> list[dict]:
    """One entry per kernel and dtype, with the tiles the host functions pick at the large benchmark size.

    Each entry: ``name``, ``fn`` (the ``@triton.jit`` function), ``signature`` (argument name -> Triton type
    string, ``"constexpr"`` for compile-time arguments), ``constexprs`` (name -> value), ``divisible``
    (argument names that a real launch specialises as multiples of 16: every pointer from the caching
    allocator, and the int sizes at this shape) and ``num_warps``.
    """
    N, D, H = 1024, 256, 4  # at B = 64
    rows = 64  # ROWS_PER_SPLIT at this size on a 132-SM H100 (8 programs per SM)
    sizes = {"H": H, "N": N, "D": D, "ROWS_PER_SPLIT": rows}
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        hb, hn, hd = _head_tiles(H, N, D)
        en, ed = _elementwise_tiles(N, D)
        wn, wd = _soft_write_bwd_tiles(N, D)
        head_tiles = {"BLOCK_H": hb, "BLOCK_N": hn, "BLOCK_D": hd}
        eps = {"EPS": NORM_EPS}
        hnd = ["H", "N", "D"]
        # (label suffix, kernel, pointers of the input dtype, fp32 pointers, int arguments, constexprs)
        specs = [
            ("", _soft_read_fwd_kernel, ["bank_ptr", "w_ptr", "out_ptr"], [], hnd + ["ROWS_PER_SPLIT"],
             head_tiles),
            ("", _soft_read_bwd_kernel, ["grad_ptr", "bank_ptr", "w_ptr", "gbank_ptr", "gw_ptr"], [], hnd,
             head_tiles),
            ("", _soft_write_fwd_kernel, ["bank_ptr", "w_ptr", "v_ptr", "gate_ptr", "out_ptr"], [], ["N", "D"],
             {"BLOCK_N": en, "BLOCK_D": ed}),
            ("", _soft_write_bwd_kernel, ["grad_ptr", "bank_ptr", "w_ptr", "v_ptr", "gate_ptr", "gbank_ptr",
                                          "gw_ptr"], ["ws_v_ptr", "ws_g_ptr"], ["N", "D"],
             {"BLOCK_N": wn, "BLOCK_D": wd}),
            (",fused", _content_address_fwd_kernel, ["bank_ptr", "k_ptr", "beta_ptr", "out_ptr"],
             ["ws_ptr", "stats_ptr"], hnd + ["ROWS_PER_SPLIT"], {**eps, **head_tiles, "NORMALIZE": True}),
            (",split", _content_address_fwd_kernel, ["bank_ptr", "k_ptr", "beta_ptr", "out_ptr"],
             ["ws_ptr", "stats_ptr"], hnd + ["ROWS_PER_SPLIT"], {**eps, **head_tiles, "NORMALIZE": False}),
            ("", _softmax_normalize_kernel, ["out_ptr"], ["ws_ptr", "stats_ptr"], ["H", "N", "ROWS_PER_SPLIT"],
             {"BLOCK_H": hb, "BLOCK_N": min(rows, TILE_BUDGET // hb), "BLOCK_S": _p2(triton.cdiv(N, rows))}),
            ("", _content_address_bwd_kernel, ["grad_ptr", "out_ptr", "bank_ptr", "k_ptr", "beta_ptr",
                                               "gbank_ptr"],
             ["pg_ptr", "ws_k_ptr", "ws_beta_ptr", "ws_t_ptr"], hnd, {**eps, **head_tiles}),
        ]
        for suffix, fn, typed_ptrs, f32_ptrs, ints, constexprs in specs:
            divisible = typed_ptrs + f32_ptrs + [n for n in ints if sizes[n] % 16 == 0]
            targets.append(compile_target(fn, dtype, typed_ptrs, f32_ptrs, ints, constexprs,
                                          divisible=divisible, suffix=suffix, num_warps=NUM_WARPS))
    return targets


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = [
    "soft_read_fwd", "soft_read_bwd", "soft_write_fwd", "soft_write_bwd", "content_address_fwd",
    "content_address_bwd", "COMPILE_TARGETS",
]
