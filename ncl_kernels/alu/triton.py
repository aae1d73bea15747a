"""Triton kernels for the table ALU mixture (:func:`ncl_kernels.alu.alu_mix`).

Plain host functions, forward and hand-written backward; autograd, registration and validation live in
:mod:`ncl_kernels.alu`. The math is the one in ``csrc/include/ncl/alu.h`` (see ``docs/alu.md``):

* ADD and SUB are circular convolution and correlation, computed as gathers ``y[(c - i) mod n]``;
* EQ NE LT LE reduce to two numbers per row, MIN and MAX to prefix and suffix sums (``tl.cumsum``), AND OR
  NOT to ``x[0]``, ``y[0]`` and the row sums, INC and DEC to rolls;
* MUL, DIV and MOD scatter the outer product, tile by tile, with ``tl.atomic_add`` into the fp32 output
  row, their targets ``i*j mod n``, ``i // j`` and ``i mod j`` computed on the fly.

The forward skips, per row, an op whose weight is at most ``SKIP_REL`` times the row's largest weight
(a branch on a scalar, uniform in the program), and sums the pair ops (ADD, SUB over ``x``'s support; MUL, DIV,
MOD over both operands') over the entries above ``SUPPORT_REL / n`` times the operand's largest, as the CPU kernels
do: a tile of ``i`` with no entry there is skipped. The backward needs every op, because the gradient of
a weight is that op's whole output, and is written entirely as gathers (no atomics).

The forward's row-level bodies, :func:`alu_structured_row` and :func:`alu_general_tile`, are ``@triton.jit``
helpers shared with the whole-run machine kernel (:mod:`ncl_kernels.machine.triton`), which mixes one ALU row
per sample and step.

Layout: one program per batch row holds the row (``BLOCK = next_power_of_2(n)`` lanes) and loops over
tiles of the other operand, so the largest temporary (``BLOCK x BLOCK_T``) stays within
:data:`TILE_BUDGET` elements. The general scatter runs on a ``(B, cdiv(n, BLOCK_T))`` grid.

Triton rules (docs/building.md): the 3.6 API with plain pointer arithmetic, every load masked, no libdevice,
no autotuning; runs on CUDA tensors, or on CPU tensors with ``TRITON_INTERPRET=1`` set before import.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.alu import NUM_OPS, SKIP_REL, SUPPORT_REL
from ncl_kernels._triton_targets import compile_target

#: Elements of the largest fp32 2-D temporary of a program (same budget as the memory kernels).
TILE_BUDGET = 2048
#: The backward gathers five 2-D tiles per step (one per general or convolution op): at 2048 elements it
#: reached 255 registers with spills on sm_90a (fp32, n = 128), at 1024 bf16 still spilled; at 512 it takes
#: 80 (fp32) and 72 (bf16) registers with no spills (``scripts/compile_triton_sm90.py``).
BWD_TILE_BUDGET = 512
NUM_WARPS = 4

_SUPPORT_REL = tl.constexpr(SUPPORT_REL)

# Op indices, in the order of ncl_kernels.isa.ALU_OPS (tested against it).
ADD, SUB, MUL, DIV, MOD, EQ, NE, LT, LE, MIN, MAX, AND, OR, INC, DEC, NOT = range(16)
assert NUM_OPS == 16


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


def _tiles(n: int, budget: int = TILE_BUDGET) -> tuple[int, int]:
    """``(BLOCK, BLOCK_T)``: the whole row, and the tile of the other operand looped over."""
    block = _p2(n)
    return block, max(1, min(block, budget // block))


@triton.jit
def _coef(cv, kk, k: tl.constexpr):
    """Scalar weight ``k`` out of the row's weight vector."""
    return tl.sum(tl.where(kk == k, cv, 0.0), axis=0)


@triton.jit
def _support_floor(v, n):
    """The support threshold of an operand ``v`` of ``n`` entries: :data:`~ncl_kernels.alu.SUPPORT_REL` ``/ n``
    times its largest entry (``alu::support`` of ``csrc/include/ncl/alu.h``, the CPU kernels' rule)."""
    return tl.max(tl.abs(v), axis=0) * _SUPPORT_REL / n


