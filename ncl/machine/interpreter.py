r"""The reference interpreter: one soft step of DESIGN §3, and the adaptive-depth run loop.

Every instruction runs in superposition, weighted by the ip mass on its line. Every read uses the state at
the start of the step; every write is applied at its end.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ncl.machine import stack as stacks
from ncl.machine._ops import soft_read, soft_write
from ncl.machine.alu_circuit import binary_circuit, unary_circuit
from ncl.machine.alu_table import binary_table, unary_table
from ncl.machine.config import NORM_EPS, MachineConfig
from ncl.machine.opcodes import OP, SEQUENTIAL_OPS, VALUE_OPS
from ncl.machine.state import MachineState, ProgramFields, initial_state
from ncl.machine.values import fold

_VALUE_IDX = [OP[o] for o in VALUE_OPS]
_SEQ_IDX = [OP[o] for o in SEQUENTIAL_OPS]
_ALUS = {"table": (binary_table, unary_table), "circuit": (binary_circuit, unary_circuit)}


class StepOutcome(NamedTuple):
    """What one step reports besides the new state. Both ``(B,)``.

    ``halted``: the mass ``h_t`` that halted during the step (HALT, running off the last line, or RET with
    no return address). ``faults``: the stack-fault mass (push or CALL onto a full stack, POP from an
    empty data stack).
    """

    halted: torch.Tensor
    faults: torch.Tensor


def _next(v: torch.Tensor) -> torch.Tensor:
    """Move line ℓ to ℓ+1; the last line's mass runs off the end. ``(B, L) -> (B, L)``."""
    return torch.nn.functional.pad(v[:, :-1], (1, 0))


