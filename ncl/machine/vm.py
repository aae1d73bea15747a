"""The discrete VM: plain integers, exactly the semantics of docs/design.md §3 in the hard limit.

It mirrors the soft machine's state one to one (including stale stack slots and the sentinel slot 0 of
each stack), so the two can be compared after every step:

* values are integers in ``0..n-1``; an address is ``value mod C``;
* a stack has ``S`` slots, slot 0 is the "empty" sentinel, and its pointer is the number of items. A push
  onto a full stack (pointer ``S-1``) overwrites the top item; a pop from an empty stack reads slot 0
  (the value 0). Both count as faults;
* CALL pushes the next line index (``L`` when the CALL is on the last line). RET halts when the return stack
  is empty or the address is ``L``;
* running off the last line halts. ``steps`` counts executed instructions, the halting one included;
* ADD, SUB, MUL, INC and DEC wrap around ``Z_n`` (``overflow="wrap"``, the machine's semantics). With
  ``overflow="error"`` a result outside ``0..n-1`` raises :class:`OverflowError` instead, naming the line and the
  operands: to find programs whose integers exceed the machine's value range (the soft machine always wraps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ncl.machine.instructions import Instruction
from ncl.machine.run import DEFAULT_MAX_STEPS
from ncl_kernels.isa import BINARY_FUNCS, OPCODES, UNARY_FUNCS
from ncl_kernels.machine import MachineConfig

#: The return stack's sentinel slot holds no line.
NO_LINE = -1
#: What an arithmetic result outside ``0..n-1`` does: wraps around (the machine's semantics) or raises.
OVERFLOW_MODES = ("wrap", "error")
#: The ops that wrap, with their exact integer results and how to show them (x, y are the operand registers).
_EXACT = {"ADD": (lambda x, y: x + y, "{x} + {y}"), "SUB": (lambda x, y: x - y, "{x} - {y}"),
          "MUL": (lambda x, y: x * y, "{x} * {y}"), "INC": (lambda x, y: x + 1, "{x} + 1"),
          "DEC": (lambda x, y: x - 1, "{x} - 1")}


@dataclass
class VMState:
    """The VM's state. ``rstk`` holds line indices (``NO_LINE`` in the sentinel slot)."""

    ip: int
    regs: list[int]
    mem: list[int]
    dstk: list[int]
    rstk: list[int]
    dsp: int = 0
    rsp: int = 0
    halted: bool = False
    steps: int = 0
    faults: int = 0
    halt_step: int | None = field(default=None)


def initial_state(config: MachineConfig, regs=None, mem=None, ip: int = 0) -> VMState:
    """A fresh state: registers and memory from the lists (zero-padded), empty stacks.

    Args:
        config: machine sizes.
        regs: up to ``K`` ints in ``0..n-1`` for ``r0, r1, …``.
        mem: up to ``C`` ints in ``0..n-1``.
        ip: the start line.
    """
    regs = _padded("regs", regs, config.registers, config.n)
    mem = _padded("mem", mem, config.cells, config.n)
    return VMState(ip=ip, regs=regs, mem=mem, dstk=[0] * config.stack, rstk=[NO_LINE] * config.stack)


def _padded(name, values, size, n):
    values = list(values or [])
    if len(values) > size:
        raise ValueError(f"{name} has {len(values)} entries; the machine has {size}")
    for v in values:
        if not isinstance(v, int) or not 0 <= v < n:
            raise ValueError(f"{name} entries must be ints in 0..{n - 1}, got {v!r}")
    return values + [0] * (size - len(values))


def _push(slots: list[int], sp: int, item: int, state: VMState) -> int:
    if sp == len(slots) - 1:
        state.faults += 1
    else:
        sp += 1
    slots[sp] = item
    return sp


