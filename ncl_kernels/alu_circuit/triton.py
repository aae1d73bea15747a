"""Triton kernels for the circuit ALU mixture (:func:`ncl_kernels.alu_circuit.alu_circuit_mix`).

Plain host functions, forward and hand-written backward; autograd, registration and validation live in
:mod:`ncl_kernels.alu_circuit`. The math is the one in ``csrc/include/ncl/alu_circuit.h``: bit marginals,
the netlist evaluated gate by gate, each op's bits folded into the output by doubling; the backward
recomputes the wires, runs the fold backward per op and then the gates in reverse (see ``docs/alu.md``).

Layout: one program per block of ``BLOCK_B`` rows. Every per-row quantity (wires, their adjoints, fold levels,
the output accumulator) is a ``(BLOCK_B,)`` vector, and lives in a global fp32 scratch laid out
``(slots, B)``: slot ``s`` of the block's rows is ``BLOCK_B`` consecutive words, so each gate is one coalesced
load per input and one store. ``BLOCK_B = 32 · num_warps``: each row belongs to exactly one thread and every
scratch word is written and read back by the same thread, so no barrier is needed between gates.

Triton rules (docs/building.md): the 3.6 API with plain pointer arithmetic, every load masked, no libdevice,
no autotuning; runs on CUDA tensors, or on CPU tensors with ``TRITON_INTERPRET=1`` set before import.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ncl_kernels._triton_targets import compile_target
from ncl_kernels.alu_circuit import NUM_OPS
from ncl_kernels.alu_circuit.netlist import ADD, CONST, MUL, SUB

NUM_WARPS = 1
#: Rows per program: one per thread (see the module docstring for why it must not be more than the threads).
BLOCK_B = 32 * NUM_WARPS


@triton.jit
def _slot(w_ptr, slot, B, rows):
    """Pointers to scratch slot ``slot`` (a scalar) of the block's rows. ``slot * B`` is int32: the host
    functions keep the scratch below 2^31 words."""
    return w_ptr + rows + slot * B


@triton.jit
def _load_bits(src_ptr, w_ptr, first, B, n, rows, rm, M: tl.constexpr, BLOCK_B: tl.constexpr):
    """Bit marginals ``p_i = Σ_v bit_i(v) src[row, v]`` into slots ``first + i``: blocks of ``2^i`` values
    with bit ``i`` set, starting at ``2^i`` and every ``2^(i+1)``."""
    row_ptr = src_ptr + rows * n
    for i in tl.static_range(M):
        p = tl.zeros((BLOCK_B,), dtype=tl.float32)
        for base in range(1 << i, n, 2 << i):
            for u in range(0, 1 << i):
                p += tl.load(row_ptr + base + u, mask=rm, other=0.0).to(tl.float32)
        tl.store(_slot(w_ptr, first + i, B, rows), p, mask=rm)


@triton.jit
def _run_gates(gates_ptr, w_ptr, num_gates, B, rows, rm, GADD: tl.constexpr, GSUB: tl.constexpr,
               GMUL: tl.constexpr, GCONST: tl.constexpr):
    """Every gate in order: ``w[out] = w[in0] (+|-|*) w[in1]``, or the integer ``in0`` for a constant."""
    for g in range(num_gates):
        op = tl.load(gates_ptr + 4 * g)
        in0 = tl.load(gates_ptr + 4 * g + 1)
        in1 = tl.load(gates_ptr + 4 * g + 2)
        out = tl.load(gates_ptr + 4 * g + 3)
        wired = rm & (op != GCONST)  # a constant's in0 is its value, not a wire
        a = tl.load(_slot(w_ptr, in0, B, rows), mask=wired, other=0.0)
        b = tl.load(_slot(w_ptr, in1, B, rows), mask=wired, other=0.0)
        v = tl.where(op == GADD, a + b, tl.where(op == GSUB, a - b, tl.where(op == GMUL, a * b,
                                                                             in0.to(tl.float32))))
        tl.store(_slot(w_ptr, out, B, rows), v, mask=rm)


@triton.jit
def _fold_levels(w_ptr, outputs_ptr, k, t0, B, rows, rm, M: tl.constexpr, STOP: tl.constexpr):
    """Levels ``0..STOP`` of op ``k``'s product fold into slots ``t0 + 2^j - 1`` (level ``j``, ``2^j`` values):
    level 0 is ``[1]``, level ``j+1 = [L_j (1 - p_j), L_j p_j]``."""
    tl.store(_slot(w_ptr, t0, B, rows), tl.full(rows.shape, 1.0, tl.float32), mask=rm)
    for j in tl.static_range(STOP):
        h = 1 << j  # constexpr: j is unrolled
        p = tl.load(_slot(w_ptr, tl.load(outputs_ptr + k * M + j), B, rows), mask=rm, other=0.0)
        for u in range(h):
            cur = tl.load(_slot(w_ptr, t0 + h - 1 + u, B, rows), mask=rm, other=0.0)
            tl.store(_slot(w_ptr, t0 + 2 * h - 1 + u, B, rows), cur * (1.0 - p), mask=rm)
            tl.store(_slot(w_ptr, t0 + 2 * h - 1 + u + h, B, rows), cur * p, mask=rm)


@triton.jit
def _circuit_fwd_kernel(x_ptr, y_ptr, c_ptr, out_ptr, gates_ptr, outputs_ptr, w_ptr, B, n, num_gates, num_wires,
                        M: tl.constexpr, K: tl.constexpr, BLOCK_B: tl.constexpr, GADD: tl.constexpr,
                        GSUB: tl.constexpr, GMUL: tl.constexpr, GCONST: tl.constexpr):
    """``out[b] = Σ_k c[b, k] · fold(bits of op k)`` for the block's rows; scratch slots: wires, then the
    fold levels (``2n - 1``), then the output accumulator (``n``)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = rows < B
    _load_bits(x_ptr, w_ptr, 0, B, n, rows, rm, M, BLOCK_B)
    _load_bits(y_ptr, w_ptr, M, B, n, rows, rm, M, BLOCK_B)
    _run_gates(gates_ptr, w_ptr, num_gates, B, rows, rm, GADD, GSUB, GMUL, GCONST)
    t0 = num_wires
    acc0 = num_wires + 2 * n - 1
    for v in range(n):
        tl.store(_slot(w_ptr, acc0 + v, B, rows), tl.zeros((BLOCK_B,), dtype=tl.float32), mask=rm)
    h: tl.constexpr = 1 << (M - 1)
    for k in range(K):
        c = tl.load(c_ptr + rows * K + k, mask=rm, other=0.0).to(tl.float32)
        # Every level but the last; the last one is added into the accumulator directly.
        _fold_levels(w_ptr, outputs_ptr, k, t0, B, rows, rm, M, M - 1)
        p = tl.load(_slot(w_ptr, tl.load(outputs_ptr + k * M + M - 1), B, rows), mask=rm, other=0.0)
        for u in range(h):
            cur = c * tl.load(_slot(w_ptr, t0 + h - 1 + u, B, rows), mask=rm, other=0.0)
            lo = _slot(w_ptr, acc0 + u, B, rows)
            hi = _slot(w_ptr, acc0 + u + h, B, rows)
            tl.store(lo, tl.load(lo, mask=rm, other=0.0) + cur * (1.0 - p), mask=rm)
            tl.store(hi, tl.load(hi, mask=rm, other=0.0) + cur * p, mask=rm)
    for v in range(n):
        val = tl.load(_slot(w_ptr, acc0 + v, B, rows), mask=rm, other=0.0)
        tl.store(out_ptr + rows * n + v, val.to(out_ptr.dtype.element_ty), mask=rm)


