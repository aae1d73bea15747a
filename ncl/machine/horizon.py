"""How long a sharp program stays in the hard limit: the soft machine against the VM, step by step.

``python -m ncl.machine.horizon`` prints the table in ``docs/machine.md`` ("Hard-limit horizon").
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ncl.machine import vm
from ncl.machine.assembler import assemble
from ncl.machine.examples import FACTORIAL_RECURSIVE, FIB_RECURSIVE, LOOP_SUM
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import MachineConfig, initial_state, step


class Horizon(NamedTuple):
    """``steps``: steps compared; ``deviation``: the largest ``1 − p(VM's value)`` over ip and registers;
    ``halted``: the VM halted with the soft machine still within ``tol``."""

    steps: int
    deviation: float
    halted: bool


def hard_limit_horizon(program, regs: list[int], mem: list[int] | None = None, dtype=torch.float64,
                       tol: float = 1e-4, max_steps: int = 2000) -> Horizon:
    """Run ``program`` softly (one sample, one-hot inputs) beside the VM until the VM halts, or until the
    soft ip or a register gives less than ``1 − tol`` to the VM's value.

    Args:
        program: a :class:`~ncl.machine.Program`.
        regs: initial registers (ints).
        mem: initial memory (ints).
        dtype: the soft machine's dtype.
        tol: the deviation that counts as leaving the hard limit.
        max_steps: at most this many steps.
    """
    config: MachineConfig = program.config
    code = program.instructions()
    machine = vm.initial_state(config, regs, mem)
    soft = initial_state(one_hot([0], len(code), dtype), one_hot([machine.regs], config.n, dtype),
                         one_hot([machine.mem], config.n, dtype), config.stack)
    worst, rows = 0.0, torch.arange(config.registers)
    with torch.no_grad():
        fields = program.fields().to(dtype)
        for t in range(1, max_steps + 1):
            soft, _ = step(soft, fields, config)
            vm.step(code, machine, config)
            if machine.halted:
                return Horizon(t, worst, True)
            held = torch.cat([soft.ip[0, machine.ip].reshape(1), soft.reg[0][rows, torch.tensor(machine.regs)]])
            worst = max(worst, float(1 - held.min()))
            if worst > tol:
                return Horizon(t, worst, False)
    return Horizon(max_steps, worst, False)


def main() -> None:
    cases = [("iterative sum", LOOP_SUM, 127, MachineConfig(n=128, cells=8, registers=4, stack=16))]
    small = MachineConfig(n=64, cells=8, registers=4, stack=16)
    cases += [("recursive factorial", FACTORIAL_RECURSIVE, k, small) for k in (4, 8)]
    cases += [("recursive fib", FIB_RECURSIVE, k, small) for k in (3, 4, 5, 6, 8)]
    print(f"{'program':<22}{'arg':>4}{'VM steps':>10}  {'fp32':<28}{'fp64':<28}")
    for name, source, arg, config in cases:
        program = assemble(source, config)
        total = vm.run(program, regs=[0, arg], max_steps=10000).steps
        cells = []
        for dtype in (torch.float32, torch.float64):
            h = hard_limit_horizon(program, [0, arg], dtype=dtype)
            cells.append(f"exact (max dev {h.deviation:.1e})" if h.halted else f"leaves at step {h.steps}")
        print(f"{name:<22}{arg:>4}{total:>10}  {cells[0]:<28}{cells[1]:<28}")


if __name__ == "__main__":
    main()