@triton.jit
def support_floors(x_row, y_row, n, BLOCK: tl.constexpr):
    """``(x_floor, y_floor)``: :func:`_support_floor` of a row's two operands, read from ``x_row`` and ``y_row``
    (``n`` each); what :func:`alu_structured_row` and :func:`alu_general_tile` take, computed once a row."""
    c = tl.arange(0, BLOCK)
    x = tl.load(x_row + c, mask=c < n, other=0.0).to(tl.float32)
    y = tl.load(y_row + c, mask=c < n, other=0.0).to(tl.float32)
    return _support_floor(x, n), _support_floor(y, n)


@triton.jit
def _on_support(v, floor):
    """``v`` with the entries at or below ``floor`` (in magnitude) set to 0; NaN stays (it compares false)."""
    return tl.where(tl.abs(v) <= floor, 0.0, v)


@triton.jit
def alu_structured_row(x_row, y_row, cv, kk, n, x_floor, SKIP: tl.constexpr, BLOCK: tl.constexpr,
                        BLOCK_T: tl.constexpr):
    """Structured ops (everything but MUL, DIV, MOD) of one row: the fp32 ``(BLOCK,)`` output.

    ``x_row``, ``y_row``: pointers to the row's operands (``n`` each, read with gathers, so they must be in
    global memory); ``cv``: the row's 16 weights as an fp32 tensor over ``kk = tl.arange(0, 16)``; ``x_floor``:
    ``x``'s support threshold (:func:`support_floors`).
    """
    c = tl.arange(0, BLOCK)
    cm = c < n
    x = tl.load(x_row + c, mask=cm, other=0.0).to(tl.float32)
    y = tl.load(y_row + c, mask=cm, other=0.0).to(tl.float32)
    thr = SKIP * tl.max(tl.abs(cv), axis=0)
    on = tl.abs(cv) > thr

    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    c_add = _coef(cv, kk, 0)
    c_sub = _coef(cv, kk, 1)
    if (tl.abs(c_add) > thr) | (tl.abs(c_sub) > thr):
        add = tl.zeros((BLOCK,), dtype=tl.float32)
        sub = tl.zeros((BLOCK,), dtype=tl.float32)
        for i0 in range(0, n, BLOCK_T):
            i = i0 + tl.arange(0, BLOCK_T)
            im = i < n
            xi = _on_support(tl.load(x_row + i, mask=im, other=0.0).to(tl.float32), x_floor)
            if tl.sum((xi != 0.0).to(tl.int32), axis=0) > 0:  # else the tile adds nothing: no gathers
                m2 = im[:, None] & cm[None, :]
                ia = (c[None, :] - i[:, None] + n) % n  # y[(c - i) mod n]
                isub = (i[:, None] - c[None, :] + n) % n  # y[(i - c) mod n]
                ya = tl.load(y_row + ia, mask=m2, other=0.0).to(tl.float32)
                ys = tl.load(y_row + isub, mask=m2, other=0.0).to(tl.float32)
                add += tl.sum(xi[:, None] * ya, axis=0)
                sub += tl.sum(xi[:, None] * ys, axis=0)
        acc += c_add * add + c_sub * sub

    sx = tl.sum(x, axis=0)
    sy = tl.sum(y, axis=0)
    cx = tl.cumsum(x, axis=0)
    cy = tl.cumsum(y, axis=0)
    px = cx - x  # Σ_{i<c} x_i
    qx = sx - cx  # Σ_{i>c} x_i
    py = cy - y
    qy = sy - cy
    peq = tl.sum(x * y, axis=0)
    plt = tl.sum(x * qy, axis=0)
    x0 = tl.sum(tl.where(c == 0, x, 0.0), axis=0)
    y0 = tl.sum(tl.where(c == 0, y, 0.0), axis=0)
    sxy = sx * sy
    # 0/1-valued ops: mass p on 1, sxy - p on 0 (weights of skipped ops zeroed).
    w = tl.where(on, cv, 0.0)
    p_and = (sx - x0) * (sy - y0)
    p_or = sxy - x0 * y0
    one = (_coef(w, kk, 5) * peq + _coef(w, kk, 6) * (sxy - peq) + _coef(w, kk, 7) * plt
           + _coef(w, kk, 8) * (plt + peq) + _coef(w, kk, 11) * p_and + _coef(w, kk, 12) * p_or)
    flags = _coef(w, kk, 5) + _coef(w, kk, 6) + _coef(w, kk, 7) + _coef(w, kk, 8) + _coef(w, kk, 11) \
        + _coef(w, kk, 12)
    w_not = _coef(w, kk, 15)
    acc += tl.where(c == 1, one + w_not * x0, 0.0)
    acc += tl.where(c == 0, flags * sxy - one + w_not * (sx - x0), 0.0)
    acc += _coef(w, kk, 9) * (x * (y + qy) + y * qx)  # MIN
    acc += _coef(w, kk, 10) * (x * (y + py) + y * px)  # MAX
    w_inc = _coef(w, kk, 13)
    w_dec = _coef(w, kk, 14)
    if (w_inc != 0.0) | (w_dec != 0.0):
        x_prev = tl.load(x_row + (c + n - 1) % n, mask=cm, other=0.0).to(tl.float32)
        x_next = tl.load(x_row + (c + 1) % n, mask=cm, other=0.0).to(tl.float32)
        acc += w_inc * x_prev + w_dec * x_next
    return acc


