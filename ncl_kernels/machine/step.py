r"""One soft step of the machine (docs/design.md §3), made of the dispatched step ops.

Every instruction runs in superposition, weighted by the ip mass on its line. Every read uses the state at
the start of the step; every write is applied at its end. With ``backend="reference"`` every op is its
pure-PyTorch reference, so :func:`step` is then the executable statement of the semantics; on a fused backend
the same formulas run on the fused kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from ncl_kernels import dispatch
from ncl_kernels._oplib import kernel_op
from ncl_kernels.alu import SKIP_REL
from ncl_kernels.alu.reference import binary_table, unary_table
from ncl_kernels.alu_circuit import alu_circuit_mix
from ncl_kernels.alu_circuit.circuits import binary_circuit, unary_circuit
from ncl_kernels.checks import check_inputs
from ncl_kernels.control import control
from ncl_kernels.isa import ALU_SLICE, OP, VALUE_OPS, fold
from ncl_kernels.machine.config import NORM_EPS, MachineConfig
from ncl_kernels.machine.state import MachineState, ProgramFields
from ncl_kernels.memory import soft_read, soft_write
from ncl_kernels.stack import stack_update

_VALUE_IDX = [OP[o] for o in VALUE_OPS]
#: The floor of the divisor that normalises the written value (docs/design.md §3 step 4; ``kValueMassFloor`` in
#: csrc/cpu/machine_step.h, imported by the Triton kernel). Wherever the write matters the value's mass is 1 up to
#: rounding; on a line that writes (almost) nothing (w ≈ 0: a halted sample, or the ALU skipped by
#: _AluMixSkippingRows) it can be anything, even ~0 or negative, and a NORM_EPS floor would amplify it by up to
#: 1/NORM_EPS, far past what the gate w takes back. With this floor the normalised write is at most twice the
#: unnormalised one.
VALUE_MASS_FLOOR = 0.5
_ALUS = {"table": (binary_table, unary_table), "circuit": (binary_circuit, unary_circuit)}


class StepOutcome(NamedTuple):
    """What one step reports besides the new state. Both ``(B,)``.

    ``halted``: the mass ``h_t`` that halted during the step (HALT, running off the last line, or RET with
    no return address). ``faults``: the stack-fault mass (push or CALL onto a full stack, POP from an
    empty data stack).
    """

    halted: torch.Tensor
    faults: torch.Tensor


def nonneg(x: torch.Tensor) -> torch.Tensor:
    """``max(x, 0)`` of a weight that is a sum of products of nonnegative weights (``w``, ``e_CALL``): it is ≥ 0 up to
    rounding, which the clamp removes, so 0 is a point of its domain and its gradient there is 1 (the gradient
    passes where ``x >= 0``). ``torch.clamp_min``'s is 0 at 0, which on a sharp machine, where every line that
    is not a CALL has ``e_CALL`` exactly 0, would drop the gradient reaching the CALL lines' ip (the CPU
    kernel's hand-written adjoint, ``csrc/cpu/machine_bwd.cpp``, passes it too)."""
    return torch.where(x >= 0, x, torch.zeros_like(x))


def _next(v: torch.Tensor) -> torch.Tensor:
    """Move line ℓ to ℓ+1; the last line's mass runs off the end. ``(B, L) -> (B, L)``."""
    return torch.nn.functional.pad(v[:, :-1], (1, 0))


