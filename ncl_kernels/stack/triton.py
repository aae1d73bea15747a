"""Triton kernels of the soft stack update (:func:`ncl_kernels.stack_update`): forward and hand-written
backward, one program per batch row.

A program holds the whole pointer (``BLOCK_S = next_power_of_2(S)`` positions) and walks the slots in
``(BLOCK_S, BLOCK_W)`` tiles, so every slot element is read once in the forward and once in the backward.
``up(p)`` and ``down(p)`` are formed by loading the pointer at shifted offsets; their adjoints in the backward
act on values held in registers, which cannot be shifted, so they are applied as an ``S x S`` selection
(a 0/1 matrix built from ``arange``s, ``S`` being a few dozen).

Rules as in :mod:`ncl_kernels.memory.triton`: the 3.6 API with plain pointer arithmetic, every load masked,
fp32 accumulation with one cast on store, one config; runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels._triton_targets import compile_target

#: Elements of the largest (BLOCK_S, BLOCK_W) fp32 tile a program holds. The backward keeps three such tiles
#: live (grad, slots, products): at 2048 it took 247 registers on sm_90a; at 1024, 80 (forward) and 149 (backward,
#: fp32, with the S x S adjoint selections), no spills.
TILE_BUDGET = 1024
NUM_WARPS = 4


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


def _tiles(S: int, W: int) -> tuple[int, int]:
    block_s = _p2(S)
    return block_s, max(1, min(_p2(W), TILE_BUDGET // block_s))


@triton.jit
def _pointer_moves(p_ptr, s, S):
    # p, up(p) and down(p) at positions s (fp32, zero outside 0..S-1).
    ms = s < S
    p = tl.load(p_ptr + s, mask=ms, other=0.0).to(tl.float32)
    below = tl.load(p_ptr + s - 1, mask=ms & (s >= 1), other=0.0).to(tl.float32)
    above = tl.load(p_ptr + s + 1, mask=(s + 1) < S, other=0.0).to(tl.float32)
    raised = tl.where(s == S - 1, below + p, below)  # below is 0 at s = 0: nothing moves up into "empty"
    lowered = tl.where(s == 0, above + p, above)  # above is 0 at the top
    return p, raised, lowered


@triton.jit
def _stack_fwd_kernel(m_ptr, p_ptr, u_ptr, o_ptr, item_ptr, om_ptr, op_ptr, ov_ptr, un_ptr, S, W,
                      BLOCK_S: tl.constexpr, BLOCK_W: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    ms = s < S
    p, raised, lowered = _pointer_moves(p_ptr + b * S, s, S)
    u = tl.load(u_ptr + b).to(tl.float32)
    o = tl.load(o_ptr + b).to(tl.float32)
    new_p = (1.0 - u - o) * p + u * raised + o * lowered
    tl.store(op_ptr + b * S + s, new_p.to(op_ptr.dtype.element_ty), mask=ms)
    p_top = tl.sum(tl.where(s == S - 1, p, 0.0), axis=0)
    p_bottom = tl.sum(tl.where(s == 0, p, 0.0), axis=0)
    tl.store(ov_ptr + b, (u * p_top).to(ov_ptr.dtype.element_ty))
    tl.store(un_ptr + b, (o * p_bottom).to(un_ptr.dtype.element_ty))
    a = u * raised  # each slot's soft_write coefficient
    for w0 in range(0, W, BLOCK_W):
        w = w0 + tl.arange(0, BLOCK_W)
        mw = w < W
        mask = ms[:, None] & mw[None, :]
        offs = b * S * W + s[:, None] * W + w[None, :]
        m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        it = tl.load(item_ptr + b * W + w, mask=mw, other=0.0).to(tl.float32)
        out = m + a[:, None] * (it[None, :] - m)
        tl.store(om_ptr + offs, out.to(om_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _stack_bwd_kernel(gm_ptr, gp_ptr, go_ptr, gu_ptr, m_ptr, p_ptr, u_ptr, o_ptr, item_ptr,
                      dm_ptr, dp_ptr, du_ptr, do_ptr, di_ptr, S, W,
                      BLOCK_S: tl.constexpr, BLOCK_W: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    ms = s < S
    p, raised, lowered = _pointer_moves(p_ptr + b * S, s, S)
    u = tl.load(u_ptr + b).to(tl.float32)
    o = tl.load(o_ptr + b).to(tl.float32)
    a = u * raised
    da = tl.zeros((BLOCK_S,), dtype=tl.float32)  # gradient of each slot's coefficient a_s
    for w0 in range(0, W, BLOCK_W):
        w = w0 + tl.arange(0, BLOCK_W)
        mw = w < W
        mask = ms[:, None] & mw[None, :]
        offs = b * S * W + s[:, None] * W + w[None, :]
        g = tl.load(gm_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        it = tl.load(item_ptr + b * W + w, mask=mw, other=0.0).to(tl.float32)
        tl.store(dm_ptr + offs, (g * (1.0 - a[:, None])).to(dm_ptr.dtype.element_ty), mask=mask)
        da += tl.sum(g * (it[None, :] - m), axis=1)
        # The whole S is in the tile, so this column sum is the item's gradient, complete.
        tl.store(di_ptr + b * W + w, tl.sum(g * a[:, None], axis=0).to(di_ptr.dtype.element_ty), mask=mw)
    gp = tl.load(gp_ptr + b * S + s, mask=ms, other=0.0).to(tl.float32)
    g_over = tl.load(go_ptr + b).to(tl.float32)
    g_under = tl.load(gu_ptr + b).to(tl.float32)
    p_top = tl.sum(tl.where(s == S - 1, p, 0.0), axis=0)
    p_bottom = tl.sum(tl.where(s == 0, p, 0.0), axis=0)
    du = tl.sum(da * raised + gp * (raised - p), axis=0) + g_over * p_top
    dop = tl.sum(gp * (lowered - p), axis=0) + g_under * p_bottom
    tl.store(du_ptr + b, du.to(du_ptr.dtype.element_ty))
    tl.store(do_ptr + b, dop.to(do_ptr.dtype.element_ty))
    dr = u * (da + gp)  # reaches up(p)
    dd = o * gp  # reaches down(p)
    # Adjoints: (up^T dr)_j = dr_{j+1}, and dr_{S-1} at the top; (down^T dd)_j = dd_{j-1}, and dd_0 at 0.
    j = s[:, None]
    k = s[None, :]
    up_sel = (k == j + 1) | ((j == S - 1) & (k == S - 1))
    down_sel = (k == j - 1) | ((j == 0) & (k == 0))
    up_adj = tl.sum(tl.where(up_sel, dr[None, :], 0.0), axis=1)
    down_adj = tl.sum(tl.where(down_sel, dd[None, :], 0.0), axis=1)
    dp = (1.0 - u - o) * gp + up_adj + down_adj
    dp += tl.where(s == S - 1, g_over * u, 0.0) + tl.where(s == 0, g_under * o, 0.0)
    tl.store(dp_ptr + b * S + s, dp.to(dp_ptr.dtype.element_ty), mask=ms)


def stack_update_fwd(slots: torch.Tensor, ptr: torch.Tensor, push: torch.Tensor, pop: torch.Tensor,
                     item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Fused soft push/pop (see :func:`ncl_kernels.stack_update` for the math).

    Args:
        slots: ``(B, S, W)``; ptr: ``(B, S)``; push, pop: ``(B,)``; item: ``(B, W)``.

    Returns:
        ``(slots', ptr', overflow, underflow)`` in the inputs' dtype.
    """
    slots, ptr, push, pop, item = (t.contiguous() for t in (slots, ptr, push, pop, item))
    B, S, W = slots.shape
    outs = (torch.empty_like(slots), torch.empty_like(ptr), torch.empty_like(push), torch.empty_like(pop))
    if B == 0:
        return outs
    block_s, block_w = _tiles(S, W)
    _stack_fwd_kernel[(B,)](slots, ptr, push, pop, item, *outs, S, W, BLOCK_S=block_s, BLOCK_W=block_w,
                            num_warps=NUM_WARPS)
    return outs


