"""Triton backward of the whole-run machine kernel: the GPU counterpart of ``ncl::machine_run_bwd``.

:func:`machine_run_bwd` computes the gradient of steps ``first + 1 .. first + count`` (a chunk of a checkpointed
run, :class:`ncl_kernels.machine.CheckpointedRun`) from the carry entering them and the gradient of the carry
leaving them. The spec is ``csrc/cpu/machine_bwd.cpp``: per sample, the chunk is run once more from the kept
carry, keeping a tape of the state before each step and the step's intermediates, then walked back, applying
each step's hand-written adjoint (``step_backward``) in the same formulas; only the order of some fp32 sums
differs. The CPU op's speed path for halted samples (``frozen_step_backward``) gives the full adjoint's results.

Design. One program per sample and one launch per chunk:

* The tape pass is the forward kernel itself (:func:`ncl_kernels.machine.triton._machine_run_kernel`, called as a
  function with ``TAPE``) on a copy of the carry: each step writes the state before it and its intermediates
  (x, y, z, load, pop, the written value, ret_to, e, the register fields and the step's scalars) to the
  step's entry of a global ``(B, count, E)`` tape (:mod:`~ncl_kernels.machine.triton_tape`). The
  halting mixtures are not accumulated there: the backward does not read them.
* The reverse loop then runs in the same program. The gradients of the banks (registers, memory, both stacks'
  slots) are updated in place in the gradient tensors, in row blocks (a bank's step adjoint is a
  read-modify-write of each element, plus terms added later in the same pass); the register file's gradient is
  held whole in registers from the register write's adjoint to the operands' (a ``(K, n)`` tile, as the forward
  holds the file); the stack pointers' gradients and the scalars live in registers across steps. The ip's
  gradient after the step is the gradient tensor's row; the one before it is summed, in blocks of program lines
  (the control step's adjoint, then the fields'), into a per-sample scratch row and copied back at the end of the
  step. The ALU's adjoint is the ALU backward kernel's body (:func:`ncl_kernels.alu.triton._alu_bwd_kernel`),
  called on per-sample rows of a ``(5, B, n)`` scratch (x, y, the value's gradient, and its two results).
* The fields' gradients are summed over samples and steps with ``tl.atomic_add`` into zeroed fp32 tensors, only
  from lines with ip mass (the jump targets' only from lines that jumped): their fp32 sums are therefore taken in
  another order than the CPU op's (which sums samples in order), and differ from run to run by rounding.

Barriers. As in the forward kernel (:mod:`ncl_kernels.machine.triton`): ``tl.debug_barrier()`` separates a
write of global data from its read by another thread, and a read from a later overwrite: after the tape pass,
at the start of each step (the previous step's ip gradient row), around the ALU backward's scratch rows, after
the memory pass and the control pass (their per-row and per-line results are gathered again by other threads),
and before the new ip gradient is copied to its row. A read-modify-write of a bank tile with one tile shape per
bank needs none.

Limits: fp32 only (the CPU op also takes fp64). The tape holds ``count`` entries of ``E`` = the state plus
``6n + L + 3K + 40`` elements per sample; the register file is held whole, as in the forward. Triton rules as
the forward's (docs/building.md); runs on CUDA tensors, or on CPU ones with ``TRITON_INTERPRET=1`` set first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels.alu import NUM_OPS as NUM_ALU_OPS
from ncl_kernels.alu.triton import BWD_TILE_BUDGET, _alu_bwd_kernel, _coef, _tiles
from ncl_kernels.machine.triton import (
    _ALU_FIRST, _BLOCK_O, _CALL, _CONST, _LOAD, _MOV, _NUM_ALU, _O, _POP, _PUSH, _RET, _STORE,
    _VALUE_MASS_FLOOR, CARRY_SIZE, HALT, JMP, JNZ, JZ, _check, _launch_params, _line_ops,
    _machine_run_kernel, _pick, _stack_moves, launch_warps, machine_compile_targets)
from ncl_kernels.machine.state import FIRST_ACCUMULATOR
from ncl_kernels.machine.triton_tape import _tape_entry, tape_entry_size

_HALT, _JMP, _JZ, _JNZ = (tl.constexpr(k) for k in (HALT, JMP, JZ, JNZ))
#: Warps per program: the tape pass (the forward's body) alone takes 254 registers a thread at 4 warps; with the
#: backward's tiles on top, 4 warps spilled (scripts/compile_triton_sm90.py).
BWD_NUM_WARPS = 8


@triton.jit
def _pointer_grad(gp_post, ga, p, up, down, u, o, g_over, g_under, ss, S):
    """Adjoint of a stack's pointer update ``p' = (1-u-o)p + u·up(p) + o·down(p)`` and of its fault masses
    ``u·p_{S-1}`` (gradient ``g_over``) and ``o·p_0`` (``g_under``), as ``stack_backward`` of machine_bwd.cpp:
    returns ``(g_p, g_u, g_o)``. ``ga``: the gradients of the slot writes' coefficients ``a_s = u·up(p)_s``;
    all vectors over the positions ``ss`` (0 on padding lanes)."""
    sm = ss < S
    gu = (g_over * tl.sum(tl.where(ss == S - 1, p, 0.0), axis=0)
          + tl.sum(ga * up + gp_post * (up - p), axis=0))
    go = g_under * tl.sum(tl.where(ss == 0, p, 0.0), axis=0) + tl.sum(gp_post * (down - p), axis=0)
    dr = u * (ga + gp_post)  # reaches up(p)
    dd = o * gp_post  # reaches down(p)
    # ncl/stack.h's up_adjoint_at and down_adjoint_at: v_{j+1} (the top saturating), v_{j-1} (the bottom).
    gp = ((1.0 - u - o) * gp_post + tl.where(ss < S - 1, _pick(dr, ss, ss + 1), dr)
          + tl.where(ss > 0, _pick(dd, ss, ss - 1), dd))
    gp += tl.where(ss == S - 1, g_over * u, 0.0) + tl.where(ss == 0, g_under * o, 0.0)
    return tl.where(sm, gp, 0.0), gu, go


@triton.jit
def _slots_backward(g_bank, slots, a, p, item, g_read, ss, S, cols, cm, W, BLOCK_S: tl.constexpr,
                    BLOCK_ROWS: tl.constexpr):
    """Adjoint of a stack's slots, both stacks' pass: the write ``slots' = slots + a_s (item - slots)`` (``a``
    over the positions ``ss``) and the read ``Σ_s p_s slots[s]`` (its gradient ``g_read (W,)``). ``g_bank
    (S, W)``, the slots' gradient after the step, becomes the one before it, in row blocks; ``slots`` is the
    tape's copy of the bank before the step. Returns the item's gradient ``(W,)``, and per position the write
    coefficient's gradient and ``⟨g_read, slots[s]⟩``, which reaches ``p_s``."""
    g_item = tl.zeros_like(item)
    ga = tl.zeros((BLOCK_S,), dtype=tl.float32)
    read_dot = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for s0 in range(0, S, BLOCK_ROWS):
        r = s0 + tl.arange(0, BLOCK_ROWS)
        m2 = (r < S)[:, None] & cm[None, :]
        offs = r[:, None] * W + cols[None, :]
        g = tl.load(g_bank + offs, mask=m2, other=0.0)
        slot = tl.load(slots + offs, mask=m2, other=0.0)
        ar = _pick(a, ss, r)
        tl.store(g_bank + offs, g * (1.0 - ar[:, None]) + _pick(p, ss, r)[:, None] * g_read[None, :], mask=m2)
        g_item += tl.sum(ar[:, None] * g, axis=0)
        ga += _pick(tl.sum(g * (item[None, :] - slot), axis=1), r, ss)
        read_dot += _pick(tl.sum(g_read[None, :] * slot, axis=1), r, ss)
    return g_item, ga, read_dot


