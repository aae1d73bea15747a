r"""The machine step and run in their fastest plain-PyTorch form: the best-eager baseline.

The same math as :func:`ncl_kernels.machine.step.step` with ``backend="reference"`` and
:func:`ncl_kernels.machine.reference.advance_steps` (which stay the readable statement of the semantics and the
correctness oracle), exact against them in float64 (``tests/test_machine_eager.py``), written for speed:

* the table ALU is :func:`ncl_kernels.alu.eager.mix`: ADD/SUB/INC/DEC (and MOV) one circulant product,
  MUL/DIV/MOD one batch-last ``index_add``, MIN/MAX and the comparisons from prefix and suffix sums, instead of
  the reference's 13 ``scatter_add`` s over ``(B, 13, n²)`` a step;
* the program's fields are packed once per run (:func:`pack`) so a step reads every field, the running mass
  and the value-op mass in one ``(B, L) @ (L, ·)`` product, and the control step's per-line coefficients
  are one small matrix product instead of a ``(B, L, 29)`` tensor;
* the writes are :func:`ncl_kernels.memory.eager.write` (``torch.lerp``, with its backward written out) and the
  halting accumulation an in-place ``addcmul_``;
* the two stacks' pointers move together as one ``(B, 2, S)`` tensor.

It computes the same sums in a different order, so values and gradients agree to rounding, not bit for bit.
It runs on any device and float dtype, with autograd (a user can backpropagate through it, and
``torch.compile`` it: :func:`step_packed` is the unit to compile, its tables passed in by :func:`pack`). The
circuit ALU (``config.alu == "circuit"``) keeps its reference gates; everything else is as above.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from ncl_kernels.alu import eager as alu_eager
from ncl_kernels.alu_circuit.circuits import binary_circuit, unary_circuit
from ncl_kernels.checks import check_inputs
from ncl_kernels.isa import ALU_SLICE, NUM_OPS, OP, SEQUENTIAL_OPS, VALUE_OPS, fold
from ncl_kernels.machine.config import NORM_EPS, MachineConfig
from ncl_kernels.machine.reference import halted
from ncl_kernels.machine.state import Carry, MachineState, ProgramFields, initial_carry
from ncl_kernels.machine.step import VALUE_MASS_FLOOR, StepOutcome, nonneg
from ncl_kernels.memory.eager import write

__all__ = ["Packed", "pack", "step_packed", "step", "advance_steps", "run"]

#: Columns of :attr:`Packed.lines` after the ``NUM_OPS`` op weights: the line's value-op mass
#: :math:`\sum_{k \in \text{value ops}} op_k`, and 1 (so ``ip @ lines`` also gives the running mass ρ).
_W, _RHO = NUM_OPS, NUM_OPS + 1
_FIRST_FIELD = NUM_OPS + 2


class Packed(NamedTuple):
    """A program's fields laid out for :func:`step_packed`, built once per run by :func:`pack`.

    Shapes: ``lines (L, O + 2 + 3K + n)``: ``op``, the value-op mass, 1, ``a``, ``b``, ``d``, ``imm``;
    ``control (4, L)``: per line the weights of JMP + CALL, of the sequential ops, of JZ and of JNZ;
    ``call (L,)``: ``op[:, CALL]``; ``tgt (L, L)``; ``branch (2, 2, 4)``: :data:`_BRANCH_BASE` and
    :data:`_BRANCH_SLOPE`; ``alu``: the table ALU's constants (:func:`ncl_kernels.alu.eager.tables_for`), ``None``
    for the circuit ALU.
    """

    lines: torch.Tensor
    control: torch.Tensor
    call: torch.Tensor
    tgt: torch.Tensor
    branch: torch.Tensor
    alu: alu_eager.Tables | None


#: ``[[1, 0, c, 1-c], [0, 1, 1-c, c]] = _BRANCH_BASE + c · _BRANCH_SLOPE``: the weights of ``control``'s rows in
#: the jumped and the moved-on mass, given χ0 = c.
_BRANCH_BASE = ((1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 1.0, 0.0))
_BRANCH_SLOPE = ((0.0, 0.0, 1.0, -1.0), (0.0, 0.0, -1.0, 1.0))


def pack(fields: ProgramFields, config: MachineConfig) -> Packed:
    """Lay out ``fields`` (shapes in :class:`~ncl_kernels.machine.state.ProgramFields`) for :func:`step_packed`;
    differentiable in the fields."""
    op = fields.op
    value_mass = op[:, [OP[o] for o in VALUE_OPS]].sum(-1, keepdim=True)
    lines = torch.cat([op, value_mass, torch.ones_like(value_mass), fields.a, fields.b, fields.d, fields.imm], -1)
    control = torch.stack([op[:, OP["JMP"]] + op[:, OP["CALL"]], op[:, [OP[o] for o in SEQUENTIAL_OPS]].sum(-1),
                           op[:, OP["JZ"]], op[:, OP["JNZ"]]])
    branch = torch.tensor((_BRANCH_BASE, _BRANCH_SLOPE), dtype=op.dtype, device=op.device)
    alu = alu_eager.tables_for(config.n, op.dtype, str(op.device)) if config.alu == "table" else None
    return Packed(lines, control, op[:, OP["CALL"]], fields.tgt, branch, alu)


def _move_pointers(ptr: torch.Tensor, push: torch.Tensor, pop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The saturating pointer moves of :mod:`ncl_kernels.stack.reference` on ``ptr (..., S)`` with ``push,
    pop (..., 1)``: returns ``(p', up(p))``, :math:`p' = (1-u-o)\,p + u\,\mathrm{up}(p) + o\,\mathrm{down}(p)`."""
    up = F.pad(ptr[..., :-1], (1, 0))
    up[..., -1] += ptr[..., -1]  # a push onto a full stack stays on top
    down = F.pad(ptr[..., 1:], (0, 1))
    down[..., 0] += ptr[..., 0]  # a pop from an empty stack stays at the bottom
    return (1 - push - pop) * ptr + push * up + pop * down, up


