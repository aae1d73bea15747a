"""The machine state, the program's fields, and the carry a run hands from one chunk of steps to the next
(docs/design.md §3, "Program" and "State")."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ProgramFields(NamedTuple):
    """A program's per-line fields: the softmax of each logit block.

    Shapes: ``op (L, O)``, ``a (L, K)``, ``b (L, K)``, ``d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``.
    """

    op: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    d: torch.Tensor
    imm: torch.Tensor
    tgt: torch.Tensor

    def to(self, dtype: torch.dtype) -> "ProgramFields":
        return ProgramFields(*(f.to(dtype) for f in self))


class MachineState(NamedTuple):
    """Everything the machine carries from one step to the next.

    Shapes: ``ip (B, L)`` sub-probability over lines (its mass ``ρ`` is the running probability);
    ``reg (B, K, n)``; ``mem (B, C, n)``; data stack ``dstk (B, S, n)`` with pointer ``dsp (B, S)``;
    return stack ``rstk (B, S, L)`` with pointer ``rsp (B, S)``. Slot 0 of each stack is the "empty"
    sentinel: ``dstk[:, 0]`` is the value 0 and ``rstk[:, 0]`` has no mass, so a RET on an empty return
    stack halts.
    """

    ip: torch.Tensor
    reg: torch.Tensor
    mem: torch.Tensor
    dstk: torch.Tensor
    dsp: torch.Tensor
    rstk: torch.Tensor
    rsp: torch.Tensor


def initial_state(ip: torch.Tensor, reg: torch.Tensor, mem: torch.Tensor, stack: int) -> MachineState:
    """The state before the first step: the given ip, registers and memory, and empty stacks.

    Args:
        ip: ``(B, L)`` start distribution over lines.
        reg: ``(B, K, n)``.
        mem: ``(B, C, n)``.
        stack: ``S``, pointer positions per stack.

    Returns:
        a :class:`MachineState`; every stack slot holds the value 0 (data) or nothing (return), and both
        pointers are at position 0.
    """
    batch, lines = ip.shape
    n = reg.shape[-1]
    dstk = torch.zeros(batch, stack, n, dtype=reg.dtype, device=reg.device)
    dstk[:, :, 0] = 1
    rstk = torch.zeros(batch, stack, lines, dtype=reg.dtype, device=reg.device)
    pointer = torch.zeros(batch, stack, dtype=reg.dtype, device=reg.device)
    pointer[:, 0] = 1
    return MachineState(ip, reg, mem, dstk, pointer, rstk, pointer.clone())


class Carry(NamedTuple):
    """What one chunk of steps hands to the next: the machine state and the halting accumulators.

    Shapes: ``state`` as in :class:`MachineState`; ``acc_reg (B, K, n)`` and ``acc_mem (B, C, n)``, the
    halting mixtures so far; ``expected (B,)``, the ponder cost so far; ``faults (B,)``, the stack-fault mass.
    """

    state: MachineState
    acc_reg: torch.Tensor
    acc_mem: torch.Tensor
    expected: torch.Tensor
    faults: torch.Tensor

    def flat(self) -> tuple[torch.Tensor, ...]:
        """The 11 tensors in the whole-run kernels' order: the state's 7, then the accumulators."""
        return (*self.state, self.acc_reg, self.acc_mem, self.expected, self.faults)

    @classmethod
    def unflat(cls, tensors) -> "Carry":
        """The inverse of :meth:`flat`."""
        return cls(MachineState(*tensors[:7]), *tensors[7:])


#: Tensors in a flat carry (:meth:`Carry.flat`).
CARRY_SIZE = 11
#: The first accumulator in a flat carry: the state (:class:`MachineState`, 7 tensors) comes first, then acc_reg,
#: acc_mem, expected and faults, whose gradients pass through every step unchanged.
FIRST_ACCUMULATOR = 7


def initial_carry(ip: torch.Tensor, reg: torch.Tensor, mem: torch.Tensor, stack: int) -> Carry:
    """The carry before the first step: :func:`initial_state` and zero accumulators (shapes as there)."""
    zero = reg.new_zeros(reg.shape[0])
    return Carry(initial_state(ip, reg, mem, stack), torch.zeros_like(reg), torch.zeros_like(mem), zero, zero.clone())