def step(code: list[Instruction], state: VMState, config: MachineConfig, overflow: str = "wrap") -> VMState:
    """Execute one instruction in place (a halted state is left as it is).

    Args:
        code: the program's instructions.
        state: the state, modified in place.
        config: machine sizes.
        overflow: ``"wrap"`` or ``"error"`` (module docstring).

    Returns:
        ``state``.

    Raises:
        OverflowError: with ``overflow="error"``, an arithmetic result outside ``0..n-1`` (the state is left as
            it was before the step).
    """
    if state.halted:
        return state
    n, lines = config.n, len(code)
    ins = code[state.ip]
    name = OPCODES[ins.op]
    x, y = state.regs[ins.a], state.regs[ins.b]
    if overflow == "error" and name in _EXACT:
        exact, shown = _EXACT[name]
        if not 0 <= exact(x, y) < n:
            raise OverflowError(f"line {state.ip} ({name} r{ins.d}, r{ins.a}"
                                f"{'' if name in ('INC', 'DEC') else f', r{ins.b}'}), step {state.steps + 1}: "
                                f"{shown.format(x=x, y=y)} = {exact(x, y)} is outside the machine's values "
                                f"0..{n - 1} (overflow='wrap' would give {exact(x, y) % n})")
    next_ip = state.ip + 1
    state.steps += 1

    if name in BINARY_FUNCS:
        state.regs[ins.d] = BINARY_FUNCS[name](x, y, n)
    elif name in UNARY_FUNCS:
        state.regs[ins.d] = UNARY_FUNCS[name](x, n)
    elif name == "CONST":
        state.regs[ins.d] = ins.imm
    elif name == "MOV":
        state.regs[ins.d] = x
    elif name == "LOAD":
        state.regs[ins.d] = state.mem[x % config.cells]
    elif name == "STORE":
        state.mem[x % config.cells] = y
    elif name == "PUSH":
        state.dsp = _push(state.dstk, state.dsp, x, state)
    elif name == "POP":
        state.regs[ins.d] = state.dstk[state.dsp]
        if state.dsp == 0:
            state.faults += 1
        else:
            state.dsp -= 1
    elif name == "HALT":
        next_ip = None
    elif name == "JMP":
        next_ip = ins.tgt
    elif name == "JZ":
        next_ip = ins.tgt if x == 0 else next_ip
    elif name == "JNZ":
        next_ip = ins.tgt if x != 0 else next_ip
    elif name == "CALL":
        state.rsp = _push(state.rstk, state.rsp, state.ip + 1, state)
        next_ip = ins.tgt
    elif name == "RET":
        next_ip = state.rstk[state.rsp]
        state.rsp = max(state.rsp - 1, 0)
    # NOP: nothing

    if next_ip is None or next_ip == NO_LINE or next_ip >= lines:
        state.halted = True
        state.halt_step = state.steps
    else:
        state.ip = next_ip
    return state


def decode(program) -> list[Instruction]:
    """The instruction list of a :class:`~ncl.machine.Program` (argmax of each field) or of a list."""
    if hasattr(program, "instructions"):
        return program.instructions()
    return [Instruction(*ins) for ins in program]


def run(program, config: MachineConfig | None = None, regs=None, mem=None, ip: int = 0,
        max_steps: int | None = None, overflow: str = "wrap") -> VMState:
    """Run until HALT (or running off the end, or RET with no return address) or ``max_steps``.

    Args:
        program: a :class:`~ncl.machine.Program` or a list of :class:`Instruction`.
        config: machine sizes; the program's own config when ``program`` is a ``Program``.
        regs: initial registers ``r0, r1, …`` (ints, zero-padded).
        mem: initial memory (ints, zero-padded).
        ip: the start line.
        max_steps: at most this many steps (default :data:`~ncl.machine.run.DEFAULT_MAX_STEPS`).
        overflow: ``"wrap"`` (the machine's semantics) or ``"error"``: raise :class:`OverflowError` at the first
            ADD, SUB, MUL, INC or DEC whose exact result is outside ``0..n-1``.

    Returns:
        the final :class:`VMState`.
    """
    check_overflow(overflow)
    config = config or getattr(program, "config", None) or MachineConfig()
    code = decode(program)
    if not 0 <= ip < len(code):
        raise ValueError(f"ip must be a line in 0..{len(code) - 1}, got {ip}")
    max_steps = DEFAULT_MAX_STEPS if max_steps is None else max_steps
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    state = initial_state(config, regs, mem, ip)
    while not state.halted and state.steps < max_steps:
        step(code, state, config, overflow)
    return state


def check_overflow(overflow: str) -> None:
    """ValueError unless ``overflow`` is one of :data:`OVERFLOW_MODES`."""
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(map(repr, OVERFLOW_MODES))}, got {overflow!r}")