@triton.jit
def _machine_run_bwd_kernel(op_ptr, a_ptr, b_ptr, d_ptr, imm_ptr, tgt_ptr, lops_ptr,
                            ip_ptr, reg_ptr, mem_ptr, dstk_ptr, dsp_ptr, rstk_ptr, rsp_ptr, acc_reg_ptr,
                            acc_mem_ptr, exp_ptr, faults_ptr, rho_ptr, scratch_ptr, tape_ptr,
                            g_ip_ptr, g_reg_ptr, g_mem_ptr, g_dstk_ptr, g_dsp_ptr, g_rstk_ptr, g_rsp_ptr,
                            g_acc_reg_ptr, g_acc_mem_ptr, g_exp_ptr, g_faults_ptr,
                            g_op_ptr, g_a_ptr, g_b_ptr, g_d_ptr, g_imm_ptr, g_tgt_ptr,
                            rows_ptr, alu_ptr, alu_coef_ptr,
                            first, count, norm_eps, L, K, n, C, S,
                            SKIP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_K: tl.constexpr,
                            BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                            BLOCK_SD: tl.constexpr, BLOCK_SR: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_LF: tl.constexpr, BLOCK_LT: tl.constexpr, BLOCK_TB: tl.constexpr,
                            FIELD_GRADS: tl.constexpr):
    """The gradient of steps ``first + 1 .. first + count`` of sample ``program_id(0)``.

    Fields (shared): ``op (L, 29)``, ``a b d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``, ``lops (7, L)``
    (``_line_ops``). ``ip .. faults``: a copy of the carry entering the chunk (shapes as the forward kernel's),
    which the tape pass runs on; ``rho (B, count)``, ``scratch (B, 3, n)``: the forward's workspaces;
    ``tape (B, count, E)``. ``g_ip (B, L)``, ``g_reg (B, K, n)``, ``g_mem (B, C, n)``, ``g_dstk (B, S, n)``,
    ``g_dsp (B, S)``, ``g_rstk (B, S, L)``, ``g_rsp (B, S)``: the gradient of the carry leaving the chunk,
    replaced in place by that of the carry entering it; ``g_acc_reg (B, K, n)``, ``g_acc_mem (B, C, n)``,
    ``g_exp (B,)``, ``g_faults (B,)``: the accumulators' gradients (read only). ``g_op (L, 29)``,
    ``g_a g_b g_d (L, K)``, ``g_imm (L, n)``, ``g_tgt (L, L)``: the fields' gradients, added to atomically
    (not touched without ``FIELD_GRADS``). ``rows (B, 2L + C)``: per sample, the ip's gradient before the step,
    the return item's, and the address's; ``alu (5, B, n)``, ``alu_coef (2, B, 16)``: the ALU backward's rows.
    Block sizes as the forward kernel's; ``BLOCK_TB``: the ALU backward's tile.
    """
    # The tape pass: the forward's steps on the copy of the carry, each writing its tape entry.
    _machine_run_kernel(op_ptr, a_ptr, b_ptr, d_ptr, imm_ptr, tgt_ptr, lops_ptr, ip_ptr, reg_ptr, mem_ptr,
                        dstk_ptr, dsp_ptr, rstk_ptr, rsp_ptr, acc_reg_ptr, acc_mem_ptr, exp_ptr, faults_ptr,
                        rho_ptr, scratch_ptr, tape_ptr, first, count, norm_eps, L, K, n, C, S,
                        SKIP=SKIP, BLOCK_L=BLOCK_L, BLOCK_K=BLOCK_K, BLOCK_N=BLOCK_N, BLOCK_S=BLOCK_S,
                        BLOCK_C=BLOCK_C, BLOCK_SD=BLOCK_SD, BLOCK_SR=BLOCK_SR, BLOCK_T=BLOCK_T, BLOCK_LF=BLOCK_LF,
                        BLOCK_LT=BLOCK_LT, TAPE=True)

    b = tl.program_id(0).to(tl.int64)
    nb = tl.num_programs(0).to(tl.int64)
    lines = tl.arange(0, BLOCK_L)
    lm = lines < L
    prev = lines - 1
    pm = lm & (lines >= 1)
    ops = tl.arange(0, _BLOCK_O)
    om = ops < _O
    ks = tl.arange(0, BLOCK_K)
    km = ks < K
    cols = tl.arange(0, BLOCK_N)
    cm = cols < n
    ss = tl.arange(0, BLOCK_S)
    sm = ss < S
    kk = tl.arange(0, _NUM_ALU)
    reg_tile = ks[:, None] * n + cols[None, :]
    reg_mask = km[:, None] & cm[None, :]

    g_ip_row = g_ip_ptr + b * L
    g_reg_b = g_reg_ptr + b * K * n
    g_mem_b = g_mem_ptr + b * C * n
    g_dstk_b = g_dstk_ptr + b * S * n
    g_rstk_b = g_rstk_ptr + b * S * L
    g_acc_mem_b = g_acc_mem_ptr + b * C * n
    gpi_row = rows_ptr + b * (2 * L + C)  # the ip's gradient before the step
    gi_row = gpi_row + L  # the return item's gradient over e_CALL (read one line on)
    gchi_row = gpi_row + 2 * L  # the address's gradient (read back folded over n)
    # The ALU backward kernel's body indexes its rows by program_id: (B, n) and (B, 16) planes.
    alu_x = alu_ptr
    alu_y = alu_ptr + nb * n
    alu_g = alu_ptr + 2 * nb * n
    alu_gx = alu_ptr + 3 * nb * n
    alu_gy = alu_ptr + 4 * nb * n
    alu_c = alu_coef_ptr
    alu_gc = alu_coef_ptr + nb * _NUM_ALU

    p_call = tl.load(lops_ptr + 6 * L + prev, mask=pm, other=0.0)
    value_op = ((ops >= _CONST) & (ops <= _LOAD)) | (ops == _POP)
    # The ops whose op_coef is D (moving on): every sequential op (ncl/control.h).
    seq_op = (ops != _HALT) & (ops < _JMP)
    g_exp = tl.load(g_exp_ptr + b)
    g_faults = tl.load(g_faults_ptr + b)
    g_dsp = tl.load(g_dsp_ptr + b * S + ss, mask=sm, other=0.0)
    g_rsp = tl.load(g_rsp_ptr + b * S + ss, mask=sm, other=0.0)

    for back in range(0, count):
        step = count - 1 - back
        t = (first + step + 1).to(tl.float32)
        # The tape (every thread's entries) and the previous step's ip gradient row are complete.
        tl.debug_barrier()
        entry, rec = _tape_entry(tape_ptr, b, count, step, L, K, n, C, S)
        e_rec = rec + 6 * n + L
        scalars = e_rec + _BLOCK_O + 3 * K
        rho = tl.load(scalars)
        wsum = tl.load(scalars + 1)
        h = tl.load(scalars + 2)
        ret_mass = tl.load(scalars + 3)
        ret_total = tl.load(scalars + 4)
        e_call = tl.load(scalars + 5)
        vsum = tl.load(scalars + 6)
        e = tl.load(e_rec + ops)
        alpha = tl.load(e_rec + _BLOCK_O + ks, mask=km, other=0.0)
        beta = tl.load(e_rec + _BLOCK_O + K + ks, mask=km, other=0.0)
        delta = tl.load(e_rec + _BLOCK_O + 2 * K + ks, mask=km, other=0.0)
        x = tl.load(rec + cols, mask=cm, other=0.0)
        y = tl.load(rec + n + cols, mask=cm, other=0.0)
        z = tl.load(rec + 2 * n + cols, mask=cm, other=0.0)
        load = tl.load(rec + 3 * n + cols, mask=cm, other=0.0)
        pop = tl.load(rec + 4 * n + cols, mask=cm, other=0.0)
        value = tl.load(rec + 5 * n + cols, mask=cm, other=0.0)
        ret_to = tl.load(rec + 6 * n + lines, mask=lm, other=0.0)
        ip = tl.load(entry + lines, mask=lm, other=0.0)
        ip_prev = tl.load(entry + prev, mask=pm, other=0.0)
        mem_e = entry + L + K * n
        dstk_e = mem_e + C * n
        rstk_e = dstk_e + S * n + S
        reg = tl.load(entry + L + reg_tile, mask=reg_mask, other=0.0)
        dsp = tl.load(dstk_e + S * n + ss, mask=sm, other=0.0)
        rsp = tl.load(rstk_e + S * L + ss, mask=sm, other=0.0)
        g_ip = tl.load(g_ip_row + lines, mask=lm, other=0.0)  # the ip's gradient after the step
        chi0 = tl.sum(tl.where(cols == 0, x, 0.0), axis=0)

        # Registers: reg' = reg + gate·δ_k (value - reg), acc_reg += h·reg'. The file's gradient stays in
        # registers until the operands' adjoint adds to it.
        gate = tl.maximum(wsum, 0.0)
        a_reg = gate * delta
        # acc_reg's gradient is the same every step, but reloaded: held across the loop it cost registers.
        g_acc_reg = tl.load(g_acc_reg_ptr + b * K * n + reg_tile, mask=reg_mask, other=0.0)
        grj = tl.load(g_reg_b + reg_tile, mask=reg_mask, other=0.0) + h * g_acc_reg
        diff = value[None, :] - reg
        readout = tl.sum(tl.sum(g_acc_reg * (reg + a_reg[:, None] * diff), axis=1), axis=0)
        g_reg = grj * (1.0 - a_reg[:, None])
        g_value = tl.sum(a_reg[:, None] * grj, axis=0)
        ga_reg = tl.sum(grj * diff, axis=1)
        g_gate = tl.sum(ga_reg * delta, axis=0)
        g_delta = ga_reg * gate
        # value = raw / max(Σ raw, floor): the projection only where the clamp is inactive.
        proj = tl.where(vsum >= _VALUE_MASS_FLOOR, tl.sum(g_value * value, axis=0), 0.0)
        g_value = tl.where(cm, (g_value - proj) / tl.maximum(vsum, _VALUE_MASS_FLOOR), 0.0)
        # raw = ALU mixture + c_CONST·z + c_MOV·x + c_LOAD·load + c_POP·pop, c = e / max(w, eps).
        wdiv = tl.maximum(gate, norm_eps)
        coef = e / wdiv
        g_coef = (tl.where(ops == _CONST, tl.sum(g_value * z, axis=0), 0.0)
                  + tl.where(ops == _MOV, tl.sum(g_value * x, axis=0), 0.0)
                  + tl.where(ops == _LOAD, tl.sum(g_value * load, axis=0), 0.0)
                  + tl.where(ops == _POP, tl.sum(g_value * pop, axis=0), 0.0))
        g_z = _coef(coef, ops, _CONST) * g_value
        g_x = _coef(coef, ops, _MOV) * g_value
        g_load = _coef(coef, ops, _LOAD) * g_value
        g_pop = _coef(coef, ops, _POP) * g_value
        g_y = tl.zeros((BLOCK_N,), dtype=tl.float32)
        # The ALU's backward on every row, skipped in the forward or not; only with g_value exactly 0 does it
        # add nothing (every term is a product with it).
        if tl.max(tl.abs(g_value), axis=0) > 0.0:
            tl.store(alu_x + b * n + cols, x, mask=cm)
            tl.store(alu_y + b * n + cols, y, mask=cm)
            tl.store(alu_g + b * n + cols, g_value, mask=cm)
            coef_alu = tl.sum(tl.where(ops[None, :] == kk[:, None] + _ALU_FIRST, coef[None, :], 0.0), axis=1)
            tl.store(alu_c + b * _NUM_ALU + kk, coef_alu)
            tl.debug_barrier()  # the rows are read with gathers by other threads
            _alu_bwd_kernel(alu_g, alu_x, alu_y, alu_c, alu_gx, alu_gy, alu_gc, n, _NUM_ALU, BLOCK_N, BLOCK_TB)
            tl.debug_barrier()  # its results are read back by other threads (and its rows reused next step)
            g_x += tl.load(alu_gx + b * n + cols, mask=cm, other=0.0)
            g_y += tl.load(alu_gy + b * n + cols, mask=cm, other=0.0)
            g_alu = tl.load(alu_gc + b * _NUM_ALU + kk)
            g_coef += tl.sum(tl.where(ops[None, :] == kk[:, None] + _ALU_FIRST, g_alu[:, None], 0.0), axis=0)

        # Memory: mem' = mem + e_STORE·χ_c (y - mem), load = Σ_c χ_c mem_c, acc_mem += h·mem'; in place on the
        # memory's gradient, row block by row block. χ_c = Σ_{j ≡ c mod C} x_j, folded from the tape's x.
        e_store = _coef(e, ops, _STORE)
        g_store = tl.sum(tl.zeros((BLOCK_C,), dtype=tl.float32), axis=0)
        for c0 in range(0, C, BLOCK_C):
            r = c0 + tl.arange(0, BLOCK_C)
            rm = r < C
            chi = tl.zeros((BLOCK_C,), dtype=tl.float32)
            for j0 in range(0, n, C):
                chi += tl.load(rec + j0 + r, mask=rm & (j0 + r < n), other=0.0)
            m2 = rm[:, None] & cm[None, :]
            offs = r[:, None] * n + cols[None, :]
            mem = tl.load(mem_e + offs, mask=m2, other=0.0)
            g_acc = tl.load(g_acc_mem_b + offs, mask=m2, other=0.0)
            gmj = tl.load(g_mem_b + offs, mask=m2, other=0.0) + h * g_acc
            a_mem = e_store * chi
            diff_mem = y[None, :] - mem
            readout += tl.sum(tl.sum(g_acc * (mem + a_mem[:, None] * diff_mem), axis=1), axis=0)
            tl.store(g_mem_b + offs, gmj * (1.0 - a_mem[:, None]) + chi[:, None] * g_load[None, :], mask=m2)
            g_y += tl.sum(a_mem[:, None] * gmj, axis=0)
            ga_mem = tl.sum(gmj * diff_mem, axis=1)
            tl.store(gchi_row + r, e_store * ga_mem + tl.sum(g_load[None, :] * mem, axis=1), mask=rm)
            g_store += tl.sum(chi * ga_mem, axis=0)

        # c = e / max(w, eps), w = max(Σ value-op weights, 0).
        g_e = g_coef / wdiv + tl.where(ops == _STORE, g_store, 0.0)
        g_gate += tl.where(gate >= norm_eps, -tl.sum(g_coef * coef, axis=0) / wdiv, 0.0)
        g_e += tl.where(value_op, tl.where(wsum >= 0.0, g_gate, 0.0), 0.0)

        # Data stack: PUSH writes x at up(p) (the slots' adjoint), POP reads Σ_s p_s slots[s], in one pass over
        # the slots' gradient (faults: both fault masses have gradient g_faults).
        u = _coef(e, ops, _PUSH)
        o = _coef(e, ops, _POP)
        d_up, d_down = _stack_moves(dsp, ss, S)
        g_push, ga_d, pop_dot = _slots_backward(g_dstk_b, dstk_e, u * d_up, dsp, x, g_pop, ss, S, cols, cm, n,
                                                BLOCK_S, BLOCK_SD)
        g_x += g_push
        g_dsp, gu, go = _pointer_grad(g_dsp, ga_d, dsp, d_up, d_down, u, o, g_faults, g_faults, ss, S)
        g_dsp += pop_dot
        g_e += tl.where(ops == _PUSH, gu, 0.0) + tl.where(ops == _POP, go, 0.0)

        # The halting mass's gradient: Σ g_acc·r over both mixtures, plus t·g_E.
        gh = readout + t * g_exp

        # Return stack: CALL writes ret_item at up(rsp), ret_to = rspᵀ rstk; its overflow is a fault, its
        # underflow is not. ret_to's adjoint is ret_mass·(g_ip - gh).
        e_ret = _coef(e, ops, _RET)
        call_div = tl.maximum(e_call, norm_eps)
        ret_item = ip_prev * p_call / call_div
        g_ret_to = tl.where(lm, ret_mass * (g_ip - gh), 0.0)
        r_up, r_down = _stack_moves(rsp, ss, S)
        g_ret_item, ga_r, ret_dot = _slots_backward(g_rstk_b, rstk_e, e_call * r_up, rsp, ret_item, g_ret_to, ss,
                                                    S, lines, lm, L, BLOCK_S, BLOCK_SR)
        g_rsp, g_call, g_ret = _pointer_grad(g_rsp, ga_r, rsp, r_up, r_down, e_call, e_ret, g_faults, 0.0, ss, S)
        g_rsp += ret_dot
        # ret_item[l] = ip[l-1]·op[l-1, CALL] / max(e_call, eps); its ip and op terms go to line l - 1 below.
        gi = tl.where(lm, g_ret_item / call_div, 0.0)
        tl.store(gi_row + lines, gi, mask=lm)
        g_call += tl.where(e_call >= norm_eps, -tl.sum(gi * ret_item, axis=0), 0.0)
        e_call_raw = _coef(e, ops, _CALL)
        g_e += tl.where(ops == _RET, g_ret, 0.0) + tl.where(ops == _CALL, tl.where(e_call_raw >= 0.0, g_call, 0.0), 0.0)

        # Control (ncl/control.h's per-line formulas), in blocks of lines: J = Σ_m tgt[l, m] g_ip[m] (what a
        # jump from l receives), D = g_ip[l+1] (what moving on receives; gh on the last line), dR (RET).
        tl.debug_barrier()  # gi_row is read one line on by other threads
        dR = gh * (1.0 - ret_total) + tl.sum(ret_to * g_ip, axis=0)
        g_chi0 = tl.sum(tl.zeros((BLOCK_LT,), dtype=tl.float32), axis=0)
        for l0 in range(0, L, BLOCK_LT):
            lb = l0 + tl.arange(0, BLOCK_LT)
            lbm = lb < L
            nxt = (lb + 1) < L
            ipb = tl.load(entry + lb, mask=lbm, other=0.0)
            J = tl.sum(tl.load(tgt_ptr + lb[:, None] * L + lines[None, :], mask=lbm[:, None] & lm[None, :],
                               other=0.0) * g_ip[None, :], axis=1)
            D = tl.where(nxt, tl.load(g_ip_row + lb + 1, mask=nxt, other=0.0), gh)
            b_seq = tl.load(lops_ptr + 0 * L + lb, mask=lbm, other=0.0)
            b_halt = tl.load(lops_ptr + 1 * L + lb, mask=lbm, other=0.0)
            b_jump = tl.load(lops_ptr + 2 * L + lb, mask=lbm, other=0.0)  # JMP + CALL
            b_jz = tl.load(lops_ptr + 3 * L + lb, mask=lbm, other=0.0)
            b_jnz = tl.load(lops_ptr + 4 * L + lb, mask=lbm, other=0.0)
            b_ret = tl.load(lops_ptr + 5 * L + lb, mask=lbm, other=0.0)
            b_call = tl.load(lops_ptr + 6 * L + lb, mask=lbm, other=0.0)
            gi_next = tl.load(gi_row + lb + 1, mask=nxt, other=0.0)
            taken_z = chi0 * J + (1.0 - chi0) * D
            taken_nz = (1.0 - chi0) * J + chi0 * D
            g_line = (gi_next * b_call + b_halt * gh + b_jump * J + b_jz * taken_z + b_jnz * taken_nz + b_ret * dR
                      + b_seq * D)
            tl.store(gpi_row + lb, g_line, mask=lbm)
            g_chi0 += tl.sum(ipb * (b_jz - b_jnz) * (J - D), axis=0)
            if FIELD_GRADS:
                jumped = ipb * (b_jump + chi0 * b_jz + (1.0 - chi0) * b_jnz)
                tl.atomic_add(g_tgt_ptr + lb[:, None] * L + lines[None, :], jumped[:, None] * g_ip[None, :],
                              mask=(lbm & (jumped != 0.0))[:, None] & lm[None, :])
                o2 = ops[None, :]
                op_coef = tl.where(o2 == _HALT, gh, tl.where(
                    (o2 == _JMP) | (o2 == _CALL), J[:, None], tl.where(
                        o2 == _JZ, taken_z[:, None], tl.where(
                            o2 == _JNZ, taken_nz[:, None], tl.where(
                                o2 == _RET, dR, tl.where(seq_op[None, :], D[:, None], 0.0))))))
                g_row = ipb[:, None] * op_coef + tl.where(o2 == _CALL, (gi_next * ipb)[:, None], 0.0)
                tl.atomic_add(g_op_ptr + lb[:, None] * _O + o2, g_row,
                              mask=(lbm & (ipb != 0.0))[:, None] & om[None, :])

        # The rows of this pass and of the memory pass are read by other threads below.
        tl.debug_barrier()
        # The address fold χ[c] = Σ_{j ≡ c} x_j, and χ0 = x[0] (JZ / JNZ).
        g_x += tl.load(gchi_row + cols % C, mask=cm, other=0.0) + tl.where(cols == 0, g_chi0, 0.0)

        # Operands x = Σ_k α_k reg_k, y = Σ_k β_k reg_k: the register file's gradient is complete.
        g_alpha = tl.sum(g_x[None, :] * reg, axis=1)
        g_beta = tl.sum(g_y[None, :] * reg, axis=1)
        g_reg += alpha[:, None] * g_x[None, :] + beta[:, None] * g_y[None, :]
        tl.store(g_reg_b + reg_tile, g_reg, mask=reg_mask)

        # Fields: e = ipᵀop; α, β, δ, z = (ipᵀ field) / max(ρ, eps).
        rc = tl.maximum(rho, norm_eps)
        inv_rho = 1.0 / rc
        g_inv = (tl.sum(g_alpha * alpha, axis=0) + tl.sum(g_beta * beta, axis=0) + tl.sum(g_delta * delta, axis=0)
                 + tl.sum(g_z * z, axis=0)) * rc
        g_rho = tl.where(rho >= norm_eps, -g_inv * inv_rho * inv_rho, 0.0)
        g_alpha *= inv_rho
        g_beta *= inv_rho
        g_delta *= inv_rho
        g_z *= inv_rho
        for l0 in range(0, L, BLOCK_LF):
            lb = l0 + tl.arange(0, BLOCK_LF)
            lbm = lb < L
            ipb = tl.load(entry + lb, mask=lbm, other=0.0)
            op_offs = lb[:, None] * _O + ops[None, :]
            op_mask = lbm[:, None] & om[None, :]
            f_offs = lb[:, None] * K + ks[None, :]
            f_mask = lbm[:, None] & km[None, :]
            imm_offs = lb[:, None] * n + cols[None, :]
            imm_mask = lbm[:, None] & cm[None, :]
            g_line = (g_rho + tl.sum(tl.load(op_ptr + op_offs, mask=op_mask, other=0.0) * g_e[None, :], axis=1)
                      + tl.sum(tl.load(a_ptr + f_offs, mask=f_mask, other=0.0) * g_alpha[None, :], axis=1)
                      + tl.sum(tl.load(b_ptr + f_offs, mask=f_mask, other=0.0) * g_beta[None, :], axis=1)
                      + tl.sum(tl.load(d_ptr + f_offs, mask=f_mask, other=0.0) * g_delta[None, :], axis=1)
                      + tl.sum(tl.load(imm_ptr + imm_offs, mask=imm_mask, other=0.0) * g_z[None, :], axis=1))
            tl.store(gpi_row + lb, tl.load(gpi_row + lb, mask=lbm, other=0.0) + g_line, mask=lbm)
            if FIELD_GRADS:  # a line without ip mass adds nothing to its fields' gradients
                live = (lbm & (ipb != 0.0))[:, None]
                p = ipb[:, None]
                tl.atomic_add(g_op_ptr + op_offs, p * g_e[None, :], mask=live & om[None, :])
                tl.atomic_add(g_a_ptr + f_offs, p * g_alpha[None, :], mask=live & km[None, :])
                tl.atomic_add(g_b_ptr + f_offs, p * g_beta[None, :], mask=live & km[None, :])
                tl.atomic_add(g_d_ptr + f_offs, p * g_delta[None, :], mask=live & km[None, :])
                tl.atomic_add(g_imm_ptr + imm_offs, p * g_z[None, :], mask=live & cm[None, :])

        # Every thread has read this step's ip gradient (g_ip_row) and added its lines: copy the new one there.
        tl.debug_barrier()
        tl.store(g_ip_row + lines, tl.load(gpi_row + lines, mask=lm, other=0.0), mask=lm)

    tl.store(g_dsp_ptr + b * S + ss, g_dsp, mask=sm)
    tl.store(g_rsp_ptr + b * S + ss, g_rsp, mask=sm)