def step_packed(state: MachineState, packed: Packed, config: MachineConfig) -> tuple[MachineState, StepOutcome]:
    r"""One step of the soft machine (docs/design.md §3 steps 1-8), the same function as
    :func:`ncl_kernels.machine.step.step`; ``packed`` from :func:`pack`. No input checks.

    Args:
        state: the state at the start of the step (shapes in :class:`~ncl_kernels.machine.state.MachineState`).
        packed: the program, :func:`pack` of its fields.
        config: sizes and the ALU choice.

    Returns:
        ``(state', outcome)``: the state after the step, and its halted and fault masses ``(B,)``.
    """
    ip, reg, mem = state.ip, state.reg, state.mem
    batch, registers, n = reg.shape

    # 1. Fields: every field, w and ρ in one product; the register/immediate fields renormalised by ρ.
    read = ip @ packed.lines
    e = read[:, :NUM_OPS]
    w = nonneg(read[:, _W])  # as the reference: a rounding residue below 0 writes nothing
    inv_rho = 1.0 / read[:, _RHO].clamp_min(NORM_EPS)
    fields = read[:, _FIRST_FIELD:] * inv_rho[:, None]
    delta, z = fields[:, 2 * registers:3 * registers], fields[:, 3 * registers:]

    # 2. Operands.
    x, y = torch.bmm(fields[:, :2 * registers].view(batch, 2, registers), reg).unbind(1)
    address = x if n == config.cells else fold(x, config.cells)

    # 3. The value: every value-producing op, mixed by c = e / w, then normalised to mass 1.
    c = e / w.clamp_min(NORM_EPS)[:, None]
    load = torch.bmm(address[:, None, :], mem)[:, 0]
    pop = torch.bmm(state.dsp[:, None, :], state.dstk)[:, 0]
    if config.alu == "table":
        value = alu_eager.mix(x, y, c[:, ALU_SLICE], packed.alu, mov=c[:, OP["MOV"]])
    else:
        outs = torch.cat([binary_circuit(x, y), unary_circuit(x)], dim=1)  # the reference's gates
        value = torch.bmm(c[:, None, ALU_SLICE], outs)[:, 0].addcmul(c[:, OP["MOV"], None], x)
    value = (value.addcmul(c[:, OP["CONST"], None], z).addcmul(c[:, OP["LOAD"], None], load)
             .addcmul(c[:, OP["POP"], None], pop))
    value = value / value.sum(-1, keepdim=True).clamp_min(VALUE_MASS_FLOOR)

    # 4. Register write.  5. Memory write (STORE: address from a, value from b).
    new_reg = write(reg, w[:, None] * delta, value)
    new_mem = write(mem, e[:, OP["STORE"], None] * address, y)

    # 6. Stacks, both pointers at once. The return address of a CALL on line l is line l+1.
    e_call = nonneg(e[:, OP["CALL"]])  # as the reference: a negative rounding residue pushes nothing
    push = torch.stack([e[:, OP["PUSH"]], e_call], 1)[:, :, None]
    pops = e[:, [OP["POP"], OP["RET"]], None]
    ptrs, raised = _move_pointers(torch.stack([state.dsp, state.rsp], 1), push, pops)
    written = push * raised  # (B, 2, S)
    ret_item = F.pad((ip * packed.call)[:, :-1], (1, 0)) / e_call.clamp_min(NORM_EPS)[:, None]
    dstk = write(state.dstk, written[:, 0], x)
    rstk = write(state.rstk, written[:, 1], ret_item)
    faults = (push[:, :, 0] * torch.stack([state.dsp[:, -1], state.rsp[:, -1]], 1)).sum(-1) \
        + e[:, OP["POP"]] * state.dsp[:, 0]

    # 7. Control and 8. halting. χ0 = P(a = 0) picks JZ's and JNZ's branches.
    chi0 = x[:, 0, None, None]
    branch = packed.branch[0] + chi0 * packed.branch[1]
    jumped, moved_on = (torch.matmul(branch, packed.control) * ip[:, None, :]).unbind(1)
    ret_mass = e[:, OP["RET"]]
    ret_to = torch.bmm(state.rsp[:, None, :], state.rstk)[:, 0]  # its missing mass is "no return address"
    new_ip = torch.addmm(F.pad(moved_on[:, :-1], (1, 0)), jumped, packed.tgt).addcmul(ret_mass[:, None], ret_to)
    halted_mass = e[:, OP["HALT"]] + moved_on[:, -1] + ret_mass * (1 - ret_to.sum(-1))
    new_state = MachineState(new_ip, new_reg, new_mem, dstk, ptrs[:, 0], rstk, ptrs[:, 1])
    return new_state, StepOutcome(halted_mass, faults)


