"""Tile choice and launch sizing shared by the memory ops' Triton kernels, and their compile targets.

The knobs here (:data:`TILE_BUDGET`, :data:`ELEMWISE_TILE`, :data:`MAX_BLOCK_D`, :data:`TARGET_PROGRAMS`) are
read at every launch, so a test may shrink them (``tests/test_memory_triton_kernels.py``) to make tiny shapes
loop over several tiles and splits.
"""

from __future__ import annotations

import torch
import triton

from ncl_kernels._triton_targets import compile_target

#: Elements in the largest fp32 temporary a program builds (3-D broadcast products). With 4 warps this is
#: 16 fp32 values per thread: at 4096 the soft_read and soft_write backward kernels reached 127 and 187
#: registers on sm_90a; at 2048 every kernel stays at or below 72, with no spills (see
#: ``scripts/compile_triton_sm90.py``).
TILE_BUDGET = 2048
#: Elements per program for the purely elementwise ``soft_write`` forward.
ELEMWISE_TILE = 4096
#: Widest ``D`` tile: 64 fp32 (or 128 bytes of bf16) per row is enough for coalesced loads, and narrower
#: tiles give more programs for the per-batch grids.
MAX_BLOCK_D = 64
NUM_WARPS = 4
#: Programs per SM that the N-split reductions (soft_read and content_address forward) aim for.
PROGRAMS_PER_SM = 8
#: Overrides the program-count target (tests set it to force or prevent N splits); ``None``: automatic.
TARGET_PROGRAMS: int | None = None


def p2(x: int) -> int:
    """The next power of two >= ``x`` (and >= 1, since ``tl.arange`` needs a positive power of two)."""
    return triton.next_power_of_2(max(int(x), 1))


def head_tiles(H: int, N: int, D: int) -> tuple[int, int, int]:
    """``(BLOCK_H, BLOCK_N, BLOCK_D)`` for the kernels that broadcast over heads x rows x columns."""
    block_h = p2(H)
    block_d = min(p2(D), MAX_BLOCK_D)
    # Many heads: narrow the D tile before the N tile, so one row tile is still several rows.
    while block_h * block_d > TILE_BUDGET // 2 and block_d > 1:
        block_d //= 2
    block_n = max(1, min(p2(N), TILE_BUDGET // (block_h * block_d)))
    return block_h, block_n, block_d


def target_programs(device: torch.device) -> int:
    """How many programs a launch should have to fill the machine: several per SM on a GPU."""
    if TARGET_PROGRAMS is not None:
        return TARGET_PROGRAMS
    if device.type == "cuda":
        return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    return 1024


def n_splits(N: int, block_n: int, base_programs: int, device: torch.device) -> tuple[int, int]:
    """``(rows_per_split, num_splits)``: cut the N loop of a per-batch reduction into splits (each a
    whole number of ``block_n`` tiles) when ``base_programs`` alone would leave the GPU idle, so that a
    small batch still streams the bank from many SMs. The partial results are combined afterwards."""
    n_tiles = triton.cdiv(N, block_n)
    want = max(1, triton.cdiv(target_programs(device), max(base_programs, 1)))
    tiles_per_split = triton.cdiv(n_tiles, min(want, n_tiles))
    rows = tiles_per_split * block_n
    return rows, triton.cdiv(N, rows)


# ---------------------------------------------------------------------------------------------------------
# Compile-only targets for scripts/compile_triton_sm90.py
# ---------------------------------------------------------------------------------------------------------

#: The size every compile target is specialised at: the large benchmark size (B = 64), with the
#: ``ROWS_PER_SPLIT`` that :func:`n_splits` picks there on a 132-SM H100 (8 programs per SM).
COMPILE_SIZES = {"H": 4, "N": 1024, "D": 256, "ROWS_PER_SPLIT": 64}


def compile_targets(specs: list[tuple]) -> list[dict]:
    """The ``COMPILE_TARGETS`` of a memory op's module: one entry per kernel variant and dtype (fp32, bf16).

    Each spec is ``(label suffix, kernel, pointers of the input dtype, fp32 pointers, int arguments,
    constexprs)``, with the tiles the host functions pick at :data:`COMPILE_SIZES`. Each entry (see
    :func:`ncl_kernels._triton_targets.compile_target`): ``name``, ``fn`` (the ``@triton.jit`` function),
    ``signature`` (argument name -> Triton type string, ``"constexpr"`` for compile-time arguments),
    ``constexprs`` (name -> value), ``divisible`` (argument names that a real launch specialises as multiples
    of 16: every pointer from the caching allocator, and the int sizes at this shape) and ``num_warps``.
    """
    targets = []
    for dtype in (torch.float32, torch.bfloat16):
        for suffix, fn, typed_ptrs, f32_ptrs, ints, constexprs in specs:
            divisible = typed_ptrs + f32_ptrs + [n for n in ints if COMPILE_SIZES[n] % 16 == 0]
            targets.append(compile_target(fn, dtype, typed_ptrs, f32_ptrs, ints, constexprs,
                                          divisible=divisible, suffix=suffix, num_warps=NUM_WARPS))
    return targets