def _check_alu_inputs(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> None:
    """The checks ``ncl_kernels.alu_mix`` makes (shapes, dtypes, devices), for the direct kernel call below."""
    check_inputs("alu_mix", ("x", x, "B n"), ("y", y, "B n"), ("coeffs", coeffs, "B K"))


class _AluMixSkippingRows(torch.autograd.Function):
    r"""``alu_mix`` whose forward also skips the rows where the ALU's share of the register write is negligible.

    ``alu_mix``'s fused forward skips op ``k`` in a row when :math:`|c_k| \le 2^{-40} \max_{k'} |c_{k'}|` over
    the 16 ALU ops. On a line that is no ALU op (LOAD, JZ, STORE, ...) every ALU weight is ~1e-13 and none
    is below the others, so the kernel computes all 16 tables, MUL, DIV and MOD in O(n²), for nothing.
    Here a row is skipped (gets 0) when every ALU op has :math:`|e_k| \le 2^{-40}`, with :math:`e_k` the
    unnormalised op weights (a β=30 line gives each other op ~9.4e-14). The ALU enters the register write as
    :math:`\bar\delta_i \sum_k e_k\, \mathrm{op}_k(x, y)` (step 4, ``gate = w``), and every register row is a
    distribution (mass 1), so the skip moves a register row by at most
    :math:`16 \cdot 2^{-40}\lVert x\rVert_1\lVert y\rVert_1 = 2^{-36}` in ℓ1: the bound ``alu_mix``
    documents for its own skip, below fp32 resolution and within the fp64 tolerance.

    The backward is ``alu_mix``'s own fused backward on every row (it never skips:
    :math:`\partial L/\partial c_k = \langle g, \mathrm{op}_k(x, y)\rangle` does not vanish with
    :math:`c_k`), so the gradient formulas are exactly those of ``alu_mix``.

    Inputs: ``x, y (B, n)``, ``coeffs (B, 16)`` the weights normalised by ``w``, ``alu_max (B,)``
    :math:`\max_{k \in ALU} |e_k|`, ``backend`` a fused backend name. Output ``(B, n)``.
    """

    @staticmethod
    def forward(ctx, x, y, coeffs, alu_max, backend):
        x, y, coeffs = x.contiguous(), y.contiguous(), coeffs.contiguous()
        ctx.backend = backend
        ctx.save_for_backward(x, y, coeffs)
        fwd = kernel_op("alu_mix", "fwd", backend)
        live = alu_max > SKIP_REL
        rows = live.nonzero().squeeze(1)
        if rows.numel() == x.shape[0]:
            return fwd(x, y, coeffs)
        out = torch.zeros_like(x)
        if rows.numel():
            out[rows] = fwd(x[rows], y[rows], coeffs[rows])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y, coeffs = ctx.saved_tensors
        gx, gy, gc = kernel_op("alu_mix", "bwd", ctx.backend)(grad.contiguous(), x, y, coeffs)
        return gx, gy, gc, None, None


def step(state: MachineState, fields: ProgramFields, config: MachineConfig, *,
         backend: str | None = None) -> tuple[MachineState, StepOutcome]:
    r"""One step of the soft machine.

    .. math::
        e = ip^\top \mathrm{op},\quad \bar\alpha = ip^\top a / \rho,\ \dots,\quad
        x = \textstyle\sum_k \bar\alpha_k\, \text{reg}_k,\quad
        v = \textstyle\sum_{k \in \text{value ops}} (e_k / w)\, \text{out}_k,\quad
        \hat v = v / \max(\textstyle\sum_c v_c, \tfrac12),\quad
        \text{reg}_i' = (1 - \bar\delta_i w)\,\text{reg}_i + \bar\delta_i w\, \hat v

    followed by the memory write, the stacks, the ip update and halting (docs/design.md §3 steps 1-8).

    The banks (registers, memory, stacks) go through the dispatched ops ``soft_read``, ``soft_write`` and
    ``stack_update``; the ip update and halting mass are one ``control`` call; with a fused backend the 16
    binary and unary ops are one ``alu_mix`` call (``alu="table"``) or one ``alu_circuit_mix`` call
    (``alu="circuit"``). So the fused backends run the hot path, while
    ``backend="reference"`` (or ``NCL_BACKEND=reference``) runs the plain statement of every formula.

    Args:
        state: the state at the start of the step (shapes in :class:`MachineState`).
        fields: the program's fields (shapes in :class:`ProgramFields`), same dtype as the state.
        config: sizes and the ALU choice.
        backend: force ``"reference" | "cpp" | "triton" | "cuda"`` for every kernel op of the step; default:
            :func:`ncl_kernels.dispatch.select` (``NCL_BACKEND``, then the fastest available).

    Returns:
        ``(state', outcome)``: the state after the step, and its halted and fault masses ``(B,)``.
    """
    ip, reg, mem = state.ip, state.reg, state.mem

    # 1. Fields. e keeps the running mass ρ; the register/immediate fields are renormalised by it, so a
    #    half-halted machine still reads whole values.
    e = ip @ fields.op  # (B, O)
    inv_rho = 1.0 / ip.sum(-1).clamp_min(NORM_EPS)
    alpha, beta, delta, z = ((ip @ f) * inv_rho[:, None] for f in (fields.a, fields.b, fields.d, fields.imm))

    # 2. Operands.
    operands = soft_read(reg, torch.stack([alpha, beta], dim=1), backend=backend)
    x, y = operands[:, 0], operands[:, 1]
    address = fold(x, config.cells)

    # 3. ALU: every value-producing op, mixed by its weight. Rounding can leave w a tiny negative number on
    #    lines that are not value ops; clamped, such a line writes nothing instead of dividing by the guard
    #    and blowing up. The mixture is normalised by w (coefficients c = e / w); soft_write's gate w puts
    #    the mass back, so the write is reg_i <- (1 - δ_i w) reg_i + δ_i w v̂ with v̂ = Σ_k c_k out_k normalised.
    w = nonneg(e[:, _VALUE_IDX].sum(-1))
    c = e / w.clamp_min(NORM_EPS)[:, None]  # (B, O)
    load = soft_read(mem, address[:, None, :], backend=backend)[:, 0]
    pop = soft_read(state.dstk, state.dsp[:, None, :], backend=backend)[:, 0]
    chosen = dispatch.select(x.device, x.dtype, backend)
    if config.alu == "circuit" and chosen != "reference":
        # One fused call runs the 16 circuits as a netlist: no (B, 16, n) per-op outputs, no per-gate tensors.
        mixed = alu_circuit_mix(x, y, c[:, ALU_SLICE], backend=chosen)
    elif chosen != "reference":
        # One fused call for the 13 binary and 3 unary tables: no (B, 16, n) per-op outputs, and rows
        # whose line is no ALU op skip the forward (_AluMixSkippingRows).
        dispatch.check_deterministic("alu_mix", chosen, x.device)
        _check_alu_inputs(x, y, c[:, ALU_SLICE])
        mixed = _AluMixSkippingRows.apply(x, y, c[:, ALU_SLICE], e[:, ALU_SLICE].detach().abs().amax(-1), chosen)
    else:
        # The spec as docs/design.md §3 states it: every op's output, then the mixture. For the table ALU this is
        # the reference (alu_mix's reference scatters the weighted (B, 13·n²) outer product instead, which
        # measured 2x slower in forward+backward on CPU, so the eager path keeps the per-op tables).
        binary, unary = _ALUS[config.alu]
        outs = torch.cat([binary(x, y), unary(x)], dim=1)  # (B, 16, n)
        mixed = torch.einsum("bk,bkn->bn", c[:, ALU_SLICE], outs)
    # CONST, MOV, LOAD and POP are a scaled row each: cheaper added here than passed to a kernel.
    value = (mixed + c[:, OP["CONST"], None] * z + c[:, OP["MOV"], None] * x + c[:, OP["LOAD"], None] * load
             + c[:, OP["POP"], None] * pop)
    # The value written is normalised to mass 1 (docs/design.md §3 step 4). On exact distributions its mass is 1
    # already; numerically the bilinear ops (binary ALU ops, LOAD, POP) output the product of their operands'
    # masses, so without it a loop feeding a result back into its operands multiplies the rounding error.
    value = value / value.sum(-1, keepdim=True).clamp_min(VALUE_MASS_FLOOR)

    # 4. Register write.  5. Memory write (STORE: address from a, value from b).
    new_reg = soft_write(reg, delta, value, w, backend=backend)
    new_mem = soft_write(mem, address, y, e[:, OP["STORE"]], backend=backend)

    # 6. Stacks. The return address of a CALL on line ℓ is line ℓ+1 (no mass if ℓ is the last line).
    dstk, dsp, d_over, d_under = stack_update(state.dstk, state.dsp, e[:, OP["PUSH"]], e[:, OP["POP"]], x,
                                              backend=backend)
    e_call = nonneg(e[:, OP["CALL"]])  # as w above: a negative rounding residue pushes nothing
    ret_item = _next(ip * fields.op[:, OP["CALL"]]) / e_call.clamp_min(NORM_EPS)[:, None]
    rstk, rsp, r_over, _ = stack_update(state.rstk, state.rsp, e_call, e[:, OP["RET"]], ret_item, backend=backend)

    # 7. Control and 8. halting (HALT, running off the last line, and RET with nowhere to return to), one
    #    fused op: χ0 is the probability that operand a is 0, and the return-stack top is read inside.
    new_ip, halted = control(ip, fields.op, x[:, 0], fields.tgt, state.rstk, state.rsp, backend=backend)
    new_state = MachineState(new_ip, new_reg, new_mem, dstk, dsp, rstk, rsp)
    return new_state, StepOutcome(halted, d_over + d_under + r_over)
