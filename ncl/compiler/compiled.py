"""``CompiledFunction``: a compiled Python function, its program, and ways to run it."""

from __future__ import annotations

from ncl.machine import ExecResult, MachineConfig, Program, RunResult, vm
from ncl.machine.horizon import Horizon, hard_limit_horizon

from .errors import ExecutionError

#: The most VM steps ``execute(max_steps=None)`` tries before declaring that the program does not halt.
STEP_CAP = 200_000


class CompiledFunction:
    """
    A Python function compiled for the machine (``ncl.compile``).

    Its program starts with an entry stub at line 0 (``CALL f; HALT``), so running the program from line 0 with
    the arguments in r1, r2, ... computes ``f`` and halts with the result in r0.

    Args:
        name: The function's name.
        params: Its parameter names.
        results: 1, or 2 for a function returning a pair (r0 and r1).
        program: The assembled ``Program`` (a trainable ``nn.Module``).
        assembly: The assembly text the program was built from.
        functions: Names of every function in the program (the function first, then what it calls).
        overflow: What the integer runs (``execute``, ``trace``, calling it) do when an ADD, SUB, MUL, INC or DEC
            leaves ``0..n-1``: ``"wrap"`` around Z_n, the machine's semantics, or ``"error"``: raise
            ``OverflowError`` naming the function's arguments, the line and the operands, to find inputs whose
            integers exceed the machine's range. The batched soft ``run`` always wraps.
    """

    def __init__(self, name: str, params: list[str], results: int, program: Program, assembly: str,
                 functions: list[str], overflow: str = "wrap") -> None:
        vm.check_overflow(overflow)
        self.name = name
        self.params = list(params)
        self.results = results
        self.program = program
        self.assembly = assembly
        self.functions = list(functions)
        self.overflow = overflow

    @property
    def config(self) -> MachineConfig:
        """The machine the program was compiled for."""
        return self.program.config

    def execute(self, *args: int, mem: list[int] | None = None, engine: str = "soft",
                max_steps: int | None = None) -> ExecResult:
        """
        Calls the function on integers.

        Args:
            args: One int in ``0..n-1`` per parameter; they go to r1, r2, ...
            mem: The initial tape (ints, zero-padded to the machine's cells), or None for zeros.
            engine: ``"soft"`` (the differentiable machine on one-hot inputs, read back by argmax) or ``"vm"``
                (the discrete VM).
            max_steps: A step bound. None runs the discrete VM first (up to ``STEP_CAP`` steps) and gives the soft
                machine exactly the steps the VM needed to halt.

        Returns:
            The machine's ``ExecResult``: ``value`` (r0; for a pair, the second result is ``regs[1]``), ``regs``,
            ``mem``, ``steps``, ``halted``.

        Raises:
            ValueError: Wrong number of arguments, or arguments outside ``0..n-1``.
            ExecutionError: With ``max_steps=None``: the VM does not halt within ``STEP_CAP`` steps, or a stack
                overflows (recursion deeper than the machine's stacks).
            OverflowError: With ``overflow="error"``: a value left ``0..n-1`` (checked on the VM, also before a
                soft run).
        """
        self._check_args(args)
        if max_steps is not None:
            if self.overflow == "error":
                self._vm(args, mem, max_steps)
            return self.program.execute(*args, mem=mem, engine=engine, max_steps=max_steps)
        if engine not in ("soft", "vm"):
            raise ValueError(f"engine must be 'soft' or 'vm', got {engine!r}")
        state = self.trace(*args, mem=mem)
        if engine == "vm":
            return ExecResult(state.regs[0], state.regs, state.mem, state.steps, 1.0)
        return self.program.execute(*args, mem=mem, engine="soft", max_steps=state.steps)

    def trace(self, *args: int, mem: list[int] | None = None, max_steps: int = STEP_CAP) -> vm.VMState:
        """
        Runs the discrete VM to the end, checking that the run is well-formed.

        Args:
            args: The arguments (r1, r2, ...).
            mem: The initial tape.
            max_steps: The step cap.

        Returns:
            The VM's final state (``steps`` is the halting step).

        Raises:
            ExecutionError: No halt within ``max_steps``, or a stack fault.
            OverflowError: With ``overflow="error"``: a value left ``0..n-1``.
        """
        self._check_args(args)
        cfg = self.config
        state = self._vm(args, mem, max_steps)
        if state.faults:
            raise ExecutionError(f"{self.name}{tuple(args)}: stack overflow after {state.steps} steps; "
                                 f"the machine's stacks hold {cfg.stack - 1} items (return addresses and saved "
                                 "registers), so the recursion is too deep for MachineConfig.stack="
                                 f"{cfg.stack}")
        if not state.halted:
            raise ExecutionError(f"{self.name}{tuple(args)} did not halt within {max_steps} steps; pass "
                                 "max_steps explicitly to run a bounded number of steps")
        return state

    def _check_args(self, args: tuple) -> None:
        # Named here: the VM would report an argument by its register ("regs entries ..."), which is not the
        # caller's word for it.
        if len(args) != len(self.params):
            raise ValueError(f"{self.name}() takes {len(self.params)} argument(s) "
                             f"({', '.join(self.params)}), got {len(args)}")
        if len(args) >= self.config.registers:
            raise ValueError(f"{len(args)} arguments do not fit in r1..r{self.config.registers - 1}")
        n = self.config.n
        for param, value in zip(self.params, args):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
                raise ValueError(f"{self.name}() argument {param} must be an int in 0..{n - 1} (the machine's "
                                 f"values, MachineConfig.n={n}), got {value!r}")

    def _vm(self, args: tuple, mem: list[int] | None, max_steps: int) -> vm.VMState:
        try:
            return vm.run(self.program, self.config, regs=[0, *args], mem=mem, max_steps=max_steps,
                          overflow=self.overflow)
        except OverflowError as err:
            raise OverflowError(f"{self.name}({', '.join(map(str, args))}): {err}") from None

    def horizon(self, *args: int, mem: list[int] | None = None, dtype=None, tol: float = 1e-4) -> Horizon:
        """
        How long the soft machine stays in the hard limit on these inputs (``ncl.machine.horizon``): the soft
        run beside the VM, step by step, until the VM halts or the soft state deviates by more than ``tol``.

        Args:
            args: The arguments (r1, r2, ...).
            mem: The initial tape.
            dtype: The soft machine's dtype; the program's own if None.
            tol: The deviation that counts as leaving the hard limit.

        Returns:
            The machine's ``Horizon``: ``steps``, ``deviation``, and ``halted`` (True: exact up to the VM's halt).
        """
        dtype = dtype if dtype is not None else self.program.op_logits.dtype
        return hard_limit_horizon(self.program, [0, *args], mem, dtype=dtype, tol=tol,
                                  max_steps=self.trace(*args, mem=mem).steps)

    def run(self, regs, mem, ip=None, max_steps: int | None = None) -> RunResult:
        """
        The batched soft run on distributions (``Program.run``): arguments are the distributions of r1, r2, ...

        Args:
            regs: ``(B, K, n)`` register distributions.
            mem: ``(B, C, n)`` tape distributions.
            ip: ``(B, L)`` start distribution; line 0 (the entry stub) if None.
            max_steps: As in ``Program.run`` (its default if None; it stops early once every sample has halted).

        Returns:
            The ``RunResult``.
        """
        return self.program.run(regs, mem, ip=ip, max_steps=max_steps)

    def __call__(self, *args: int, mem: list[int] | None = None, engine: str = "vm") -> int:
        """The result on integers (r0), on the VM by default."""
        return self.execute(*args, mem=mem, engine=engine).value

    def __repr__(self) -> str:
        overflow = "" if self.overflow == "wrap" else f", overflow={self.overflow!r}"
        return (f"CompiledFunction({self.name}({', '.join(self.params)}), lines={self.program.length}, "
                f"functions={self.functions}{overflow})")