def stack_update_bwd(grad_slots, grad_ptr, grad_overflow, grad_underflow, slots, ptr, push, pop, item):
    r"""Backward of :func:`stack_update_fwd`. With :math:`a_s = u\,\mathrm{up}(p)_s` and
    :math:`A_s = \sum_d g_{s,d}(\text{item}_d - \text{slot}_{s,d})`:

    .. math::
        \partial\text{slot} = g(1 - a),\quad \partial\text{item} = \textstyle\sum_s a_s g_s,\quad
        \partial u = \textstyle\sum_s A_s \mathrm{up}(p)_s + g^p\cdot(\mathrm{up}(p) - p) + g^{over} p_{S-1},

    .. math::
        \partial o = g^p\cdot(\mathrm{down}(p) - p) + g^{under} p_0,\quad
        \partial p = (1-u-o) g^p + \mathrm{up}^\top(u(A + g^p)) + \mathrm{down}^\top(o\,g^p)
                     + g^{over} u\, e_{S-1} + g^{under} o\, e_0

    Returns:
        ``(grad_slots, grad_ptr, grad_push, grad_pop, grad_item)`` in the inputs' dtype.
    """
    ts = [t.contiguous() for t in (grad_slots, grad_ptr, grad_overflow, grad_underflow, slots, ptr, push, pop, item)]
    slots, ptr, push, pop, item = ts[4:]
    B, S, W = slots.shape
    grads = (torch.empty_like(slots), torch.empty_like(ptr), torch.empty_like(push), torch.empty_like(pop),
             torch.empty_like(item))
    if B == 0:
        return grads
    block_s, block_w = _tiles(S, W)
    _stack_bwd_kernel[(B,)](*ts, *grads, S, W, BLOCK_S=block_s, BLOCK_W=block_w, num_warps=NUM_WARPS)
    return grads


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------

def _compile_targets() -> list[dict]:
    """Both kernels in fp32 and bf16 at the machine's sizes: S = 32 and W = n = 128 (data stack)."""
    block_s, block_w = _tiles(32, 128)
    consts = {"BLOCK_S": block_s, "BLOCK_W": block_w}
    return [compile_target(fn, dtype, [a for a in fn.arg_names if a.endswith("_ptr")], (), ["S", "W"], consts,
                           num_warps=NUM_WARPS)
            for dtype in (torch.float32, torch.bfloat16) for fn in (_stack_fwd_kernel, _stack_bwd_kernel)]


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["stack_update_fwd", "stack_update_bwd", "COMPILE_TARGETS"]
