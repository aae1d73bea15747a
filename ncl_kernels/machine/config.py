"""The machine's sizes and numerical constants: the one place they are defined (``ncl.MachineConfig`` is this
class)."""

from __future__ import annotations

from dataclasses import dataclass

#: ALU implementations (docs/design.md §3 step 3).
ALUS = ("table", "circuit")

#: Guard for every renormalisation (fields by ρ, the ALU mixture by w, the return address by e_CALL).
#: Small enough that a sample whose running mass is ~1e-13 (a sharp program after HALT) is still
#: renormalised exactly, and large enough that 1/NORM_EPS is finite in fp32.
NORM_EPS = 1e-20


@dataclass(frozen=True)
class MachineConfig:
    r"""Sizes of the differentiable computer.

    Args:
        n: value range; values are distributions over :math:`\mathbb{Z}_n`. A power of two for
            ``alu="circuit"``.
        cells: memory cells ``C``; an address ``v`` is folded onto the cells, ``v mod C``.
        registers: registers ``K``; ``r0`` holds the result.
        stack: pointer positions ``S`` of each stack. Position 0 means "empty", so a stack holds at
            most ``S - 1`` items.
        alu: ``"table"`` (exact scatter tables) or ``"circuit"`` (soft boolean gates on bits).
        sharpness: ``β``; an assembled program sets each field's logits to ``β·one_hot``.
        halt_eps: ``run`` stops once every sample's running mass ``ρ`` is below this.
    """

    n: int = 128
    cells: int = 128
    registers: int = 8
    stack: int = 32
    alu: str = "table"
    sharpness: float = 30.0
    halt_eps: float = 1e-6

    def __post_init__(self):
        for name, low in (("n", 2), ("cells", 1), ("registers", 1), ("stack", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"MachineConfig: {name} must be an int >= {low}, got {value!r}")
        if self.alu not in ALUS:
            raise ValueError(f"MachineConfig: alu must be one of {ALUS}, got {self.alu!r}")
        if self.alu == "circuit" and self.n & (self.n - 1):
            raise ValueError(f"MachineConfig: alu='circuit' needs n to be a power of two, got n={self.n}")
        if not self.sharpness > 0:
            raise ValueError(f"MachineConfig: sharpness must be > 0, got {self.sharpness!r}")
        if not 0 < self.halt_eps < 1:
            raise ValueError(f"MachineConfig: halt_eps must be in (0, 1), got {self.halt_eps!r}")

    @property
    def bits(self) -> int:
        """``log2(n)`` rounded up: bits of a value in the circuit ALU."""
        return max(1, (self.n - 1).bit_length())
