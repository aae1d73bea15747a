r"""The circuit ALU as a netlist: the straight-line program of :mod:`ncl_kernels.alu_circuit.circuits`, recorded once.

The circuits of ``circuits.py`` (ripple-carry adder, shift-add multiplier, restoring
division, comparisons) only ever add, subtract and multiply bit marginals and small integer constants. Run on
symbolic :class:`Wire` objects instead of tensors, they write down that program: a list of gates

.. code-block:: text

    gate g = (opcode, in0, in1, out)      value[out] = value[in0] (+|-|*) value[in1]
                                           (CONST: value[out] = in0, an integer constant)

over wires numbered in topological order. Wires ``0..m-1`` are the bits of operand ``a`` (least significant
first), ``m..2m-1`` those of ``b``; every other wire is written by exactly one gate, after its inputs. The
outputs are a ``(16, m)`` table: ``outputs[k, i]`` is the wire holding bit ``i`` of op ``k``'s result, ops in
the order ``BINARY_OPS + UNARY_OPS``.

While recording, identical gates are shared (the subtractor of LT, MIN and MAX is built once), gates with
constant operands are folded (``x·1 = x``, ``x·0 = 0``, ``x ± 0 = x``, constants combined) and gates that
reach no output are dropped. Folding only removes operations whose result is exact in any floating type
(multiplying by 0 or 1, adding 0, integer constants), so the netlist computes the recorded circuits' values.
"""

from __future__ import annotations

import functools

import torch

from ncl_kernels.alu_circuit.circuits import binary_bits, unary_bits
from ncl_kernels.isa import BINARY_OPS, UNARY_OPS

#: Gate opcodes (``csrc/include/ncl/alu_circuit.h`` and the Triton kernels use the same numbers; tested).
ADD, SUB, MUL, CONST = 0, 1, 2, 3
_FOLD = {ADD: lambda u, v: u + v, SUB: lambda u, v: u - v, MUL: lambda u, v: u * v}


class _Recorder:
    """Collects gates; shares identical ones and folds constants."""

    def __init__(self, num_inputs: int):
        self.num_wires = num_inputs
        self.gates: list[tuple[int, int, int, int]] = []
        self.memo: dict[tuple[int, int, int], Wire] = {}
        self.consts: dict[int, Wire] = {}

    def const(self, value) -> Wire:
        if value != int(value):
            raise ValueError(f"the circuit netlist holds integer constants only, got {value!r}")
        value = int(value)
        if value not in self.consts:
            self.consts[value] = self._emit(CONST, value, 0, value)
        return self.consts[value]

    def gate(self, op: int, a: Wire, b: Wire) -> Wire:
        if a.value is not None and b.value is not None:
            return self.const(_FOLD[op](a.value, b.value))
        if op == MUL:
            for u, v in ((a, b), (b, a)):
                if u.value == 0:
                    return u
                if u.value == 1:
                    return v
        if op == ADD and a.value == 0:
            return b
        if op in (ADD, SUB) and b.value == 0:
            return a
        if op in (ADD, MUL) and b.index < a.index:
            a, b = b, a  # commutative: one canonical order, so a*b and b*a are one gate
        key = (op, a.index, b.index)
        if key not in self.memo:
            self.memo[key] = self._emit(op, a.index, b.index)
        return self.memo[key]

    def _emit(self, op: int, in0: int, in1: int, value=None) -> Wire:
        wire = Wire(self, self.num_wires, value)
        self.num_wires += 1
        self.gates.append((op, in0, in1, wire.index))
        return wire


class Wire:
    """A symbolic scalar: the circuit code's ``+ - *`` on wires (and on integer constants) records gates.

    ``torch.zeros_like(wire)`` and ``torch.ones_like(wire)``, which the circuit code uses for constant bits,
    give constant wires (``__torch_function__``).
    """

    def __init__(self, recorder: _Recorder, index: int, value=None):
        self.recorder, self.index, self.value = recorder, index, value

    def _wire(self, other) -> Wire:
        return other if isinstance(other, Wire) else self.recorder.const(other)

    def __add__(self, other):
        return self.recorder.gate(ADD, self, self._wire(other))

    def __radd__(self, other):
        return self.recorder.gate(ADD, self._wire(other), self)

    def __sub__(self, other):
        return self.recorder.gate(SUB, self, self._wire(other))

    def __rsub__(self, other):
        return self.recorder.gate(SUB, self._wire(other), self)

    def __mul__(self, other):
        return self.recorder.gate(MUL, self, self._wire(other))

    def __rmul__(self, other):
        return self.recorder.gate(MUL, self._wire(other), self)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.zeros_like:
            return args[0].recorder.const(0)
        if func is torch.ones_like:
            return args[0].recorder.const(1)
        raise TypeError(f"the circuit netlist records + - * and zeros_like/ones_like only, not {func}")


def _prune(gates, outputs, num_inputs):
    """Drop the gates no output depends on, and renumber the wires densely (inputs keep ``0..2m-1``)."""
    live = set(outputs)
    for op, in0, in1, out in reversed(gates):
        if out in live and op != CONST:
            live.update((in0, in1))
    kept = [g for g in gates if g[3] in live]
    index = {i: i for i in range(num_inputs)}
    for g in kept:
        index[g[3]] = len(index)
    renamed = [(op, in0, 0, index[out]) if op == CONST else (op, index[in0], index[in1], index[out])
               for op, in0, in1, out in kept]
    return renamed, [index[o] for o in outputs], len(index)


@functools.lru_cache(maxsize=None)
def record(m: int) -> tuple[tuple[tuple[int, int, int, int], ...], tuple[tuple[int, ...], ...], int]:
    """The netlist of every op of the circuit ALU on ``m``-bit operands.

    Returns:
        ``(gates, outputs, num_wires)``: ``gates`` a tuple of ``(opcode, in0, in1, out)``, in evaluation
        order; ``outputs`` 16 tuples of ``m`` wire indices; ``num_wires`` the number of wires.
    """
    # The circuit definitions themselves, not a copy: the netlist is what circuits.py computes.
    if m < 1:
        raise ValueError(f"m must be at least 1, got {m}")
    rec = _Recorder(2 * m)
    a = [Wire(rec, i) for i in range(m)]
    b = [Wire(rec, m + i) for i in range(m)]
    ops = [list(binary_bits(op, a, b)) for op in BINARY_OPS] + [list(unary_bits(op, a)) for op in UNARY_OPS]
    # An output bit may be an input or constant wire (the upper bits of a 0/1 flag are the constant 0).
    flat = [w.index for bits in ops for w in bits]
    gates, flat, num_wires = _prune(rec.gates, flat, 2 * m)
    return tuple(gates), tuple(tuple(flat[k * m:(k + 1) * m]) for k in range(len(ops))), num_wires


_TENSORS: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def tensors(m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gates, outputs)`` as int32 tensors on ``device``: ``(G, 4)`` and ``(16, m)``, cached."""
    key = (m, str(device))
    if key not in _TENSORS:
        gates, outputs, _ = record(m)
        _TENSORS[key] = (torch.tensor(gates, dtype=torch.int32, device=device).reshape(-1, 4),
                         torch.tensor(outputs, dtype=torch.int32, device=device))
    return _TENSORS[key]
