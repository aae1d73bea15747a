"""Triton whole-run machine kernel: the GPU counterpart of ``ncl::machine_run_fwd`` (``csrc/cpu/machine.cpp``).

:func:`machine_run_fwd` runs machine steps ``first + 1 .. first + count`` of docs/design.md §3 with one program per
sample, the step loop inside the kernel: the spec is ``step_sample`` in ``csrc/cpu/machine_step.h`` (with
``csrc/cpu/alu_row.h`` and ``csrc/include/ncl/{control,stack,halting,memory,machine,alu}.h``), computed in the
same order; only the order of some fp32 sums differs. Early exit is the batch's, decided on the host as
``machine.cpp`` does: the kernel records each sample's running mass ρ = Σ ip before every step, and if every
sample was below ``halt_eps`` before step ``s < count``, the chunk is run again from its input for ``s``
steps.

State. The stack pointers ``dsp`` and ``rsp`` (S) and the scalars ``expected`` and ``faults`` live in
registers across the steps; the pointers' up/down moves are where-sums over an ``S x S`` selection
(:func:`_pick`). The ip stays in the carry's row in global memory: each step reads it whole, one line back
(for ip moving on to the next line and the return address of a CALL) and in blocks of lines, for the fields
(``e = ipᵀop`` and the register and immediate fields) and the jumps (``Σ_l jumped_l tgt[l, :]``), so no 2-D
temporary spans the whole program (the library image has 277 lines). What the control step needs of each
line comes from the host as ``(7, L)`` vectors (:func:`_line_ops`). The banks (registers, memory, both
stacks' slots, the halting mixtures) are updated in place in global memory, in row blocks of at most
:data:`TILE_BUDGET` elements. The operands ``x``, ``y`` and the ALU output row go through a per-sample fp32
scratch ``(B, 3, n)`` in global memory, because the address fold (``chi[j mod C]``) and the ALU
(:func:`ncl_kernels.alu.triton.alu_structured_row` and :func:`~ncl_kernels.alu.triton.alu_general_tile`,
shared with the ALU kernels) read them with gathers.

Barriers. The threads of a program exchange data through global memory: the scratch rows, and the banks (a bank
tile written at step t may be read by other threads at step t + 1, since tiles of different shapes can have
different layouts). ``tl.debug_barrier()`` (``bar.sync``: it also orders the CTA's global memory accesses)
separates every write from a read of the same data by another thread, and every read from a later overwrite by
another thread: at the start of each step (and, in the backward's tape pass, after the copy of the state into the
tape), after the scratch operands are written, around the ALU's atomic scatter, and before the new ip is stored. A
read-modify-write of a bank tile (load, update, store the same offsets) needs none: the new value of an element
depends on its old one. Under the interpreter a program runs as whole-block numpy ops and barriers do nothing.

Limits: fp32 only (the CPU op also takes fp64; the Triton backend takes no fp64 anywhere). The register file
is held whole (a ``(K, n)`` tile), which suits K up to ~16 at n = 128.

Triton rules (docs/building.md): the 3.6 API with plain pointer arithmetic, every load masked, no libdevice, no
autotuning; runs on CUDA tensors, or on CPU tensors with ``TRITON_INTERPRET=1`` set before import.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ncl_kernels._triton_targets import compile_target
from ncl_kernels.alu import NUM_OPS as NUM_ALU_OPS
from ncl_kernels.alu import SKIP_REL
from ncl_kernels.alu.triton import _coef, _p2, _support_floor, _tiles, alu_general_tile, alu_structured_row
from ncl_kernels.control import reference as control_reference
from ncl_kernels.isa import NUM_OPS as NUM_OPCODES
from ncl_kernels.isa import OP
from ncl_kernels.machine.state import CARRY_SIZE
from ncl_kernels.machine.step import VALUE_MASS_FLOOR
from ncl_kernels.machine.triton_tape import NUM_OPCODES_PADDED, _copy_rows, _tape_entry

#: Elements of the largest 2-D fp32 tile of a bank row block (the memory kernels' budget).
TILE_BUDGET = 2048
NUM_WARPS = 4
#: The warp counts a whole-run kernel may launch with when ``NCL_TRITON_WARPS`` sets it (:func:`launch_warps`).
WARP_CHOICES = (2, 4, 8, 16)

#: Opcode columns of ``op`` (:mod:`ncl_kernels.isa`).
CONST, MOV, ALU_FIRST, LOAD, STORE, PUSH, POP = (OP[o] for o in ("CONST", "MOV", "ADD", "LOAD", "STORE", "PUSH", "POP"))
HALT, JMP, JZ, JNZ, CALL, RET = (OP[o] for o in ("HALT", "JMP", "JZ", "JNZ", "CALL", "RET"))
# Compile-time constants for the kernel: the opcode block, the ALU's op count, and the columns it reads of e
# (the control ops' columns reach it through _line_ops).
_O = tl.constexpr(NUM_OPCODES)
_VALUE_MASS_FLOOR = tl.constexpr(VALUE_MASS_FLOOR)
_BLOCK_O = tl.constexpr(NUM_OPCODES_PADDED)
_NUM_ALU = tl.constexpr(NUM_ALU_OPS)
_CONST, _MOV, _ALU_FIRST, _LOAD, _STORE, _PUSH, _POP, _CALL, _RET = (
    tl.constexpr(k) for k in (CONST, MOV, ALU_FIRST, LOAD, STORE, PUSH, POP, CALL, RET))


@triton.jit
def _pick(v, idx, at):
    """``v[at_i]`` for every entry of ``at`` (0 where no ``idx`` equals it), with ``v`` indexed by ``idx``:
    a where-sum over an ``(len(at), len(idx))`` selection, to move a vector held in registers."""
    return tl.sum(tl.where(at[:, None] == idx[None, :], v[None, :], 0.0), axis=1)


@triton.jit
def _stack_moves(p, s, S):
    """``(up(p), down(p))`` of a stack pointer ``p`` over positions ``s`` (ncl/stack.h): ``up_s = p_{s-1}``
    with the top saturating, ``down_s = p_{s+1}`` with the bottom saturating; 0 on padding lanes."""
    below = _pick(p, s, s - 1)
    above = _pick(p, s, s + 1)  # p is 0 on padding lanes, so nothing comes from above the top
    up = tl.where(s == S - 1, below + p, below)
    down = tl.where(s == 0, above + p, above)
    return tl.where(s < S, up, 0.0), tl.where(s < S, down, 0.0)


@triton.jit
def _rw_rows(bank, acc, r, R, w, a, v, h, cols, W, ACCUMULATE: tl.constexpr):
    """One block of rows ``r`` of an ``(R, W)`` bank, read, written and accumulated in one pass
    (``read_write_accumulate`` of machine_step.h): returns ``Σ_r w_r bank[r, :]`` (the bank before the
    write), writes ``bank[r] <- bank[r] + a_r (v - bank[r])`` and, if ``ACCUMULATE``, ``acc[r] += h bank[r]``
    (after the write). ``w``, ``a``: ``(len(r),)``; ``v``: ``(len(cols),)``."""
    m = (r < R)[:, None] & (cols < W)[None, :]
    offs = r[:, None] * W + cols[None, :]
    old = tl.load(bank + offs, mask=m, other=0.0)
    new = old + a[:, None] * (v[None, :] - old)
    tl.store(bank + offs, new, mask=m)
    if ACCUMULATE:
        tl.store(acc + offs, tl.load(acc + offs, mask=m, other=0.0) + h * new, mask=m)
    return tl.sum(w[:, None] * old, axis=0)


@triton.jit
def _stack_pass(slots, p, a, s, item, S, cols, W, BLOCK_ROWS: tl.constexpr):
    """A stack's ``(S, W)`` slots in row blocks: returns the read ``Σ_s p_s slots[s, :]`` (before the write)
    and writes ``slots[s] += a_s (item - slots[s])`` (``a = u up(p)``, update_stack of machine_step.h)."""
    read = tl.zeros_like(item)
    for s0 in range(0, S, BLOCK_ROWS):
        r = s0 + tl.arange(0, BLOCK_ROWS)
        read += _rw_rows(slots, slots, r, S, _pick(p, s, r), _pick(a, s, r), item, 0.0, cols, W, False)
    return read


@triton.jit
def _machine_run_kernel(op_ptr, a_ptr, b_ptr, d_ptr, imm_ptr, tgt_ptr, lops_ptr,
                        ip_ptr, reg_ptr, mem_ptr, dstk_ptr, dsp_ptr, rstk_ptr, rsp_ptr, acc_reg_ptr, acc_mem_ptr,
                        exp_ptr, faults_ptr, rho_ptr, scratch_ptr, tape_ptr,
                        first, count, norm_eps, L, K, n, C, S,
                        SKIP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_K: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_SD: tl.constexpr, BLOCK_SR: tl.constexpr, BLOCK_T: tl.constexpr,
                        BLOCK_LF: tl.constexpr, BLOCK_LT: tl.constexpr, TAPE: tl.constexpr):
    """Steps ``first + 1 .. first + count`` of sample ``program_id(0)``, its carry updated in place.

    Fields (shared): ``op (L, 29)``, ``a b d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``, and ``lops (7, L)``,
    what the control step needs of each line (:func:`_line_ops`). Carry: ``ip (B, L)``,
    ``reg (B, K, n)``, ``mem (B, C, n)``, ``dstk (B, S, n)``, ``dsp (B, S)``, ``rstk (B, S, L)``,
    ``rsp (B, S)``, ``acc_reg (B, K, n)``, ``acc_mem (B, C, n)``, ``expected (B,)``, ``faults (B,)``.
    ``rho (B, count)`` gets the running mass before each step; ``scratch (B, 3, n)`` holds x, y and the ALU
    row. With ``TAPE`` (the backward's tape pass, :mod:`ncl_kernels.machine.triton_bwd`) each step also writes
    its entry of ``tape (B, count, E)`` (:func:`_tape_entry`) and the halting mixtures are left alone; without
    it ``tape`` is not read. Block sizes: powers of two covering L, K, n, S; ``BLOCK_C``, ``BLOCK_SD``,
    ``BLOCK_SR`` rows of the memory, data stack and return stack per block; ``BLOCK_T`` the ALU tile;
    ``BLOCK_LF`` and ``BLOCK_LT`` the program lines per block of the fields' and the jump targets' passes.
    """
    b = tl.program_id(0).to(tl.int64)
    lines = tl.arange(0, BLOCK_L)
    lm = lines < L
    ops = tl.arange(0, _BLOCK_O)
    ks = tl.arange(0, BLOCK_K)
    km = ks < K
    cols = tl.arange(0, BLOCK_N)
    cm = cols < n
    ss = tl.arange(0, BLOCK_S)
    sm = ss < S
    kk = tl.arange(0, _NUM_ALU)

    ip_row = ip_ptr + b * L
    reg_b = reg_ptr + b * K * n
    mem_b = mem_ptr + b * C * n
    dstk_b = dstk_ptr + b * S * n
    dsp_row = dsp_ptr + b * S
    rstk_b = rstk_ptr + b * S * L
    rsp_row = rsp_ptr + b * S
    acc_reg_b = acc_reg_ptr + b * K * n
    acc_mem_b = acc_mem_ptr + b * C * n
    x_row = scratch_ptr + b * 3 * n
    y_row = x_row + n
    alu_row = x_row + 2 * n

    # What the control step needs of each line, and of the line before (for ip moving on and CALL's return
    # address), does not change from step to step: full vectors over the lines, loaded once.
    o_seq = tl.load(lops_ptr + 0 * L + lines, mask=lm, other=0.0)
    o_halt = tl.load(lops_ptr + 1 * L + lines, mask=lm, other=0.0)
    o_jz = tl.load(lops_ptr + 3 * L + lines, mask=lm, other=0.0)
    o_jnz = tl.load(lops_ptr + 4 * L + lines, mask=lm, other=0.0)
    o_ret = tl.load(lops_ptr + 5 * L + lines, mask=lm, other=0.0)
    prev = lines - 1
    pm = lm & (lines >= 1)
    p_seq = tl.load(lops_ptr + 0 * L + prev, mask=pm, other=0.0)
    p_jz = tl.load(lops_ptr + 3 * L + prev, mask=pm, other=0.0)
    p_jnz = tl.load(lops_ptr + 4 * L + prev, mask=pm, other=0.0)
    p_call = tl.load(lops_ptr + 6 * L + prev, mask=pm, other=0.0)
    value_op = ((ops >= _CONST) & (ops <= _LOAD)) | (ops == _POP)  # the ops whose weights sum to w

    dsp = tl.load(dsp_row + ss, mask=sm, other=0.0)
    rsp = tl.load(rsp_row + ss, mask=sm, other=0.0)
    expected = tl.load(exp_ptr + b)
    faults = tl.load(faults_ptr + b)

    for step in range(0, count):
        # The previous step's bank writes must be visible to every thread (a later tile may have another
        # layout), and its reads of the scratch rows done before they are overwritten.
        tl.debug_barrier()
        # ip lives in global memory (the carry's row): the fields' and the jumps' passes read it in blocks of
        # lines, and the shifts read it one line back.
        ip = tl.load(ip_row + lines, mask=lm, other=0.0)
        ip_prev = tl.load(ip_row + prev, mask=pm, other=0.0)
        if TAPE:
            entry, rec = _tape_entry(tape_ptr, b, count, step, L, K, n, C, S)
            tl.store(entry + lines, ip, mask=lm)
            _copy_rows(reg_b, entry + L, K, n, cols, BLOCK_K)
            _copy_rows(mem_b, entry + L + K * n, C, n, cols, BLOCK_C)
            _copy_rows(dstk_b, entry + L + (K + C) * n, S, n, cols, BLOCK_SD)
            tl.store(entry + L + (K + C + S) * n + ss, dsp, mask=sm)
            _copy_rows(rstk_b, entry + L + (K + C + S) * n + S, S, L, lines, BLOCK_SR)
            tl.store(entry + L + (K + C + S) * n + S + S * L + ss, rsp, mask=sm)
            # Every thread's copy is read before any thread writes the banks below.
            tl.debug_barrier()
        # 1. Fields: e keeps the running mass ρ; the register and immediate fields are renormalised by it.
        rho = tl.sum(ip, axis=0)
        tl.store(rho_ptr + b * count + step, rho)
        inv_rho = 1.0 / tl.maximum(rho, norm_eps)
        e = tl.zeros((_BLOCK_O,), dtype=tl.float32)
        alpha = tl.zeros((BLOCK_K,), dtype=tl.float32)
        beta = tl.zeros((BLOCK_K,), dtype=tl.float32)
        delta = tl.zeros((BLOCK_K,), dtype=tl.float32)
        z = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for l0 in range(0, L, BLOCK_LF):
            lb = l0 + tl.arange(0, BLOCK_LF)
            lbm = lb < L
            ipb = tl.load(ip_row + lb, mask=lbm, other=0.0)[:, None]
            e += tl.sum(ipb * tl.load(op_ptr + lb[:, None] * _O + ops[None, :],
                                      mask=lbm[:, None] & (ops < _O)[None, :], other=0.0), axis=0)
            field_offs = lb[:, None] * K + ks[None, :]
            field_mask = lbm[:, None] & km[None, :]
            alpha += tl.sum(ipb * tl.load(a_ptr + field_offs, mask=field_mask, other=0.0), axis=0)
            beta += tl.sum(ipb * tl.load(b_ptr + field_offs, mask=field_mask, other=0.0), axis=0)
            delta += tl.sum(ipb * tl.load(d_ptr + field_offs, mask=field_mask, other=0.0), axis=0)
            z += tl.sum(ipb * tl.load(imm_ptr + lb[:, None] * n + cols[None, :],
                                      mask=lbm[:, None] & cm[None, :], other=0.0), axis=0)
        e_alu = tl.sum(tl.where(ops[None, :] == kk[:, None] + _ALU_FIRST, e[None, :], 0.0), axis=1)  # the ALU's 16
        alpha *= inv_rho
        beta *= inv_rho
        delta *= inv_rho
        z *= inv_rho
        if TAPE:
            tl.store(rec + 2 * n + cols, z, mask=cm)
            tl.store(rec + 6 * n + L + ops, e)
            tl.store(rec + 6 * n + L + _BLOCK_O + ks, alpha, mask=km)
            tl.store(rec + 6 * n + L + _BLOCK_O + K + ks, beta, mask=km)
            tl.store(rec + 6 * n + L + _BLOCK_O + 2 * K + ks, delta, mask=km)
            tl.store(rec + 6 * n + L + _BLOCK_O + 3 * K, rho)

        # 2. Operands (the address and the ALU read them back from the scratch rows, with gathers).
        reg = tl.load(reg_b + ks[:, None] * n + cols[None, :], mask=km[:, None] & cm[None, :], other=0.0)
        x = tl.sum(alpha[:, None] * reg, axis=0)
        y = tl.sum(beta[:, None] * reg, axis=0)
        tl.store(x_row + cols, x, mask=cm)
        tl.store(y_row + cols, y, mask=cm)
        chi0 = tl.sum(tl.where(cols == 0, x, 0.0), axis=0)
        if TAPE:
            tl.store(rec + cols, x, mask=cm)
            tl.store(rec + n + cols, y, mask=cm)

        # 6 (return stack) and 7. The return stack is read (ret_to) and written in one pass, before control
        # needs ret_to. The return address of a CALL on line l is line l + 1.
        e_call = tl.maximum(_coef(e, ops, _CALL), 0.0)
        e_ret = _coef(e, ops, _RET)
        ret_item = ip_prev * p_call / tl.maximum(e_call, norm_eps)
        r_up, r_down = _stack_moves(rsp, ss, S)
        ret_to = _stack_pass(rstk_b, rsp, e_call * r_up, ss, ret_item, S, lines, L, BLOCK_SR)
        moved = ip * (o_seq + (1.0 - chi0) * o_jz + chi0 * o_jnz)
        ret_mass = tl.sum(ip * o_ret, axis=0)
        ret_total = tl.sum(ret_to, axis=0)
        halted = (tl.sum(ip * o_halt, axis=0) + tl.sum(tl.where(lines == L - 1, moved, 0.0), axis=0)
                  + ret_mass * (1.0 - ret_total))
        if TAPE:
            tl.store(rec + 6 * n + lines, ret_to, mask=lm)
            scalars = rec + 6 * n + L + _BLOCK_O + 3 * K
            tl.store(scalars + 2, halted)
            tl.store(scalars + 3, ret_mass)
            tl.store(scalars + 4, ret_total)
            tl.store(scalars + 5, e_call)
        # new_ip[m] = moved[m-1] + ret_mass·ret_to[m] + Σ_l jumped[l] tgt[l, m], the jumps in blocks of lines.
        new_ip = ip_prev * (p_seq + (1.0 - chi0) * p_jz + chi0 * p_jnz) + ret_mass * ret_to
        for l0 in range(0, L, BLOCK_LT):
            lb = l0 + tl.arange(0, BLOCK_LT)
            lbm = lb < L
            jumped = tl.load(ip_row + lb, mask=lbm, other=0.0) * (
                tl.load(lops_ptr + 2 * L + lb, mask=lbm, other=0.0)
                + chi0 * tl.load(lops_ptr + 3 * L + lb, mask=lbm, other=0.0)
                + (1.0 - chi0) * tl.load(lops_ptr + 4 * L + lb, mask=lbm, other=0.0))
            new_ip += tl.sum(jumped[:, None] * tl.load(tgt_ptr + lb[:, None] * L + lines[None, :],
                                                       mask=lbm[:, None] & lm[None, :], other=0.0), axis=0)

        # 6 (data stack): POP reads it, PUSH writes x, in one pass.
        u = _coef(e, ops, _PUSH)
        o = _coef(e, ops, _POP)
        d_up, d_down = _stack_moves(dsp, ss, S)
        pop = _stack_pass(dstk_b, dsp, u * d_up, ss, x, S, cols, n, BLOCK_SD)

        # 5. Memory: LOAD reads it, STORE writes y at the address, the halting mixture accumulates it.
        # The address fold chi[c] = Σ_{j ≡ c mod C} x_j reads x as other threads wrote it.
        tl.debug_barrier()
        e_store = _coef(e, ops, _STORE)
        load = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            r = c0 + tl.arange(0, BLOCK_C)
            chi = tl.zeros((BLOCK_C,), dtype=tl.float32)
            for j0 in range(0, n, C):
                chi += tl.load(x_row + j0 + r, mask=(r < C) & (j0 + r < n), other=0.0)
            load += _rw_rows(mem_b, acc_mem_b, r, C, chi, e_store * chi, y, halted, cols, n, not TAPE)

        # 3. ALU and the value written: w = Σ value-op weights (clamped at 0), coef = e / w.
        wsum = tl.sum(tl.where(value_op, e, 0.0), axis=0)
        gate = tl.maximum(wsum, 0.0)
        wdiv = tl.maximum(gate, norm_eps)
        value = tl.zeros((BLOCK_N,), dtype=tl.float32)
        if tl.max(tl.abs(e_alu), axis=0) > SKIP:  # else no line is an ALU op: value 0
            coef_alu = e_alu / wdiv
            x_floor, y_floor = _support_floor(x, n), _support_floor(y, n)  # x, y: this step's, in registers
            tl.store(alu_row + cols, alu_structured_row(x_row, y_row, coef_alu, kk, n, x_floor, SKIP, BLOCK_N,
                                                        BLOCK_T), mask=cm)
            # MUL, DIV, MOD add atomically onto the row just stored by other threads...
            tl.debug_barrier()
            for i0 in range(0, n, BLOCK_T):
                alu_general_tile(x_row, y_row, coef_alu, kk, alu_row, i0, n, x_floor, y_floor, SKIP, BLOCK_N,
                                 BLOCK_T)
            # ...and every thread's additions must have landed before the row is read.
            tl.debug_barrier()
            value = tl.load(alu_row + cols, mask=cm, other=0.0)
        value += ((_coef(e, ops, _CONST) / wdiv) * z + (_coef(e, ops, _MOV) / wdiv) * x
                  + (_coef(e, ops, _LOAD) / wdiv) * load + (o / wdiv) * pop)
        # Normalised to mass 1 (docs/design.md §3 step 4; padding lanes are 0).
        vsum = tl.sum(value, axis=0)
        value = value / tl.maximum(vsum, _VALUE_MASS_FLOOR)
        if TAPE:
            tl.store(rec + 3 * n + cols, load, mask=cm)
            tl.store(rec + 4 * n + cols, pop, mask=cm)
            tl.store(rec + 5 * n + cols, value, mask=cm)
            tl.store(rec + 6 * n + L + _BLOCK_O + 3 * K + 1, wsum)
            tl.store(rec + 6 * n + L + _BLOCK_O + 3 * K + 6, vsum)

        # 4. Registers and their halting mixture (x and y were read from them before the barrier above; the
        # pass's read is not needed).
        _rw_rows(reg_b, acc_reg_b, ks, K, delta, gate * delta, value, halted, cols, n, not TAPE)

        # The stack pointers and the scalars stay in registers; the new ip goes to its row.
        dsp_top = tl.sum(tl.where(ss == S - 1, dsp, 0.0), axis=0)
        dsp_bottom = tl.sum(tl.where(ss == 0, dsp, 0.0), axis=0)
        rsp_top = tl.sum(tl.where(ss == S - 1, rsp, 0.0), axis=0)
        faults += u * dsp_top + o * dsp_bottom + e_call * rsp_top
        expected += (first + step + 1).to(tl.float32) * halted
        dsp = tl.where(sm, (1.0 - u - o) * dsp + u * d_up + o * d_down, 0.0)
        rsp = tl.where(sm, (1.0 - e_call - e_ret) * rsp + e_call * r_up + e_ret * r_down, 0.0)
        # Every thread has read this step's ip (the blocks above) before any overwrites it.
        tl.debug_barrier()
        tl.store(ip_row + lines, new_ip, mask=lm)  # moving on from the last line is halting, not line L

    tl.store(dsp_row + ss, dsp, mask=sm)
    tl.store(rsp_row + ss, rsp, mask=sm)
    tl.store(exp_ptr + b, expected)
    tl.store(faults_ptr + b, faults)


def launch_warps(default: int) -> int:
    """The warps a program of a whole-run kernel launches with: ``NCL_TRITON_WARPS`` if it is set (one of
    :data:`WARP_CHOICES`, else a ValueError), otherwise ``default`` (:data:`NUM_WARPS` for the forward, the
    backward's own). One program runs one sample, so at a batch below the GPU's SM count more warps are what puts
    more of the card on each sample's steps, at the cost of registers (16 warps cap a thread at 128: the forward
    then spills 8 B, the backward 588 B, on sm_90a); ``scripts/machine_warps.py`` times the choices on a GPU."""
    raw = os.environ.get("NCL_TRITON_WARPS")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) not in WARP_CHOICES:
        raise ValueError(f"NCL_TRITON_WARPS must be one of {WARP_CHOICES}, got {raw!r}")
    return int(raw)


def _launch_params(L: int, K: int, n: int, C: int, S: int) -> dict:
    """The kernel's block sizes: whole L, K, n and S for vectors; row blocks of the banks, and blocks of
    program lines, within :data:`TILE_BUDGET` elements per 2-D tile."""
    block_n, block_l = _p2(n), _p2(L)

    def rows(total: int, width: int) -> int:
        return max(1, min(_p2(total), TILE_BUDGET // width))

    return dict(SKIP=SKIP_REL, BLOCK_L=block_l, BLOCK_K=_p2(K), BLOCK_N=block_n, BLOCK_S=_p2(S),
                BLOCK_C=rows(C, block_n), BLOCK_SD=rows(S, block_n), BLOCK_SR=rows(S, block_l),
                BLOCK_T=_tiles(n, TILE_BUDGET)[1], BLOCK_LF=rows(L, max(block_n, _p2(NUM_OPCODES))),
                BLOCK_LT=rows(L, block_l))


def _line_ops(op: torch.Tensor) -> torch.Tensor:
    """``(7, L)``: per line, the opcode weights the control step groups (ncl/control.h's ``LineOps``, the
    control reference's grouping): moving on (``SEQUENTIAL``), HALT, jumping (JMP and CALL), JZ, JNZ, RET, and
    CALL alone."""
    return torch.stack([op[:, control_reference.SEQUENTIAL].sum(1), op[:, HALT], op[:, JMP] + op[:, CALL],
                        op[:, JZ], op[:, JNZ], op[:, RET], op[:, CALL]]).contiguous()


def _run(fields, carry, first: int, count: int, norm_eps: float, rho: torch.Tensor) -> None:
    """Runs the kernel on ``carry`` (11 contiguous fp32 tensors, updated in place); ``rho``: ``(B, count)``."""
    B, L = carry[0].shape
    _, K, n = carry[1].shape
    C, S = carry[2].shape[1], carry[4].shape[1]
    if B == 0 or count == 0:
        return
    scratch = torch.empty((B, 3, n), device=carry[0].device, dtype=torch.float32)
    _machine_run_kernel[(B,)](*fields, _line_ops(fields[0]), *carry, rho, scratch, scratch, first, count, norm_eps,
                              L, K, n, C, S,
                              **_launch_params(L, K, n, C, S), TAPE=False, num_warps=launch_warps(NUM_WARPS))


def _check(fields, carry, name: str = "machine_run_fwd") -> None:
    """ValueError (naming ``name`` and the argument) unless the fields and the carry fit together, fp32, on one
    device."""
    if len(carry) != CARRY_SIZE:
        raise ValueError(f"{name}: the carry has {CARRY_SIZE} tensors, got {len(carry)}")
    ip, reg, mem = carry[0], carry[1], carry[2]
    if ip.dim() != 2 or reg.dim() != 3 or mem.dim() != 3 or carry[4].dim() != 2:
        raise ValueError(f"{name}: ip (B, L), reg (B, K, n), mem (B, C, n), dsp (B, S)")
    (B, L), (_, K, n), C, S = ip.shape, reg.shape, mem.shape[1], carry[4].shape[1]
    expect = [(B, L), (B, K, n), (B, C, n), (B, S, n), (B, S), (B, S, L), (B, S), (B, K, n), (B, C, n), (B,), (B,)]
    shapes = [tuple(t.shape) for t in carry]
    if shapes != expect:
        raise ValueError(f"{name}: carry shapes {shapes}, expected {expect}")
    op, a, b, d, imm, tgt = fields
    if (tuple(op.shape) != (L, NUM_OPCODES) or not tuple(a.shape) == tuple(b.shape) == tuple(d.shape) == (L, K)
            or tuple(imm.shape) != (L, n) or tuple(tgt.shape) != (L, L)):
        raise ValueError(f"{name}: field shapes do not match the carry")
    for t in (*fields, *carry):
        if t.dtype != torch.float32:
            raise ValueError(f"{name} (triton): the machine state is float32 only, got {t.dtype}")
        if t.device != ip.device:
            raise ValueError(f"{name}: every tensor must be on the carry's device")


def machine_run_fwd(op: torch.Tensor, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, imm: torch.Tensor,
                    tgt: torch.Tensor, carry: list[torch.Tensor], first: int, count: int, halt_eps: float,
                    norm_eps: float) -> list[torch.Tensor]:
    r"""Steps ``first + 1 .. first + count`` of the machine, as ``torch.ops.ncl.machine_run_fwd`` (the CPU op).

    .. math:: \text{acc}_R \mathrel{+}= h_t\, R(\text{state}_t),\qquad
              \text{expected} \mathrel{+}= t\, h_t,\qquad \text{faults} \mathrel{+}= f_t

    Args:
        op: ``(L, 29)``; a, b, d: ``(L, K)``; imm: ``(L, n)``; tgt: ``(L, L)``: the program's fields.
        carry: 11 tensors: ip ``(B, L)``, reg ``(B, K, n)``, mem ``(B, C, n)``, dstk ``(B, S, n)``,
            dsp ``(B, S)``, rstk ``(B, S, L)``, rsp ``(B, S)``, acc_reg ``(B, K, n)``, acc_mem ``(B, C, n)``,
            expected ``(B,)``, faults ``(B,)``; float32 (a ValueError otherwise), left untouched.
        first, count: the steps to run; halt_eps: the early-exit threshold of the running mass;
        norm_eps: the floor of every renormalising divisor.

    Returns:
        The 11 new carry tensors, then a 0-dim int64 tensor: the steps run. The batch stops before the first
        step at which every sample's running mass is below ``halt_eps``.
    """
    fields = [t.contiguous() for t in (op, a, b, d, imm, tgt)]
    _check(fields, carry)
    if count < 0 or first < 0:
        raise ValueError("machine_run_fwd: first and count must be >= 0")
    out = [t.contiguous().clone() for t in carry]
    B = out[0].shape[0]
    rho = torch.zeros((B, count), device=out[0].device, dtype=torch.float32)
    _run(fields, out, first, count, norm_eps, rho)
    # machine.cpp's rule: the batch maximum starts at 0 and ignores NaN (std::max), compared in fp32.
    mx = torch.where(rho.isnan(), 0.0, rho).amax(0).clamp_min(0.0) if B else rho.new_zeros(count)
    below = (mx < torch.tensor(halt_eps, dtype=torch.float32, device=mx.device)).nonzero()
    done = int(below[0, 0]) if below.numel() else count
    if done < count:
        out = [t.contiguous().clone() for t in carry]
        _run(fields, out, first, done, norm_eps, rho.new_empty((B, done)))
    return out + [torch.tensor(done, dtype=torch.int64, device=out[0].device)]


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------

def machine_compile_targets(kernel, launch_params, variants, num_warps: int) -> list[dict]:
    """Compile-only targets of a whole-run kernel (this module's or the backward's) in fp32 at the benchmark
    sizes (n = C = 128, K = 8, S = 32): ``variants`` lists ``(L, extra constexprs, label suffix)``;
    ``launch_params(L, K, n, C, S)`` gives the block sizes."""
    ptrs = [name for name in kernel.arg_names if name.endswith("_ptr")]
    targets = []
    for lines, extra, suffix in variants:
        consts = {**launch_params(L=lines, K=8, n=128, C=128, S=32), **extra}
        target = compile_target(kernel, torch.float32, ptrs, (), ["first", "count", "norm_eps", "L", "K", "n", "C",
                                                                  "S"], consts, suffix=suffix, num_warps=num_warps)
        target["signature"]["norm_eps"] = "fp32"  # compile_target types scalars as i32
        targets.append(target)
    return targets


def _compile_targets() -> list[dict]:
    """The kernel at L = 8 (the benchmark's loop) and at the library image's length (L = 277, what ``ncl.nn``
    runs), and the latter at 16 warps (``NCL_TRITON_WARPS=16``, :func:`launch_warps`)."""
    return (machine_compile_targets(_machine_run_kernel, _launch_params,
                                    [(8, {"TAPE": False}, ""), (277, {"TAPE": False}, ",L=277")], NUM_WARPS)
            + machine_compile_targets(_machine_run_kernel, _launch_params,
                                      [(277, {"TAPE": False}, ",L=277,warps=16")], 16))


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["COMPILE_TARGETS", "WARP_CHOICES", "launch_warps", "machine_run_fwd"]
