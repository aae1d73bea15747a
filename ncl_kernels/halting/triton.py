"""Triton kernels of the halting accumulation (:func:`ncl_kernels.halting_accumulate`): forward and
hand-written backward.

Forward: elementwise, grid ``(B, tiles)``; each program updates one ``BLOCK``-element tile of a sample's
registers and the same tile of its memory (masked where one readout is shorter), and the first tile also
updates the expected steps. Backward: one program per sample walks both readouts in tiles, writing their
gradients and reducing the gradient of ``h`` in fp32.

Rules as in :mod:`ncl_kernels.memory.triton`: the 3.6 API with plain pointer arithmetic, every load masked,
fp32 accumulation with one cast on store, one config; runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels._triton_targets import compile_target

#: Elements per program and tile (a sample's K·n = 1024 registers at the default sizes is one tile).
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _halting_fwd_kernel(ar_ptr, am_ptr, e_ptr, r_ptr, m_ptr, h_ptr, or_ptr, om_ptr, oe_ptr, t, NR, NM,
                        BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    hb = tl.load(h_ptr + b).to(tl.float32)
    i = tile * BLOCK + tl.arange(0, BLOCK)
    mr = i < NR
    acc = tl.load(ar_ptr + b * NR + i, mask=mr, other=0.0).to(tl.float32)
    val = tl.load(r_ptr + b * NR + i, mask=mr, other=0.0).to(tl.float32)
    tl.store(or_ptr + b * NR + i, (acc + hb * val).to(or_ptr.dtype.element_ty), mask=mr)
    mm = i < NM
    acc = tl.load(am_ptr + b * NM + i, mask=mm, other=0.0).to(tl.float32)
    val = tl.load(m_ptr + b * NM + i, mask=mm, other=0.0).to(tl.float32)
    tl.store(om_ptr + b * NM + i, (acc + hb * val).to(om_ptr.dtype.element_ty), mask=mm)
    if tile == 0:
        e = tl.load(e_ptr + b).to(tl.float32)
        tl.store(oe_ptr + b, (e + t * hb).to(oe_ptr.dtype.element_ty))


@triton.jit
def _halting_bwd_kernel(gr_ptr, gm_ptr, ge_ptr, r_ptr, m_ptr, h_ptr, dr_ptr, dm_ptr, dh_ptr, t, NR, NM,
                        BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    hb = tl.load(h_ptr + b).to(tl.float32)
    s = tl.zeros((BLOCK,), dtype=tl.float32)
    for i0 in range(0, NR, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        mask = i < NR
        g = tl.load(gr_ptr + b * NR + i, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(r_ptr + b * NR + i, mask=mask, other=0.0).to(tl.float32)
        tl.store(dr_ptr + b * NR + i, (hb * g).to(dr_ptr.dtype.element_ty), mask=mask)
        s += g * v
    for i0 in range(0, NM, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        mask = i < NM
        g = tl.load(gm_ptr + b * NM + i, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(m_ptr + b * NM + i, mask=mask, other=0.0).to(tl.float32)
        tl.store(dm_ptr + b * NM + i, (hb * g).to(dm_ptr.dtype.element_ty), mask=mask)
        s += g * v
    ge = tl.load(ge_ptr + b).to(tl.float32)
    tl.store(dh_ptr + b, (tl.sum(s, axis=0) + t * ge).to(dh_ptr.dtype.element_ty))


def halting_accumulate_fwd(acc_reg, acc_mem, expected, reg, mem, h, t: float):
    r"""Fused :math:`(\hat R_{reg} + h\,\text{reg},\ \hat R_{mem} + h\,\text{mem},\ E + t\,h)`.

    Args:
        acc_reg, reg: ``(B, K, n)``; acc_mem, mem: ``(B, C, n)``; expected, h: ``(B,)``; t: a number.

    Returns:
        ``(acc_reg', acc_mem', expected')`` in the inputs' dtype.
    """
    acc_reg, acc_mem, expected, reg, mem, h = (x.contiguous() for x in (acc_reg, acc_mem, expected, reg, mem, h))
    outs = (torch.empty_like(acc_reg), torch.empty_like(acc_mem), torch.empty_like(expected))
    B = reg.shape[0]
    if B == 0:
        return outs
    NR, NM = reg.numel() // B, mem.numel() // B
    grid = (B, max(1, triton.cdiv(max(NR, NM), BLOCK)))
    _halting_fwd_kernel[grid](acc_reg, acc_mem, expected, reg, mem, h, *outs, float(t), NR, NM, BLOCK=BLOCK,
                              num_warps=NUM_WARPS)
    return outs


def halting_accumulate_bwd(grad_acc_reg, grad_acc_mem, grad_expected, acc_reg, acc_mem, expected, reg, mem, h,
                           t: float):
    r"""Backward of :func:`halting_accumulate_fwd`: :math:`\partial\text{reg} = h\,g_{reg}`,
    :math:`\partial\text{mem} = h\,g_{mem}` and
    :math:`\partial h = g_{reg}\cdot\text{reg} + g_{mem}\cdot\text{mem} + t\,g_E`. The accumulators'
    gradients pass through unchanged, in the autograd Function (``_oplib.OpSpec.passthrough``).

    Returns:
        ``(grad_reg, grad_mem, grad_h)`` in the inputs' dtype.
    """
    gr, gm, ge, reg, mem, h = (x.contiguous() for x in (grad_acc_reg, grad_acc_mem, grad_expected, reg, mem, h))
    g_reg, g_mem, g_h = torch.empty_like(reg), torch.empty_like(mem), torch.empty_like(h)
    B = reg.shape[0]
    if B > 0:
        _halting_bwd_kernel[(B,)](gr, gm, ge, reg, mem, h, g_reg, g_mem, g_h, float(t), reg.numel() // B,
                                  mem.numel() // B, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return g_reg, g_mem, g_h


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------


def _compile_targets() -> list[dict]:
    """Both kernels in fp32 and bf16 (``t`` is an fp32 scalar)."""
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        for fn in (_halting_fwd_kernel, _halting_bwd_kernel):
            ptrs = [a for a in fn.arg_names if a.endswith("_ptr")]
            target = compile_target(fn, dtype, ptrs, (), ["NR", "NM", "t"], {"BLOCK": BLOCK}, num_warps=NUM_WARPS)
            target["signature"]["t"] = "fp32"  # compile_target types scalars as i32; t is the one fp32 scalar
            targets.append(target)
    return targets


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["halting_accumulate_fwd", "halting_accumulate_bwd", "COMPILE_TARGETS"]
