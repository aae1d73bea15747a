"""Triton kernels of the control step (:func:`ncl_kernels.control`): forward and hand-written backward.

Forward: one program per sample holds its whole next ip (``BLOCK_L = next_power_of_2(L)`` lines) and walks
the program in tiles of ``BLOCK_R`` lines: each tile's jump mass meets its rows of ``tgt``, its moved-on mass
lands one line down (an ``arange`` selection, since register values cannot be shifted), and the return
stack's top is read in tiles of ``BLOCK_S`` slots. Backward: one program per sample for its own gradients
(writing the per-line ``J`` and ``D`` of ``csrc/include/ncl/control.h`` to fp32 workspaces), then one
program per line for the program's ``op`` and ``tgt`` gradients, which sum over the batch (no atomics).

Rules as in :mod:`ncl_kernels.memory.triton`: the 3.6 API with plain pointer arithmetic, every load masked,
fp32 accumulation with one cast on store, one config; runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels._triton_targets import compile_target

#: Elements of the largest fp32 tile a program builds (as in ncl_kernels.memory.triton).
TILE_BUDGET = 2048
NUM_WARPS = 4

# Opcode columns (ncl_kernels.control.reference, from ncl_kernels.isa).
_O = tl.constexpr(29)
_HALT = tl.constexpr(1)
_JMP = tl.constexpr(24)
_JZ = tl.constexpr(25)
_JNZ = tl.constexpr(26)
_CALL = tl.constexpr(27)
_RET = tl.constexpr(28)
BLOCK_O = 32


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


def _tiles(L: int) -> tuple[int, int]:
    """``(BLOCK_L, BLOCK_R)``: all lines as columns, as many line (or slot) rows as the budget allows."""
    block_l = _p2(L)
    return block_l, max(1, min(block_l, TILE_BUDGET // block_l))


@triton.jit
def _column(ops, k, K: tl.constexpr):
    return tl.sum(tl.where(k[None, :] == K, ops, 0.0), axis=1)


@triton.jit
def _line_ops(op_ptr, l, ml, BLOCK_O: tl.constexpr):
    # The opcode weights of lines l, grouped: sequential sum, HALT, JMP, JZ, JNZ, CALL, RET.
    k = tl.arange(0, BLOCK_O)
    ops = tl.load(op_ptr + l[:, None] * _O + k[None, :], mask=ml[:, None] & (k[None, :] < _O),
                  other=0.0).to(tl.float32)
    seq = tl.sum(tl.where(((k != _HALT) & (k < _JMP))[None, :], ops, 0.0), axis=1)
    return (seq, _column(ops, k, _HALT), _column(ops, k, _JMP), _column(ops, k, _JZ), _column(ops, k, _JNZ),
            _column(ops, k, _CALL), _column(ops, k, _RET))


@triton.jit
def _return_to(rstk_ptr, rsp_ptr, m, mm, L, S, BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr):
    # top(rstk)_m = Σ_s rsp_s rstk[s, m], slots in tiles of BLOCK_R.
    acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for s0 in range(0, S, BLOCK_R):
        s = s0 + tl.arange(0, BLOCK_R)
        ms = s < S
        w = tl.load(rsp_ptr + s, mask=ms, other=0.0).to(tl.float32)
        r = tl.load(rstk_ptr + s[:, None] * L + m[None, :], mask=ms[:, None] & mm[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(w[:, None] * r, axis=0)
    return acc


@triton.jit
def _control_fwd_kernel(ip_ptr, op_ptr, chi_ptr, tgt_ptr, rstk_ptr, rsp_ptr, out_ptr, h_ptr, L, S,
                        BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    m = tl.arange(0, BLOCK_L)
    mm = m < L
    c = tl.load(chi_ptr + b).to(tl.float32)
    acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
    halt_v = tl.zeros((BLOCK_R,), dtype=tl.float32)
    ret_v = tl.zeros((BLOCK_R,), dtype=tl.float32)
    off_v = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_R):
        l = l0 + tl.arange(0, BLOCK_R)
        ml = l < L
        ipl = tl.load(ip_ptr + b * L + l, mask=ml, other=0.0).to(tl.float32)
        seq, halt, jmp, jz, jnz, call, ret = _line_ops(op_ptr, l, ml, BLOCK_O)
        jump = ipl * (jmp + call + c * jz + (1.0 - c) * jnz)
        move = ipl * (seq + (1.0 - c) * jz + c * jnz)
        t = tl.load(tgt_ptr + l[:, None] * L + m[None, :], mask=ml[:, None] & mm[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(jump[:, None] * t, axis=0)
        acc += tl.sum(tl.where(m[None, :] == l[:, None] + 1, move[:, None], 0.0), axis=0)  # next()
        halt_v += ipl * halt
        ret_v += ipl * ret
        off_v += tl.where(l == L - 1, move, 0.0)  # the last line runs off the end
    ret_to = _return_to(rstk_ptr + b * S * L, rsp_ptr + b * S, m, mm, L, S, BLOCK_L, BLOCK_R)
    ret_mass = tl.sum(ret_v, axis=0)
    tl.store(out_ptr + b * L + m, (acc + ret_mass * ret_to).to(out_ptr.dtype.element_ty), mask=mm)
    h = tl.sum(halt_v, axis=0) + tl.sum(off_v, axis=0) + ret_mass * (1.0 - tl.sum(ret_to, axis=0))
    tl.store(h_ptr + b, h.to(h_ptr.dtype.element_ty))


@triton.jit
def _control_bwd_sample_kernel(gi_ptr, gh_ptr, ip_ptr, op_ptr, chi_ptr, tgt_ptr, rstk_ptr, rsp_ptr,
                               dip_ptr, dchi_ptr, drstk_ptr, drsp_ptr, jw_ptr, dw_ptr, drw_ptr, L, S,
                               BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    m = tl.arange(0, BLOCK_L)
    mm = m < L
    c = tl.load(chi_ptr + b).to(tl.float32)
    g_h = tl.load(gh_ptr + b).to(tl.float32)
    g = tl.load(gi_ptr + b * L + m, mask=mm, other=0.0).to(tl.float32)
    ret_to = _return_to(rstk_ptr + b * S * L, rsp_ptr + b * S, m, mm, L, S, BLOCK_L, BLOCK_R)
    dr = tl.sum(g * ret_to, axis=0) + g_h * (1.0 - tl.sum(ret_to, axis=0))
    tl.store(drw_ptr + b, dr)
    dc_v = tl.zeros((BLOCK_R,), dtype=tl.float32)
    ret_v = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_R):
        l = l0 + tl.arange(0, BLOCK_R)
        ml = l < L
        ipl = tl.load(ip_ptr + b * L + l, mask=ml, other=0.0).to(tl.float32)
        seq, halt, jmp, jz, jnz, call, ret = _line_ops(op_ptr, l, ml, BLOCK_O)
        t = tl.load(tgt_ptr + l[:, None] * L + m[None, :], mask=ml[:, None] & mm[None, :], other=0.0).to(tl.float32)
        J = tl.sum(t * g[None, :], axis=1)  # what a jump from line l receives
        g_next = tl.load(gi_ptr + b * L + l + 1, mask=(l + 1) < L, other=0.0).to(tl.float32)
        D = tl.where(l < L - 1, g_next, g_h)  # what moving on receives (halting, off the last line)
        dip = (halt * g_h + (jmp + call) * J + jz * (c * J + (1.0 - c) * D) + jnz * ((1.0 - c) * J + c * D)
               + ret * dr + seq * D)
        tl.store(dip_ptr + b * L + l, dip.to(dip_ptr.dtype.element_ty), mask=ml)
        tl.store(jw_ptr + b * L + l, J, mask=ml)
        tl.store(dw_ptr + b * L + l, D, mask=ml)
        dc_v += ipl * (jz - jnz) * (J - D)
        ret_v += ipl * ret
    tl.store(dchi_ptr + b, tl.sum(dc_v, axis=0).to(dchi_ptr.dtype.element_ty))
    dret = tl.sum(ret_v, axis=0) * (g - g_h)  # reaches top(rstk)
    for s0 in range(0, S, BLOCK_R):
        s = s0 + tl.arange(0, BLOCK_R)
        ms = s < S
        mask = ms[:, None] & mm[None, :]
        offs = b * S * L + s[:, None] * L + m[None, :]
        w = tl.load(rsp_ptr + b * S + s, mask=ms, other=0.0).to(tl.float32)
        r = tl.load(rstk_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(drstk_ptr + offs, (w[:, None] * dret[None, :]).to(drstk_ptr.dtype.element_ty), mask=mask)
        tl.store(drsp_ptr + b * S + s, tl.sum(r * dret[None, :], axis=1).to(drsp_ptr.dtype.element_ty), mask=ms)


@triton.jit
def _control_bwd_line_kernel(gi_ptr, gh_ptr, ip_ptr, op_ptr, chi_ptr, jw_ptr, dw_ptr, drw_ptr, dop_ptr, dtgt_ptr,
                             B, L, BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr):
    l = tl.program_id(0).to(tl.int64)
    m = tl.arange(0, BLOCK_L)
    mm = m < L
    k = tl.arange(0, BLOCK_O)
    row = tl.load(op_ptr + l * _O + k, mask=k < _O, other=0.0).to(tl.float32)
    jmp = tl.sum(tl.where(k == _JMP, row, 0.0), axis=0)
    jz = tl.sum(tl.where(k == _JZ, row, 0.0), axis=0)
    jnz = tl.sum(tl.where(k == _JNZ, row, 0.0), axis=0)
    call = tl.sum(tl.where(k == _CALL, row, 0.0), axis=0)
    g_tgt = tl.zeros((BLOCK_L,), dtype=tl.float32)
    g_op = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_R):
        bb = b0 + tl.arange(0, BLOCK_R)
        mb = bb < B
        ipl = tl.load(ip_ptr + bb * L + l, mask=mb, other=0.0).to(tl.float32)
        c = tl.load(chi_ptr + bb, mask=mb, other=0.0).to(tl.float32)
        J = tl.load(jw_ptr + bb * L + l, mask=mb, other=0.0)
        D = tl.load(dw_ptr + bb * L + l, mask=mb, other=0.0)
        dR = tl.load(drw_ptr + bb, mask=mb, other=0.0)
        g_h = tl.load(gh_ptr + bb, mask=mb, other=0.0).to(tl.float32)
        jump = ipl * (jmp + call + c * jz + (1.0 - c) * jnz)
        g = tl.load(gi_ptr + bb[:, None] * L + m[None, :], mask=mb[:, None] & mm[None, :], other=0.0).to(tl.float32)
        g_tgt += tl.sum(jump[:, None] * g, axis=0)
        # op_coef of ncl/control.h, for every column at once.
        kk = k[None, :]
        coef = tl.where(kk == _HALT, g_h[:, None],
                        tl.where((kk == _JMP) | (kk == _CALL), J[:, None],
                                 tl.where(kk == _JZ, (c * J + (1.0 - c) * D)[:, None],
                                          tl.where(kk == _JNZ, ((1.0 - c) * J + c * D)[:, None],
                                                   tl.where(kk == _RET, dR[:, None], D[:, None])))))
        g_op += tl.sum(ipl[:, None] * coef, axis=0)
    tl.store(dtgt_ptr + l * L + m, g_tgt.to(dtgt_ptr.dtype.element_ty), mask=mm)
    tl.store(dop_ptr + l * _O + k, g_op.to(dop_ptr.dtype.element_ty), mask=k < _O)


def control_fwd(ip, op, chi0, tgt, rstk, rsp):
    r"""Fused control step (see :func:`ncl_kernels.control` for the math).

    Args:
        ip: ``(B, L)``; op: ``(L, 29)``; chi0: ``(B,)``; tgt: ``(L, L)``; rstk: ``(B, S, L)``; rsp: ``(B, S)``.

    Returns:
        ``(ip', halted)`` in the inputs' dtype.
    """
    ip, op, chi0, tgt, rstk, rsp = (t.contiguous() for t in (ip, op, chi0, tgt, rstk, rsp))
    B, L = ip.shape
    new_ip, halted = torch.empty_like(ip), torch.empty_like(chi0)
    if B == 0 or L == 0:
        return new_ip, halted
    block_l, block_r = _tiles(L)
    _control_fwd_kernel[(B,)](ip, op, chi0, tgt, rstk, rsp, new_ip, halted, L, rsp.shape[1], BLOCK_L=block_l,
                              BLOCK_R=block_r, BLOCK_O=BLOCK_O, num_warps=NUM_WARPS)
    return new_ip, halted


def control_bwd(grad_ip, grad_halted, ip, op, chi0, tgt, rstk, rsp):
    r"""Backward of :func:`control_fwd`. Per sample, with :math:`J_\ell = \sum_m tgt_{\ell m} g_m`,
    :math:`D_\ell = g_{\ell+1}` (:math:`g_h` on the last line) and
    :math:`dR = g\cdot\mathrm{top} + g_h(1 - \sum\mathrm{top})`, the gradient reaching :math:`q_{\ell k}` is
    :math:`g_h` (HALT), :math:`J` (JMP, CALL), :math:`cJ + (1-c)D` (JZ), :math:`(1-c)J + cD` (JNZ),
    :math:`dR` (RET) or :math:`D` (the rest); ``ip`` and ``op`` get it through :math:`q = ip \odot op`
    (``op`` summed over the batch), :math:`\partial c = \sum_\ell ip_\ell(op_{JZ} - op_{JNZ})(J - D)`,
    :math:`\partial tgt = \sum_b jumped^\top g`, and ``top`` receives :math:`(\sum q_{RET})(g - g_h)`.

    Returns:
        ``(grad_ip, grad_op, grad_chi0, grad_tgt, grad_rstk, grad_rsp)`` in the inputs' dtype.
    """
    ts = [t.contiguous() for t in (grad_ip, grad_halted, ip, op, chi0, tgt, rstk, rsp)]
    ip, op, chi0, tgt, rstk, rsp = ts[2:]
    B, L = ip.shape
    S = rsp.shape[1]
    grads = tuple(torch.empty_like(t) for t in (ip, op, chi0, tgt, rstk, rsp))
    if B == 0 or L == 0:
        return tuple(torch.zeros_like(t) for t in (ip, op, chi0, tgt, rstk, rsp))
    g_ip, g_op, g_chi, g_tgt, g_rstk, g_rsp = grads
    f32 = dict(device=ip.device, dtype=torch.float32)
    J, D, dR = torch.empty((B, L), **f32), torch.empty((B, L), **f32), torch.empty((B,), **f32)
    block_l, block_r = _tiles(L)
    consts = dict(BLOCK_L=block_l, BLOCK_R=block_r, BLOCK_O=BLOCK_O, num_warps=NUM_WARPS)
    _control_bwd_sample_kernel[(B,)](*ts, g_ip, g_chi, g_rstk, g_rsp, J, D, dR, L, S, **consts)
    _control_bwd_line_kernel[(L,)](ts[0], ts[1], ip, op, chi0, J, D, dR, g_op, g_tgt, B, L, **consts)
    return grads


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------


def _compile_targets() -> list[dict]:
    """The three kernels in fp32 and bf16 for a 256-line program (a library image)."""
    block_l, block_r = _tiles(256)
    consts = {"BLOCK_L": block_l, "BLOCK_R": block_r, "BLOCK_O": BLOCK_O}
    workspaces = ("jw_ptr", "dw_ptr", "drw_ptr")
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        for fn, ints in ((_control_fwd_kernel, ["L", "S"]), (_control_bwd_sample_kernel, ["L", "S"]),
                         (_control_bwd_line_kernel, ["B", "L"])):
            typed = [a for a in fn.arg_names if a.endswith("_ptr") and a not in workspaces]
            f32 = [a for a in fn.arg_names if a in workspaces]
            targets.append(compile_target(fn, dtype, typed, f32, ints, consts, num_warps=NUM_WARPS))
    return targets


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["control_fwd", "control_bwd", "COMPILE_TARGETS"]
