"""The kernel ops the machine is built on, from ``ncl_kernels`` (dispatched: ``NCL_BACKEND`` or a
``backend=`` argument picks the implementation, the fastest available by default).

``soft_read``/``soft_write`` are the register, memory and stack banks; ``alu_mix`` is the table ALU's binary
and unary ops in one call; ``stack_update`` is one soft push/pop.
"""

from __future__ import annotations

from ncl_kernels import alu_mix, control, halting_accumulate, soft_read, soft_write, stack_update

__all__ = ["soft_read", "soft_write", "alu_mix", "stack_update", "control", "halting_accumulate"]