def step(state: MachineState, fields: ProgramFields, config: MachineConfig) -> tuple[MachineState, StepOutcome]:
    r"""One step of the soft machine.

    .. math::
        e = ip^\top \mathrm{op},\quad \bar\alpha = ip^\top a / \rho,\ \dots,\quad
        x = \textstyle\sum_k \bar\alpha_k\, \text{reg}_k,\quad
        \text{out} = \textstyle\sum_{k \in \text{value ops}} e_k\, \text{out}_k,\quad
        \text{reg}_i' = (1 - \bar\delta_i w)\,\text{reg}_i + \bar\delta_i\, \text{out}

    followed by the memory write, the stacks, the ip update and halting (DESIGN §3 steps 1-8).

    Args:
        state: the state at the start of the step (shapes in :class:`MachineState`).
        fields: the program's fields (shapes in :class:`ProgramFields`), same dtype as the state.
        config: sizes and the ALU choice.

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
    operands = soft_read(reg, torch.stack([alpha, beta], dim=1))
    x, y = operands[:, 0], operands[:, 1]
    address = fold(x, config.cells)

    # 3. ALU: every value-producing op, then their mixture.
    binary, unary = _ALUS[config.alu]
    load = soft_read(mem, address[:, None, :])
    pop = stacks.top(state.dstk, state.dsp)[:, None]
    outs = torch.cat([z[:, None], x[:, None], binary(x, y), unary(x), load, pop], dim=1)  # (B, V, n)
    e_val = e[:, _VALUE_IDX]
    # Rounding can leave w a tiny negative number on lines that are not value ops; clamped, such a line
    # writes nothing instead of dividing by the guard and blowing up.
    w = e_val.sum(-1).clamp_min(0)
    # The written value is the mixture normalised by w; soft_write's gate w puts the mass back, so this
    # is reg_i <- (1 - δ_i w) reg_i + δ_i Σ_k e_k out_k.
    value = torch.einsum("bk,bkn->bn", e_val / w.clamp_min(NORM_EPS)[:, None], outs)

    # 4. Register write.  5. Memory write (STORE: address from a, value from b).
    new_reg = soft_write(reg, delta, value, w)
    new_mem = soft_write(mem, address, y, e[:, OP["STORE"]])

    # 6. Stacks. The return address of a CALL on line ℓ is line ℓ+1 (no mass if ℓ is the last line).
    q = ip[:, :, None] * fields.op[None]  # (B, L, O): q_k per line
    dstk, dsp, d_over, d_under = stacks.update(state.dstk, state.dsp, e[:, OP["PUSH"]], e[:, OP["POP"]], x)
    e_call = e[:, OP["CALL"]].clamp_min(0)  # as w above: a negative rounding residue pushes nothing
    ret_item = _next(q[:, :, OP["CALL"]]) / e_call.clamp_min(NORM_EPS)[:, None]
    rstk, rsp, r_over, _ = stacks.update(state.rstk, state.rsp, e_call, e[:, OP["RET"]], ret_item)

    # 7. Control. χ0 is the probability that operand a is 0.
    chi0 = x[:, :1]
    q_jz, q_jnz = q[:, :, OP["JZ"]], q[:, :, OP["JNZ"]]
    jumped = q[:, :, OP["JMP"]] + q[:, :, OP["CALL"]] + chi0 * q_jz + (1 - chi0) * q_jnz
    moved_on = q[:, :, _SEQ_IDX].sum(-1) + (1 - chi0) * q_jz + chi0 * q_jnz
    ret_mass = q[:, :, OP["RET"]].sum(-1)
    ret_to = stacks.top(state.rstk, state.rsp)  # (B, L); its missing mass is "no return address"
    new_ip = _next(moved_on) + jumped @ fields.tgt + ret_mass[:, None] * ret_to

    # 8. Halting: HALT, running off the last line, and RET with nowhere to return to.
    halted = q[:, :, OP["HALT"]].sum(-1) + moved_on[:, -1] + ret_mass * (1 - ret_to.sum(-1))
    new_state = MachineState(new_ip, new_reg, new_mem, dstk, dsp, rstk, rsp)
    return new_state, StepOutcome(halted, d_over + d_under + r_over)


class RunResult(NamedTuple):
    """The result of a soft run (:meth:`ncl.machine.Program.run`).

    Fields: ``r0 (B, n)`` and ``regs (B, K, n)`` and ``mem (B, C, n)``: halting mixtures of the readouts;
    ``unhalted (B,)``: the running mass ``ρ_T`` left at the end; ``expected_steps (B,)``:
    ``Σ_t t·h_t + T·ρ_T`` (the ponder cost); ``steps``: ``T``, the steps actually run;
    ``overflow (B,)``: the expected number of stack faults.
    """

    r0: torch.Tensor
    regs: torch.Tensor
    mem: torch.Tensor
    unhalted: torch.Tensor
    expected_steps: torch.Tensor
    steps: int
    overflow: torch.Tensor


def run(fields: ProgramFields, config: MachineConfig, ip: torch.Tensor, reg: torch.Tensor,
        mem: torch.Tensor, max_steps: int) -> RunResult:
    r"""Run the soft machine until every sample has halted (``ρ < halt_eps``) or ``max_steps``.

    .. math:: \hat R = \sum_{t=1}^{T} h_t\, R(\text{state}_t) + \rho_T\, R(\text{state}_T)

    for the readouts ``R`` = registers and memory, where ``state_t`` is the state after step ``t``.

    Args:
        fields: the program's fields, in the state's dtype.
        config: machine sizes.
        ip: ``(B, L)`` start distribution.
        reg: ``(B, K, n)`` registers.
        mem: ``(B, C, n)`` memory.
        max_steps: at most this many steps (``>= 0``).

    Returns:
        a :class:`RunResult`.
    """
    state = initial_state(ip, reg, mem, config.stack)
    acc_reg = torch.zeros_like(reg)
    acc_mem = torch.zeros_like(mem)
    expected = reg.new_zeros(reg.shape[0])
    faults = reg.new_zeros(reg.shape[0])
    steps = 0
    for t in range(1, max_steps + 1):
        if bool(state.ip.sum(-1).max() < config.halt_eps):
            break
        state, outcome = step(state, fields, config)
        h = outcome.halted
        acc_reg = acc_reg + h[:, None, None] * state.reg
        acc_mem = acc_mem + h[:, None, None] * state.mem
        expected = expected + t * h
        faults = faults + outcome.faults
        steps = t
    rho = state.ip.sum(-1)
    regs = acc_reg + rho[:, None, None] * state.reg
    mem_out = acc_mem + rho[:, None, None] * state.mem
    return RunResult(regs[:, 0], regs, mem_out, rho, expected + steps * rho, steps, faults)