@triton.jit
def alu_general_tile(x_row, y_row, cv, kk, out_row, i0, n, x_floor, y_floor, SKIP: tl.constexpr,
                      BLOCK: tl.constexpr, BLOCK_T: tl.constexpr):
    """MUL, DIV, MOD of one row's ``x_i``, ``i`` in ``i0 .. i0 + BLOCK_T``, against every ``y_j``,
    atomically added to the fp32 row ``out_row`` (arguments as :func:`alu_structured_row`)."""
    w = tl.where(tl.abs(cv) > SKIP * tl.max(tl.abs(cv), axis=0), cv, 0.0)
    w_mul = _coef(w, kk, 2)
    w_div = _coef(w, kk, 3)
    w_mod = _coef(w, kk, 4)
    if (w_mul != 0.0) | (w_div != 0.0) | (w_mod != 0.0):
        i = i0 + tl.arange(0, BLOCK_T)
        j = tl.arange(0, BLOCK)
        im = i < n
        jm = j < n
        xi = _on_support(tl.load(x_row + i, mask=im, other=0.0).to(tl.float32), x_floor)
        # Only pairs on both supports are scattered: on a sharp machine's operands that is a handful of the row's
        # n² atomics, which contend for a few cells (DIV sends every i < j to cell 0). A tile with no x_i on the
        # support sends none.
        if tl.sum((xi != 0.0).to(tl.int32), axis=0) > 0:
            yj = tl.load(y_row + j, mask=jm, other=0.0).to(tl.float32)
            yj = _on_support(yj, y_floor)
            p = xi[:, None] * yj[None, :]
            m2 = (xi != 0.0)[:, None] & (yj != 0.0)[None, :]
            ii = i[:, None]
            jj = j[None, :]
            safe = tl.where(jj > 0, jj, 1)
            if w_mul != 0.0:
                tl.atomic_add(out_row + (ii * jj) % n, w_mul * p, mask=m2)
            if w_div != 0.0:
                tl.atomic_add(out_row + tl.where(jj > 0, ii // safe, 0), w_div * p, mask=m2)
            if w_mod != 0.0:
                tl.atomic_add(out_row + tl.where(jj > 0, ii % safe, 0), w_mod * p, mask=m2)


@triton.jit
def _alu_fwd_kernel(x_ptr, y_ptr, c_ptr, out_ptr, n, SKIP: tl.constexpr, K: tl.constexpr,
                    BLOCK: tl.constexpr, BLOCK_T: tl.constexpr):
    """Structured ops (everything but MUL, DIV, MOD) of one row into the fp32 ``out`` row."""
    row = tl.program_id(0).to(tl.int64)
    kk = tl.arange(0, K)
    cv = tl.load(c_ptr + row * K + kk).to(tl.float32)
    c = tl.arange(0, BLOCK)
    x_floor = _support_floor(tl.load(x_ptr + row * n + c, mask=c < n, other=0.0).to(tl.float32), n)  # y's: unused
    acc = alu_structured_row(x_ptr + row * n, y_ptr + row * n, cv, kk, n, x_floor, SKIP, BLOCK, BLOCK_T)
    tl.store(out_ptr + row * n + c, acc, mask=c < n)


@triton.jit
def _alu_general_kernel(x_ptr, y_ptr, c_ptr, out_ptr, n, SKIP: tl.constexpr, K: tl.constexpr,
                        BLOCK: tl.constexpr, BLOCK_T: tl.constexpr):
    """MUL, DIV, MOD of rows ``i`` in tile ``program_id(1)`` against every ``j``, atomically added to ``out``."""
    row = tl.program_id(0).to(tl.int64)
    kk = tl.arange(0, K)
    cv = tl.load(c_ptr + row * K + kk).to(tl.float32)
    x_floor, y_floor = support_floors(x_ptr + row * n, y_ptr + row * n, n, BLOCK)
    alu_general_tile(x_ptr + row * n, y_ptr + row * n, cv, kk, out_ptr + row * n, tl.program_id(1) * BLOCK_T,
                     n, x_floor, y_floor, SKIP, BLOCK, BLOCK_T)


@triton.jit
def _alu_bwd_kernel(g_ptr, x_ptr, y_ptr, c_ptr, gx_ptr, gy_ptr, gc_ptr, n, K: tl.constexpr,
                    BLOCK: tl.constexpr, BLOCK_T: tl.constexpr):
    """One row: ``dx_k[i] = ∂L_k/∂x_i`` and ``dy_k[j] = ∂L_k/∂y_j`` of every op, then
    ``grad_x = Σ_k e_k dx_k``, ``grad_y = Σ_k e_k dy_k``, ``grad_e_k = Σ_i x_i dx_k[i]`` (bilinear)."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.arange(0, BLOCK)
    cm = c < n
    x_row = x_ptr + row * n
    y_row = y_ptr + row * n
    g_row = g_ptr + row * n
    x = tl.load(x_row + c, mask=cm, other=0.0).to(tl.float32)
    y = tl.load(y_row + c, mask=cm, other=0.0).to(tl.float32)
    g = tl.load(g_row + c, mask=cm, other=0.0).to(tl.float32)
    kk = tl.arange(0, K)
    cv = tl.load(c_ptr + row * K + kk).to(tl.float32)

    # General and convolution ops, grad to x: rows i = c (whole), columns j in tiles.
    dx_add = tl.zeros((BLOCK,), dtype=tl.float32)
    dx_sub = tl.zeros((BLOCK,), dtype=tl.float32)
    dx_mul = tl.zeros((BLOCK,), dtype=tl.float32)
    dx_div = tl.zeros((BLOCK,), dtype=tl.float32)
    dx_mod = tl.zeros((BLOCK,), dtype=tl.float32)
    ii = c[:, None]
    for j0 in range(0, n, BLOCK_T):
        j = j0 + tl.arange(0, BLOCK_T)
        jm = j < n
        yj = tl.load(y_row + j, mask=jm, other=0.0).to(tl.float32)[None, :]
        jj = j[None, :]
        m2 = cm[:, None] & jm[None, :]
        safe = tl.where(jj > 0, jj, 1)
        dx_add += tl.sum(yj * tl.load(g_row + (ii + jj) % n, mask=m2, other=0.0).to(tl.float32), axis=1)
        dx_sub += tl.sum(yj * tl.load(g_row + (ii - jj + n) % n, mask=m2, other=0.0).to(tl.float32), axis=1)
        dx_mul += tl.sum(yj * tl.load(g_row + (ii * jj) % n, mask=m2, other=0.0).to(tl.float32), axis=1)
        dx_div += tl.sum(yj * tl.load(g_row + tl.where(jj > 0, ii // safe, 0), mask=m2,
                                      other=0.0).to(tl.float32), axis=1)
        dx_mod += tl.sum(yj * tl.load(g_row + tl.where(jj > 0, ii % safe, 0), mask=m2,
                                      other=0.0).to(tl.float32), axis=1)
    # Grad to y: columns j = c (whole), rows i in tiles.
    dy_add = tl.zeros((BLOCK,), dtype=tl.float32)
    dy_sub = tl.zeros((BLOCK,), dtype=tl.float32)
    dy_mul = tl.zeros((BLOCK,), dtype=tl.float32)
    dy_div = tl.zeros((BLOCK,), dtype=tl.float32)
    dy_mod = tl.zeros((BLOCK,), dtype=tl.float32)
    jj2 = c[None, :]
    safe2 = tl.where(jj2 > 0, jj2, 1)
    for i0 in range(0, n, BLOCK_T):
        i = i0 + tl.arange(0, BLOCK_T)
        im = i < n
        xi = tl.load(x_row + i, mask=im, other=0.0).to(tl.float32)[:, None]
        i2 = i[:, None]
        m2 = im[:, None] & cm[None, :]
        dy_add += tl.sum(xi * tl.load(g_row + (i2 + jj2) % n, mask=m2, other=0.0).to(tl.float32), axis=0)
        dy_sub += tl.sum(xi * tl.load(g_row + (i2 - jj2 + n) % n, mask=m2, other=0.0).to(tl.float32), axis=0)
        dy_mul += tl.sum(xi * tl.load(g_row + (i2 * jj2) % n, mask=m2, other=0.0).to(tl.float32), axis=0)
        dy_div += tl.sum(xi * tl.load(g_row + tl.where(jj2 > 0, i2 // safe2, 0), mask=m2,
                                      other=0.0).to(tl.float32), axis=0)
        dy_mod += tl.sum(xi * tl.load(g_row + tl.where(jj2 > 0, i2 % safe2, 0), mask=m2,
                                      other=0.0).to(tl.float32), axis=0)

    # Structured ops (formulas of csrc/include/ncl/alu.h grad_x_terms / grad_y_terms).
    sx = tl.sum(x, axis=0)
    sy = tl.sum(y, axis=0)
    cx = tl.cumsum(x, axis=0)
    cy = tl.cumsum(y, axis=0)
    cgx = tl.cumsum(x * g, axis=0)
    cgy = tl.cumsum(y * g, axis=0)
    px = cx - x
    qx = sx - cx
    py = cy - y
    qy = sy - cy
    pgx = cgx - x * g
    qgx = tl.sum(x * g, axis=0) - cgx
    pgy = cgy - y * g
    qgy = tl.sum(y * g, axis=0) - cgy
    g0 = tl.sum(tl.where(c == 0, g, 0.0), axis=0)
    g1 = tl.sum(tl.where(c == 1, g, 0.0), axis=0)
    x0 = tl.sum(tl.where(c == 0, x, 0.0), axis=0)
    y0 = tl.sum(tl.where(c == 0, y, 0.0), axis=0)
    first = c == 0
    ge = qy + y  # Σ_{j>=i} y_j
    le = px + x  # Σ_{i<=j} x_i
    dx_eq = g1 * y + g0 * (sy - y)
    dx_ne = g0 * y + g1 * (sy - y)
    dx_lt = g1 * qy + g0 * (sy - qy)
    dx_le = g1 * ge + g0 * (sy - ge)
    dx_min = pgy + g * ge
    dx_max = qgy + g * (py + y)
    dx_and = tl.where(first, g0 * sy, g1 * (sy - y0) + g0 * y0)
    dx_or = tl.where(first, g0 * y0 + g1 * (sy - y0), g1 * sy)
    dx_inc = tl.load(g_row + (c + 1) % n, mask=cm, other=0.0).to(tl.float32)
    dx_dec = tl.load(g_row + (c + n - 1) % n, mask=cm, other=0.0).to(tl.float32)
    dx_not = tl.where(first, g1, g0)
    dy_eq = g1 * x + g0 * (sx - x)
    dy_ne = g0 * x + g1 * (sx - x)
    dy_lt = g1 * px + g0 * (sx - px)
    dy_le = g1 * le + g0 * (sx - le)
    dy_min = pgx + g * (qx + x)
    dy_max = qgx + g * le
    dy_and = tl.where(first, g0 * sx, g1 * (sx - x0) + g0 * x0)
    dy_or = tl.where(first, g0 * x0 + g1 * (sx - x0), g1 * sx)

    gx = (_coef(cv, kk, 0) * dx_add + _coef(cv, kk, 1) * dx_sub + _coef(cv, kk, 2) * dx_mul
          + _coef(cv, kk, 3) * dx_div + _coef(cv, kk, 4) * dx_mod + _coef(cv, kk, 5) * dx_eq
          + _coef(cv, kk, 6) * dx_ne + _coef(cv, kk, 7) * dx_lt + _coef(cv, kk, 8) * dx_le
          + _coef(cv, kk, 9) * dx_min + _coef(cv, kk, 10) * dx_max + _coef(cv, kk, 11) * dx_and
          + _coef(cv, kk, 12) * dx_or + _coef(cv, kk, 13) * dx_inc + _coef(cv, kk, 14) * dx_dec
          + _coef(cv, kk, 15) * dx_not)
    gy = (_coef(cv, kk, 0) * dy_add + _coef(cv, kk, 1) * dy_sub + _coef(cv, kk, 2) * dy_mul
          + _coef(cv, kk, 3) * dy_div + _coef(cv, kk, 4) * dy_mod + _coef(cv, kk, 5) * dy_eq
          + _coef(cv, kk, 6) * dy_ne + _coef(cv, kk, 7) * dy_lt + _coef(cv, kk, 8) * dy_le
          + _coef(cv, kk, 9) * dy_min + _coef(cv, kk, 10) * dy_max + _coef(cv, kk, 11) * dy_and
          + _coef(cv, kk, 12) * dy_or)
    tl.store(gx_ptr + row * n + c, gx, mask=cm)
    tl.store(gy_ptr + row * n + c, gy, mask=cm)
    # grad e_k = L_k = Σ_i x_i dx_k[i], gathered into one K-vector.
    gc = tl.where(kk == 0, tl.sum(x * dx_add, axis=0), 0.0)
    gc += tl.where(kk == 1, tl.sum(x * dx_sub, axis=0), 0.0)
    gc += tl.where(kk == 2, tl.sum(x * dx_mul, axis=0), 0.0)
    gc += tl.where(kk == 3, tl.sum(x * dx_div, axis=0), 0.0)
    gc += tl.where(kk == 4, tl.sum(x * dx_mod, axis=0), 0.0)
    gc += tl.where(kk == 5, tl.sum(x * dx_eq, axis=0), 0.0)
    gc += tl.where(kk == 6, tl.sum(x * dx_ne, axis=0), 0.0)
    gc += tl.where(kk == 7, tl.sum(x * dx_lt, axis=0), 0.0)
    gc += tl.where(kk == 8, tl.sum(x * dx_le, axis=0), 0.0)
    gc += tl.where(kk == 9, tl.sum(x * dx_min, axis=0), 0.0)
    gc += tl.where(kk == 10, tl.sum(x * dx_max, axis=0), 0.0)
    gc += tl.where(kk == 11, tl.sum(x * dx_and, axis=0), 0.0)
    gc += tl.where(kk == 12, tl.sum(x * dx_or, axis=0), 0.0)
    gc += tl.where(kk == 13, tl.sum(x * dx_inc, axis=0), 0.0)
    gc += tl.where(kk == 14, tl.sum(x * dx_dec, axis=0), 0.0)
    gc += tl.where(kk == 15, tl.sum(x * dx_not, axis=0), 0.0)
    tl.store(gc_ptr + row * K + kk, gc)


def alu_mix_fwd(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    r"""Fused table ALU mixture, :math:`\text{out}_b = \sum_k e_{b,k}\,\text{op}_k(x_b, y_b)`.

    Args:
        x: ``(B, n)``
        y: ``(B, n)``
        coeffs: ``(B, 16)``

    Returns:
        ``(B, n)`` in the inputs' dtype (accumulated in fp32).
    """
    x, y, coeffs = x.contiguous(), y.contiguous(), coeffs.contiguous()
    B, n = x.shape
    if B == 0:
        return torch.empty_like(x)
    # The general ops add atomically into the fp32 row, so it is fp32 whatever the input dtype.
    acc = torch.empty((B, n), device=x.device, dtype=torch.float32)
    block, block_t = _tiles(n)
    consts = dict(SKIP=SKIP_REL, K=NUM_OPS, BLOCK=block, BLOCK_T=block_t, num_warps=NUM_WARPS)
    _alu_fwd_kernel[(B,)](x, y, coeffs, acc, n, **consts)
    _alu_general_kernel[(B, triton.cdiv(n, block_t))](x, y, coeffs, acc, n, **consts)
    return acc if x.dtype == torch.float32 else acc.to(x.dtype)


def alu_mix_bwd(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Backward of :func:`alu_mix_fwd`, all gathers.

    .. math::
        \frac{\partial L}{\partial x_i} = \sum_k e_k \sum_j y_j\, g_{T_k(i,j)}, \quad
        \frac{\partial L}{\partial y_j} = \sum_k e_k \sum_i x_i\, g_{T_k(i,j)}, \quad
        \frac{\partial L}{\partial e_k} = \langle g, \text{op}_k(x, y) \rangle

    Args:
        grad: ``(B, n)`` gradient of the output ``g``.
        x, y: ``(B, n)``; coeffs: ``(B, 16)``.

    Returns:
        ``(grad_x, grad_y, grad_coeffs)`` in the inputs' dtype.
    """
    grad, x, y, coeffs = grad.contiguous(), x.contiguous(), y.contiguous(), coeffs.contiguous()
    B, n = x.shape
    gx, gy, gc = torch.empty_like(x), torch.empty_like(y), torch.empty_like(coeffs)
    if B == 0:
        return gx, gy, gc
    block, block_t = _tiles(n, BWD_TILE_BUDGET)
    _alu_bwd_kernel[(B,)](grad, x, y, coeffs, gx, gy, gc, n, K=NUM_OPS, BLOCK=block, BLOCK_T=block_t,
                          num_warps=NUM_WARPS)
    return gx, gy, gc


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------


def _compile_targets() -> list[dict]:
    """One entry per kernel and dtype at the benchmark size n = 128."""
    n = 128
    block, block_t = _tiles(n)
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        fwd_consts = {"SKIP": SKIP_REL, "K": NUM_OPS, "BLOCK": block, "BLOCK_T": block_t}
        specs = [
            (_alu_fwd_kernel, ["x_ptr", "y_ptr", "c_ptr"], ["out_ptr"], fwd_consts),
            (_alu_general_kernel, ["x_ptr", "y_ptr", "c_ptr"], ["out_ptr"], fwd_consts),
            (_alu_bwd_kernel, ["g_ptr", "x_ptr", "y_ptr", "c_ptr", "gx_ptr", "gy_ptr", "gc_ptr"], [],
             {"K": NUM_OPS, "BLOCK": block, "BLOCK_T": _tiles(n, BWD_TILE_BUDGET)[1]}),
        ]
        for fn, typed_ptrs, f32_ptrs, constexprs in specs:
            targets.append(compile_target(fn, dtype, typed_ptrs, f32_ptrs, ["n"], constexprs,
                                          divisible=typed_ptrs + f32_ptrs + ["n"], num_warps=NUM_WARPS))
    return targets


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["alu_mix_fwd", "alu_mix_bwd", "COMPILE_TARGETS"]
