"""The tape of the Triton whole-run backward (:mod:`ncl_kernels.machine.triton_bwd`): the layout of one entry (a
state and a step's intermediates) of the global ``(B, count, E)`` tape that the forward kernel
(:mod:`ncl_kernels.machine.triton`, run with ``TAPE``) writes and the backward reads, and the row copy that
fills it. Kept apart from both kernels because both use it."""

from __future__ import annotations

import triton
import triton.language as tl

from ncl_kernels.isa import NUM_OPS as NUM_OPCODES

NUM_OPCODES_PADDED = triton.next_power_of_2(NUM_OPCODES)
_BLOCK_O = tl.constexpr(NUM_OPCODES_PADDED)
#: Scalars at the end of a tape entry's record (:func:`_tape_entry`).
TAPE_SCALARS = 8
_TAPE_SCALARS = tl.constexpr(TAPE_SCALARS)


def tape_entry_size(L: int, K: int, n: int, C: int, S: int) -> int:
    """Elements of one entry of the backward's tape (:func:`_tape_entry`): a state and a step's record."""
    return L + (K + C + S) * n + S * L + 2 * S + 6 * n + L + NUM_OPCODES_PADDED + 3 * K + TAPE_SCALARS


@triton.jit
def _tape_entry(tape_ptr, b, count, step, L, K, n, C, S):
    """Entry ``(b, step)`` of a ``(B, count, E)`` tape (``E`` = :func:`tape_entry_size`): pointers to its
    state part, the state before the step, flat as ip ``L``, reg ``K·n``, mem ``C·n``, dstk ``S·n``, dsp ``S``,
    rstk ``S·L``, rsp ``S``; and to its record part, the step's intermediates: x y z load pop value (``n``
    each, ``value`` normalised), ret_to ``L``, e ``32``, alpha beta delta (``K`` each), then the scalars ρ, w
    (before the clamp), h, RET mass, Σ ret_to, e_CALL (clamped) and the value's mass before normalising
    (machine_step.h's ``Workspace``)."""
    state = L + (K + C + S) * n + S * L + 2 * S
    entry = tape_ptr + (b * count + step) * (state + 6 * n + L + _BLOCK_O + 3 * K + _TAPE_SCALARS)
    return entry, entry + state


@triton.jit
def _copy_rows(src, dst, R, W, cols, BLOCK_ROWS: tl.constexpr):
    """Copies an ``(R, W)`` bank to ``dst`` in row blocks."""
    for r0 in range(0, R, BLOCK_ROWS):
        r = r0 + tl.arange(0, BLOCK_ROWS)
        m = (r < R)[:, None] & (cols < W)[None, :]
        offs = r[:, None] * W + cols[None, :]
        tl.store(dst + offs, tl.load(src + offs, mask=m, other=0.0), mask=m)


__all__ = ["NUM_OPCODES_PADDED", "TAPE_SCALARS", "tape_entry_size"]