def _launch_params_bwd(L: int, K: int, n: int, C: int, S: int) -> dict:
    """The forward kernel's block sizes (:func:`~ncl_kernels.machine.triton._launch_params`) and the ALU
    backward's tile (:data:`ncl_kernels.alu.triton.BWD_TILE_BUDGET`)."""
    return dict(_launch_params(L, K, n, C, S), BLOCK_TB=_tiles(n, BWD_TILE_BUDGET)[1])


def machine_run_bwd(op: torch.Tensor, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, imm: torch.Tensor,
                    tgt: torch.Tensor, carry: list[torch.Tensor], grad: list[torch.Tensor], first: int, count: int,
                    norm_eps: float, field_grads: bool = True) -> list[torch.Tensor]:
    r"""The gradient of steps ``first + 1 .. first + count``, as ``torch.ops.ncl.machine_run_bwd`` (the CPU op).

    Args:
        op: ``(L, 29)``; a, b, d: ``(L, K)``; imm: ``(L, n)``; tgt: ``(L, L)``: the program's fields.
        carry: the 11 tensors entering the steps: ip ``(B, L)``, reg ``(B, K, n)``, mem ``(B, C, n)``,
            dstk ``(B, S, n)``, dsp ``(B, S)``, rstk ``(B, S, L)``, rsp ``(B, S)``, acc_reg ``(B, K, n)``,
            acc_mem ``(B, C, n)``, expected ``(B,)``, faults ``(B,)``; left untouched.
        grad: the gradient of the 11 tensors leaving them (same shapes).
        first, count: the steps; norm_eps: the floor of every renormalising divisor.
        field_grads: whether to compute the fields' gradients (else they come back as empty tensors).
        Every tensor is float32 on one device (a ValueError otherwise).

    Returns:
        17 tensors: the gradients of op, a, b, d, imm and tgt (summed over samples and steps, with atomics: the
        fp32 sums are taken in another order than the CPU op's; ``(0,)`` tensors without ``field_grads``), then
        those of the 11 carry tensors entering the steps, the accumulators' as ``(0,)`` tensors: they pass through
        every step unchanged (:func:`ncl_kernels.machine.pass_accumulator_grads`).
    """
    fields = [t.contiguous() for t in (op, a, b, d, imm, tgt)]
    _check(fields, carry, "machine_run_bwd")
    if len(grad) != CARRY_SIZE:
        raise ValueError(f"machine_run_bwd: grad has {CARRY_SIZE} tensors, got {len(grad)}")
    for i, (g, t) in enumerate(zip(grad, carry)):
        if g.shape != t.shape or g.dtype != torch.float32 or g.device != t.device:
            raise ValueError(f"machine_run_bwd: grad[{i}] must be float32 of shape {tuple(t.shape)} on {t.device},"
                             f" got {g.dtype} {tuple(g.shape)} on {g.device}")
    if count < 0 or first < 0:
        raise ValueError("machine_run_bwd: first and count must be >= 0")
    (B, L), (_, K, n), C, S = carry[0].shape, carry[1].shape, carry[2].shape[1], carry[4].shape[1]
    g_fields = [torch.zeros_like(f) if field_grads else f.new_empty(0) for f in fields]
    # The state's become the entering carry's, in place; the accumulators' are only read, and returned as (0,).
    g_carry = [g.contiguous().clone() if i < FIRST_ACCUMULATOR else g.contiguous() for i, g in enumerate(grad)]
    out = g_fields + g_carry[:FIRST_ACCUMULATOR] + [g.new_empty(0) for g in grad[FIRST_ACCUMULATOR:]]
    if B == 0 or count == 0:  # nothing to step
        return out
    f32 = dict(device=carry[0].device, dtype=torch.float32)
    work = [t.contiguous().clone() for t in carry]  # the tape pass runs the steps on it
    tape = torch.empty((B, count, tape_entry_size(L, K, n, C, S)), **f32)
    rows = torch.empty((B, 2 * L + C), **f32)
    alu = torch.empty((5, B, n), **f32)
    alu_coef = torch.empty((2, B, NUM_ALU_OPS), **f32)
    field_ptrs = g_fields if field_grads else [torch.empty(1, **f32)] * 6  # not read without field_grads
    _machine_run_bwd_kernel[(B,)](*fields, _line_ops(fields[0]), *work, torch.empty((B, count), **f32),
                                  torch.empty((B, 3, n), **f32), tape, *g_carry, *field_ptrs, rows, alu, alu_coef,
                                  first, count, norm_eps, L, K, n, C, S, **_launch_params_bwd(L, K, n, C, S),
                                  FIELD_GRADS=bool(field_grads), num_warps=launch_warps(BWD_NUM_WARPS))
    return out


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------

def _compile_targets() -> list[dict]:
    """The kernel at L = 8 with the fields' gradients, and at the library image's length (L = 277) without them
    (training's fixed library)."""
    return machine_compile_targets(_machine_run_bwd_kernel, _launch_params_bwd,
                                   [(8, {"FIELD_GRADS": True}, ""), (277, {"FIELD_GRADS": False}, ",L=277")],
                                   BWD_NUM_WARPS)


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["machine_run_bwd", "COMPILE_TARGETS"]