@triton.jit
def _circuit_bwd_kernel(g_ptr, x_ptr, y_ptr, c_ptr, gx_ptr, gy_ptr, gc_ptr, gates_ptr, outputs_ptr, w_ptr, B, n,
                        num_gates, num_wires, M: tl.constexpr, K: tl.constexpr, BLOCK_B: tl.constexpr,
                        GADD: tl.constexpr, GSUB: tl.constexpr, GMUL: tl.constexpr, GCONST: tl.constexpr):
    """Backward for the block's rows; scratch slots: wires, their adjoints, fold levels (``2n - 1``), the
    fold adjoint (``n``)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = rows < B
    _load_bits(x_ptr, w_ptr, 0, B, n, rows, rm, M, BLOCK_B)
    _load_bits(y_ptr, w_ptr, M, B, n, rows, rm, M, BLOCK_B)
    _run_gates(gates_ptr, w_ptr, num_gates, B, rows, rm, GADD, GSUB, GMUL, GCONST)
    d0 = num_wires
    t0 = 2 * num_wires
    a0 = 2 * num_wires + 2 * n - 1
    for wire_i in range(num_wires):
        tl.store(_slot(w_ptr, d0 + wire_i, B, rows), tl.zeros((BLOCK_B,), dtype=tl.float32), mask=rm)
    g_row = g_ptr + rows * n
    for k in range(K):
        c = tl.load(c_ptr + rows * K + k, mask=rm, other=0.0).to(tl.float32)
        _fold_levels(w_ptr, outputs_ptr, k, t0, B, rows, rm, M, M)
        # grad c_k = <g, P_k>; the fold's adjoint starts at c_k g.
        gck = tl.zeros((BLOCK_B,), dtype=tl.float32)
        for v in range(n):
            gv = tl.load(g_row + v, mask=rm, other=0.0).to(tl.float32)
            gck += gv * tl.load(_slot(w_ptr, t0 + n - 1 + v, B, rows), mask=rm, other=0.0)
            tl.store(_slot(w_ptr, a0 + v, B, rows), c * gv, mask=rm)
        tl.store(gc_ptr + rows * K + k, gck.to(gc_ptr.dtype.element_ty), mask=rm)
        for jj in tl.static_range(M):
            j = M - 1 - jj  # constexpr: jj is unrolled
            h = 1 << j
            wire = tl.load(outputs_ptr + k * M + j)
            p = tl.load(_slot(w_ptr, wire, B, rows), mask=rm, other=0.0)
            dp = tl.zeros((BLOCK_B,), dtype=tl.float32)
            for u in range(h):
                lo = tl.load(_slot(w_ptr, a0 + u, B, rows), mask=rm, other=0.0)
                hi = tl.load(_slot(w_ptr, a0 + u + h, B, rows), mask=rm, other=0.0)
                dp += tl.load(_slot(w_ptr, t0 + h - 1 + u, B, rows), mask=rm, other=0.0) * (hi - lo)
                tl.store(_slot(w_ptr, a0 + u, B, rows), lo * (1.0 - p) + hi * p, mask=rm)
            dw = _slot(w_ptr, d0 + wire, B, rows)
            tl.store(dw, tl.load(dw, mask=rm, other=0.0) + dp, mask=rm)
    # Gates in reverse, each adjoint into its inputs' (one after the other: a*a gets both terms).
    for gg in range(num_gates):
        g = num_gates - 1 - gg
        op = tl.load(gates_ptr + 4 * g)
        in0 = tl.load(gates_ptr + 4 * g + 1)
        in1 = tl.load(gates_ptr + 4 * g + 2)
        out = tl.load(gates_ptr + 4 * g + 3)
        wired = rm & (op != GCONST)
        d = tl.load(_slot(w_ptr, d0 + out, B, rows), mask=wired, other=0.0)
        a = tl.load(_slot(w_ptr, in0, B, rows), mask=wired, other=0.0)
        b = tl.load(_slot(w_ptr, in1, B, rows), mask=wired, other=0.0)
        da_ptr = _slot(w_ptr, d0 + in0, B, rows)
        tl.store(da_ptr, tl.load(da_ptr, mask=wired, other=0.0) + tl.where(op == GMUL, d * b, d), mask=wired)
        db_ptr = _slot(w_ptr, d0 + in1, B, rows)
        db = tl.where(op == GMUL, d * a, tl.where(op == GADD, d, -d))
        tl.store(db_ptr, tl.load(db_ptr, mask=wired, other=0.0) + db, mask=wired)
    # Adjoint of the bit marginals: grad x_v = Σ_i bit_i(v) dw[i], grad y_v = Σ_i bit_i(v) dw[M + i].
    for v in range(n):
        ax = tl.zeros((BLOCK_B,), dtype=tl.float32)
        ay = tl.zeros((BLOCK_B,), dtype=tl.float32)
        for i in tl.static_range(M):
            on = rm & (((v >> i) & 1) == 1)
            ax += tl.load(_slot(w_ptr, d0 + i, B, rows), mask=on, other=0.0)
            ay += tl.load(_slot(w_ptr, d0 + M + i, B, rows), mask=on, other=0.0)
        tl.store(gx_ptr + rows * n + v, ax.to(gx_ptr.dtype.element_ty), mask=rm)
        tl.store(gy_ptr + rows * n + v, ay.to(gy_ptr.dtype.element_ty), mask=rm)


def _scratch(slots: int, B: int, device) -> torch.Tensor:
    if slots * B >= 2 ** 31:
        raise ValueError(f"alu_circuit_mix (triton): batch {B} too large for an int32-indexed scratch of "
                         f"{slots} slots per row; split the batch")
    return torch.empty((slots, B), device=device, dtype=torch.float32)


def _sizes(x: torch.Tensor, gates: torch.Tensor, outputs: torch.Tensor) -> tuple[int, int, int, int, int]:
    B, n = x.shape
    m, num_gates = outputs.shape[1], gates.shape[0]
    return B, n, m, num_gates, 2 * m + num_gates  # wires: the 2m inputs, then one per gate


_GATE_CODES = dict(GADD=ADD, GSUB=SUB, GMUL=MUL, GCONST=CONST)


def alu_circuit_mix_fwd(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, gates: torch.Tensor,
                        outputs: torch.Tensor) -> torch.Tensor:
    r"""Fused circuit ALU mixture, :math:`\text{out}_b = \sum_k e_{b,k}\,\mathrm{fold}(C_k(x_b, y_b))`.

    Args:
        x, y: ``(B, n)``, ``n = 2^m``; coeffs: ``(B, 16)``.
        gates: ``(G, 4)`` int32 netlist; outputs: ``(16, m)`` int32 output wires
            (:func:`ncl_kernels.alu_circuit.netlist.tensors`).

    Returns:
        ``(B, n)`` in the inputs' dtype (accumulated in fp32).
    """
    x, y, coeffs = x.contiguous(), y.contiguous(), coeffs.contiguous()
    B, n, m, num_gates, num_wires = _sizes(x, gates, outputs)
    out = torch.empty_like(x)
    if B == 0:
        return out
    scratch = _scratch(num_wires + 3 * n - 1, B, x.device)
    _circuit_fwd_kernel[(triton.cdiv(B, BLOCK_B),)](
        x, y, coeffs, out, gates.contiguous(), outputs.contiguous(), scratch, B, n, num_gates, num_wires, M=m,
        K=NUM_OPS, BLOCK_B=BLOCK_B, num_warps=NUM_WARPS, **_GATE_CODES)
    return out


def alu_circuit_mix_bwd(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor,
                        gates: torch.Tensor, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Backward of :func:`alu_circuit_mix_fwd`, by reverse replay of the fold and the netlist.

    .. math::
        \frac{\partial L}{\partial e_k} = \langle g, P_k \rangle, \quad
        \frac{\partial L}{\partial x_v} = \sum_i \text{bit}_i(v)\, \bar a_i, \quad
        \frac{\partial L}{\partial y_v} = \sum_i \text{bit}_i(v)\, \bar b_i

    with :math:`\bar a, \bar b` the adjoints of the input bits after the reverse sweep.

    Args:
        grad: ``(B, n)`` gradient of the output; x, y: ``(B, n)``; coeffs: ``(B, 16)``; gates, outputs: the
            netlist.

    Returns:
        ``(grad_x, grad_y, grad_coeffs)`` in the inputs' dtype.
    """
    grad, x, y, coeffs = grad.contiguous(), x.contiguous(), y.contiguous(), coeffs.contiguous()
    B, n, m, num_gates, num_wires = _sizes(x, gates, outputs)
    gx, gy, gc = torch.empty_like(x), torch.empty_like(y), torch.empty_like(coeffs)
    if B == 0:
        return gx, gy, gc
    scratch = _scratch(2 * num_wires + 3 * n - 1, B, x.device)
    _circuit_bwd_kernel[(triton.cdiv(B, BLOCK_B),)](
        grad, x, y, coeffs, gx, gy, gc, gates.contiguous(), outputs.contiguous(), scratch, B, n, num_gates,
        num_wires, M=m, K=NUM_OPS, BLOCK_B=BLOCK_B, num_warps=NUM_WARPS, **_GATE_CODES)
    return gx, gy, gc


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py (format: ncl_kernels._triton_targets.compile_target)
# ---------------------------------------------------------------------------------------------------------


def _compile_targets() -> list[dict]:
    """Both kernels at the benchmark size n = 128 (m = 7), fp32 and bf16 storage."""
    consts = {"M": 7, "K": NUM_OPS, "BLOCK_B": BLOCK_B, **_GATE_CODES}
    ints = ["B", "n", "num_gates", "num_wires"]
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        targets.append(compile_target(_circuit_fwd_kernel, dtype, ["x_ptr", "y_ptr", "c_ptr", "out_ptr"], ["w_ptr"],
                                      ints, consts, i32_ptrs=["gates_ptr", "outputs_ptr"], num_warps=NUM_WARPS))
        targets.append(compile_target(_circuit_bwd_kernel, dtype,
                                      ["g_ptr", "x_ptr", "y_ptr", "c_ptr", "gx_ptr", "gy_ptr", "gc_ptr"], ["w_ptr"],
                                      ints, consts, i32_ptrs=["gates_ptr", "outputs_ptr"], num_warps=NUM_WARPS))
    return targets


#: Every ``@triton.jit`` kernel of this module, described for an ahead-of-time compile check.
COMPILE_TARGETS = _compile_targets()

__all__ = ["alu_circuit_mix_fwd", "alu_circuit_mix_bwd", "COMPILE_TARGETS"]