def step(state: MachineState, fields: ProgramFields, config: MachineConfig, *,
         backend: str | None = None) -> tuple[MachineState, StepOutcome]:
    """:func:`step_packed` on unpacked fields, with the signature of :func:`ncl_kernels.machine.step.step`, so it
    can be a run's ``step_fn`` (``ncl.machine.run.machine_run``). ``backend`` is accepted and ignored: this step
    is plain PyTorch on the tensors' device."""
    return step_packed(state, pack(fields, config), config)


def advance_steps(carry: Carry, first: int, count: int, fields: ProgramFields, config: MachineConfig,
                  step_fn: Callable | None = None) -> tuple[Carry, int]:
    r"""Run steps ``first + 1 .. first + count``, stopping before a step once every sample has halted: the same
    run as :func:`ncl_kernels.machine.reference.advance_steps`, with the fields packed once.

    .. math:: \text{acc}_R \mathrel{+}= h_t\, R(\text{state}_t),\qquad
              \text{expected} \mathrel{+}= t\, h_t,\qquad \text{faults} \mathrel{+}= f_t

    Args:
        carry: the carry after step ``first`` (shapes in :class:`~ncl_kernels.machine.state.Carry`).
        first: steps already run.
        count: at most this many steps.
        fields: the program's fields, in the state's dtype.
        config: machine sizes.
        step_fn: a replacement for :func:`step_packed` with its signature (the benchmark passes
            ``torch.compile(step_packed)``); default ``step_packed``.

    Returns:
        ``(carry', done)``: the carry after the last step run, and how many steps ran.
    """
    step_fn = step_packed if step_fn is None else step_fn
    packed = pack(fields, config)
    state, acc_reg, acc_mem, expected, faults = carry
    # Accumulated in place (no backward reads an accumulator), into copies: the caller may keep its carry.
    acc_reg, acc_mem = acc_reg.clone(), acc_mem.clone()
    done = 0
    for t in range(first + 1, first + count + 1):
        if halted(state, config):
            break
        state, outcome = step_fn(state, packed, config)
        h = outcome.halted
        acc_reg.addcmul_(h[:, None, None], state.reg)
        acc_mem.addcmul_(h[:, None, None], state.mem)
        expected = expected + t * h
        faults = faults + outcome.faults
        done += 1
    return Carry(state, acc_reg, acc_mem, expected, faults), done


def run(fields: ProgramFields, config: MachineConfig, ip: torch.Tensor, reg: torch.Tensor, mem: torch.Tensor,
        max_steps: int, *, step_fn: Callable | None = None) -> tuple[Carry, int]:
    r"""The whole run, best-eager: from the initial carry (empty stacks, zero accumulators) until every sample
    has halted (``ρ < halt_eps``) or ``max_steps``, with plain autograd through every step (full BPTT).

    The readouts are then ``ncl.machine.run.finish`` of the result (the halting mixtures plus the mass still
    running), as for the other paths.

    Args:
        fields: the program's fields ``op (L, 29)``, ``a, b, d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``, in
            the state's dtype.
        config: machine sizes.
        ip: ``(B, L)`` start distribution.
        reg: ``(B, K, n)`` registers.
        mem: ``(B, C, n)`` memory.
        max_steps: at most this many steps (``>= 0``).
        step_fn: as in :func:`advance_steps`.

    Returns:
        ``(carry, steps)``: the carry after the last step, and the steps run.

    Raises:
        ValueError: naming the argument, when a shape, dtype or device does not fit, or ``max_steps`` is not
            an int ``>= 0``.
    """
    check_inputs("machine run", ("ip", ip, "B L"), ("reg", reg, "B K n"), ("mem", mem, "B C n"),
                 ("fields.op", fields.op, "L O"), ("fields.a", fields.a, "L K"), ("fields.b", fields.b, "L K"),
                 ("fields.d", fields.d, "L K"), ("fields.imm", fields.imm, "L n"), ("fields.tgt", fields.tgt, "L L"))
    for name, t, axis, want in (("fields.op", fields.op, 1, NUM_OPS), ("reg", reg, 1, config.registers),
                                ("reg", reg, 2, config.n), ("mem", mem, 1, config.cells)):
        if t.shape[axis] != want:
            raise ValueError(f"machine run: {name} has shape {tuple(t.shape)}, which does not fit the config "
                             f"(n={config.n}, C={config.cells}, K={config.registers}, {NUM_OPS} opcodes)")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    return advance_steps(initial_carry(ip, reg, mem, config.stack), 0, max_steps, fields, config, step_fn)
